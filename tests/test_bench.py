"""trimlab.bench on tiny models: structures, schedules, accounting; never speed itself."""

from __future__ import annotations

import json
import math

import matplotlib
import pytest
import torch

from trimlab import accounting, bench, surgery
from trimlab.tiny import tiny_model

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, tok = tiny_model("llama")
    return model.eval(), tok


def test_median_and_empty():
    assert bench.median([3.0, 1.0, 2.0]) == 2.0
    assert bench.median([1.0, 2.0]) == 1.5
    with pytest.raises(ValueError):
        bench.median([])


def test_interleaved_round_robin_with_rotation_and_warmup():
    log: list[str] = []
    fns = {n: (lambda n=n: float(ord(n))) for n in "abc"}
    out = bench.interleaved(fns, repeats=3, warmup=1, log=log)
    assert "".join(log) == "abc" + "bca" + "cab" + "abc"
    assert set(out) == set("abc")
    assert all(len(v) == 3 for v in out.values())
    assert out["a"] == [97.0] * 3  # self-timed candidates record what they return


def test_interleaved_plain_and_wall_timed():
    log: list[str] = []
    out = bench.interleaved({"x": lambda: None, "y": lambda: None}, 2, 0, rotate=False, log=log)
    assert log == ["x", "y", "x", "y"]
    assert all(s >= 0 for v in out.values() for s in v)
    with pytest.raises(ValueError):
        bench.interleaved({"x": lambda: None}, repeats=0)


def test_make_input_ids_shape_and_rows(tiny):
    _, tok = tiny
    ids = bench.make_input_ids(tok, 37, 3)
    assert ids.shape == (3, 37) and ids.dtype == torch.long
    assert torch.equal(ids[0], ids[2])


def test_greedy_loop_matches_generate(tiny):
    model, tok = tiny
    ids = bench.make_input_ids(tok, 12, 2)
    toks, pre, dec = bench.greedy_decode(model, ids, 6)
    gtoks, gpre, gdec = bench.generate_decode(model, ids, 6, tok.pad_token_id)
    assert toks.shape == (2, 6)
    assert torch.equal(toks, gtoks)
    assert min(pre, dec, gpre, gdec) >= 0


def test_greedy_loop_on_trimmed_model_matches_generate(tiny):
    model, tok = tiny
    t = bench.trimmed_copy(model, ["0.attn", "2.mlp", "3.attn", "3.mlp"])
    ids = bench.make_input_ids(tok, 9, 1)
    assert torch.equal(bench.greedy_decode(t, ids, 5)[0], bench.generate_decode(t, ids, 5, 257)[0])


def test_rates_are_positive_numbers(tiny):
    model, tok = tiny
    for engine in bench.ENGINES:
        r = bench.decode_tokens_per_second(model, tok, new_tokens=3, repeats=1, engine=engine)
        assert r > 0 and math.isfinite(r)
    assert bench.decode_tokens_per_second(model, tok, new_tokens=3, batch_size=2, repeats=1) > 0
    assert bench.prefill_tokens_per_second(model, tok, prompt_tokens=8, repeats=1) > 0
    fn = bench.decode_fn(model, tok, batch_size=2, new_tokens=3, prompt_tokens=5)
    assert fn() >= 0
    with pytest.raises(ValueError):
        bench.decode_fn(model, tok, engine="nope")


def test_block_drop_names_whole_blocks_evenly(tiny):
    model, _ = tiny  # 4 blocks
    assert bench.block_drop_names(model, 0) == []
    half = bench.block_drop_names(model, 0.5)
    assert half == ["1.attn", "1.mlp", "2.attn", "2.mlp"]  # interior blocks first
    assert len(bench.block_drop_names(model, 0.75)) == 6
    with pytest.raises(ValueError):
        bench.block_drop_names(model, 1.0)


def test_block_drop_names_skip_blocks_already_trimmed(tiny):
    model, _ = tiny
    t = bench.trimmed_copy(model, ["0.attn", "2.mlp"])  # blocks 1 and 3 stay whole
    assert bench.block_drop_names(t, 0.5) == ["3.attn", "3.mlp"]


def test_trimmed_copies_leave_original_and_drop_blocks(tiny):
    model, _ = tiny
    before = surgery.sublayers(model)
    copies = bench.trimmed_copies(model, [0.25, 0.5])
    assert surgery.sublayers(model) == before
    assert len(surgery.sublayers(copies[0.5])) == len(before) // 2
    assert surgery.whole_blocks_only(copies[0.25]) and surgery.whole_blocks_only(copies[0.5])
    assert bench.prefix_for(["a", "b", "c"], 2) == ["a", "b"]
    assert bench.prefix_for(["a"], 5) == ["a"]


def test_ideal_speedup_matches_accounting(tiny):
    model, _ = tiny
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    t = bench.trimmed_copy(model, bench.block_drop_names(model, 0.5))
    ours = bench.ideal_decode_speedup(model, t, context=0, batch_size=1)
    ref = accounting.ideal_speedup(model, t, context=0)
    assert ours["flops"] == pytest.approx(ref["flops"])
    assert ours["bytes"] == pytest.approx(ref["bytes"])  # tied head: bytes read = all bytes
    assert ours["ideal"] == ours["bytes"] > 1
    at = bench.ideal_decode_speedup(model, t, context=50, batch_size=1)
    assert at["flops"] == pytest.approx(accounting.ideal_speedup(model, t, 50)["flops"])
    assert at["flops"] > 1 and at["bytes"] > 1
    # a batch shares the weights, not the KV cache
    b8 = bench.decode_cost(model, 50, batch_size=8)
    b1 = bench.decode_cost(model, 50, batch_size=1)
    kv = bench.kv_bytes_per_token(model, 50)
    assert b8["bytes"] == pytest.approx((b1["bytes"] - kv) / 8 + kv)
    assert bench.ideal_prefill_speedup(model, t, 32) > 1


def test_kv_bytes_count_only_remaining_attention(tiny):
    model, _ = tiny
    cfg = model.config
    per = 2 * cfg.num_key_value_heads * cfg.head_dim * 4  # fp32 keys + values
    assert bench.kv_bytes_per_token(model, 10) == 4 * per * 10
    t = bench.trimmed_copy(model, ["1.attn", "2.attn"])
    assert bench.kv_bytes_per_token(t, 10) == 2 * per * 10
    assert bench.kv_bytes_per_token(model, 0) == 0


def test_weight_bytes_equals_param_bytes_for_float_models(tiny):
    model, _ = tiny
    assert bench.weight_bytes(model) == accounting.param_bytes(model)
    assert bench.bytes_read_per_step(model) == accounting.param_bytes(model)


def test_int8_dynamic_runs_and_stays_close(tiny):
    model, tok = tiny
    q = bench.quantize_int8(model)
    assert not any(isinstance(m, torch.nn.Linear) for m in q.modules())
    assert any(isinstance(m, torch.nn.Linear) for m in model.modules())  # original kept
    ids = bench.make_input_ids(tok, 16, 2)
    with torch.no_grad():
        a, b = model(ids).logits, q(ids).logits
    rel = (a - b).norm() / a.norm()
    assert rel < 0.1
    cos = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
    assert cos > 0.99
    assert bench.greedy_decode(q, ids, 3)[0].shape == (2, 3)
    # int8 linears: the bytes read per step shrink about 4x; the fp32 embedding is not read
    full_read, q_read = bench.bytes_read_per_step(model), bench.bytes_read_per_step(q)
    assert 3 < full_read / q_read < 4.2
    ideal = bench.ideal_decode_speedup(model, q, 0, 1, model, model)
    assert ideal["flops"] == pytest.approx(1.0) and ideal["bytes"] > 3


@pytest.mark.skipif(not bench.torchao_available(), reason="torchao is not installed")
def test_torchao_int8_weight_only(tiny):
    model, tok = tiny
    q = bench.quantize_int8_torchao(model)
    ids = bench.make_input_ids(tok, 8, 1)
    with torch.no_grad():
        a, b = model(ids).logits, q(ids).logits
    assert (a - b).norm() / a.norm() < 0.1
    assert bench.weight_bytes(q) < bench.weight_bytes(model)


def test_peak_memory_sees_a_large_allocation():
    n = 40_000_000  # 160 MB of fp32

    def big():
        x = torch.ones(n)
        return float(x.sum())

    peak = bench.peak_memory_bytes(big)
    assert isinstance(peak, int) and peak >= 0
    if bench.cpu_memory_method() == "linux-hwm":
        assert peak > 0.8 * 4 * n


def test_pareto_front_and_plot():
    pts = [(1.0, 0.5), (2.0, 0.6), (3.0, 0.55), (0.5, 0.4)]
    assert bench.pareto_front(pts, lower_x_better=True) == [3, 0, 1]
    assert bench.pareto_front(pts, lower_x_better=False) == [1, 2]
    rows = [
        {"name": "full", "acc": 0.8, "bytes": 500e6, "decode_tokens_per_s": 20.0},
        {"name": "blocks-50%", "acc": 0.7, "bytes": 300e6, "decode_tokens_per_s": 35.0},
        {"name": "int8", "acc": 0.79, "bytes": 250e6, "decode_tokens_per_s": 15.0},
        {"name": "no-acc", "acc": None, "bytes": 1, "decode_tokens_per_s": 1.0},
    ]
    fig = bench.pareto_plot(rows, title="t")
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 2
    assert not fig.axes[0].containers  # no item count, no error bars
    matplotlib.pyplot.close(fig)
    fig = bench.pareto_plot(rows, title="t", n=300)
    assert len(fig.axes[0].containers) == 3  # one 95% interval per row with an accuracy
    assert "300 items" in fig.axes[0].get_ylabel()
    matplotlib.pyplot.close(fig)


def test_speedup_is_the_ratio_of_medians():
    times = {"full": [2.0, 9.0, 2.2], "half": [1.0, 1.1, 5.0]}
    assert bench.speedup(times, "full", "half") == pytest.approx(2.2 / 1.1)
    with pytest.raises(KeyError, match="no timings for 'int8'"):
        bench.speedup(times, "full", "int8")


def test_speed_script_runs_on_a_tiny_model(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
    spec = importlib.util.spec_from_file_location("speed_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "rows.json"
    argv = (
        "--model tiny-llama --repeats 1 --warmup 0 --new-tokens 3 --prompt-tokens 6 "
        "--batch-size 2 --fractions 0.25 0.5 --drops 1.mlp,2.mlp,0.mlp --no-torchao --no-memory"
    ).split()
    worst = mod.main([*argv, "--json", str(out)])
    text = capsys.readouterr().out
    last = text.strip().splitlines()[-1]
    assert last.startswith("smallest measured/ideal") and last.endswith(f"{worst:.2f}")
    data = json.loads(out.read_text())
    names = [r["name"] for r in data["rows"]]
    assert names[:3] == ["full", "blocks-25%", "blocks-50%"]
    assert "drops-2" in names and "int8" in names and "int8+blocks-50%" in names
    for r in data["rows"]:
        assert {"name", "acc", "bytes", "decode_tokens_per_s", "ratio"} <= set(r)
        assert r["ideal"] > 0 and r["decode_tokens_per_s"] > 0
    full = data["rows"][0]
    assert full["ideal"] == pytest.approx(1.0) and full["speedup"] == pytest.approx(1.0)


def test_fit_step_time_recovers_costs():
    true = dict(fixed=5.0, attn=1.0, mlp=1.5)
    comps = [(30, 30), (15, 15), (30, 15), (29, 1), (1, 1)]
    samples = [(a, m, true["fixed"] + true["attn"] * a + true["mlp"] * m) for a, m in comps]
    fit = bench.fit_step_time(samples)
    assert fit["separable"] == 1
    for k, v in true.items():
        assert fit[k] == pytest.approx(v)
    blocks = bench.fit_step_time([(a, a, 2.0 + 2.5 * a) for a in (30, 20, 10)])
    assert blocks["separable"] == 0
    assert blocks["fixed"] == pytest.approx(2.0) and blocks["attn"] == pytest.approx(1.25)


def test_package_layout_and_public_names():
    import ast
    import importlib
    import pkgutil
    from pathlib import Path

    from trimlab import plots

    assert bench.pareto_plot is plots.pareto_plot and bench.pareto_front is plots.pareto_front
    for name in bench.__all__:
        assert getattr(bench, name) is not None, name
    folder = Path(bench.__file__).parent
    for info in pkgutil.iter_modules([str(folder)]):
        mod = importlib.import_module(f"trimlab.bench.{info.name}")
        source = Path(mod.__file__).read_text()
        assert len(source.splitlines()) <= 350, info.name
        assert mod.__doc__ and "TrimLLM" in mod.__doc__, info.name
        # no private name of another trimlab module (``surgery._x``, ``from .memory import _y``)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                private = node.attr.startswith("_") and not node.attr.startswith("__")
                assert not (private and node.value.id in {"accounting", "families", "surgery"})
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trimlab"):
                assert not any(a.name.startswith("_") for a in node.names), info.name
