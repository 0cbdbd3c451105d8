"""The result-producing scripts of ``benchmarks/`` on a tiny model and a toy domain:
they run end to end, write what the docs and notebooks read, and resume."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def reference_run(toy_domain, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    mp = pytest.MonkeyPatch()
    mp.setenv("TRIMLAB_PROFILE", "ci")
    argv = (
        f"--domain {toy_domain} --target 2 --sizes 1 --eval-items 8 --calib-items 6 "
        f"--steps-per-round 1 --drop-rate 1 --methods loglik --heal kd --final-steps 1 "
        f"--score loglik --scan-candidates 2 "
        f"--rows zero_shot trimllm full_ft one_shot trimllm_kd trimlab random score_loglik "
        f"ablate_score "
        f"--out {out}"
    ).split()
    script("reference").main(argv)
    yield out, argv
    mp.undo()


def test_reference_rows_share_data_budget_and_size(reference_run):
    out, _ = reference_run
    rows = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/result.json")}
    assert set(rows) == {
        "zero_shot",
        "trimllm",
        "full_ft",
        "one_shot",
        "trimllm_kd",
        "trimlab",
        "random",
        "score_loglik",
        "ablate_score",
    }
    settings = json.loads((out / "settings.json").read_text())
    assert settings["steps_per_round"] == 1 and settings["calib_items"] == 6
    assert settings["test_items"] == 8
    trimllm = rows["trimllm"]
    assert trimllm["sublayers_removed"] == 2 and len(trimllm["dropped"]) == 2
    best = rows["trimlab"]
    # the fine-tuning rows get trimlab's budget: its rounds, plus the final heal phase
    assert rows["full_ft"]["steps"] == rows["one_shot"]["steps"] == best["steps"]
    assert best["steps"] == trimllm["steps"] + 1
    assert rows["one_shot"]["dropped"] == best["dropped"]
    assert rows["one_shot"]["decoder_kept"] == pytest.approx(best["decoder_kept"])
    assert rows["one_shot"]["heal"] == "kd" and rows["full_ft"]["heal"] == "ce"
    paper = json.loads((out / "trimllm" / "run" / "history.json").read_text())["settings"]
    assert (paper["score"], paper["heal"], paper["final_steps"]) == ("both", "ce", 0)
    assert paper["scan_candidates"] is None
    mine = json.loads((out / "trimlab" / "run" / "history.json").read_text())
    assert mine["settings"]["score"] == "loglik" and mine["settings"]["heal"] == "kd"
    assert mine["final_heal"]["steps"] == 1
    lever = json.loads((out / "ablate_score" / "run" / "history.json").read_text())["settings"]
    assert (lever["score"], lever["scan_candidates"]) == ("loglik", 2)  # the flags' scoring
    assert (lever["heal"], lever["final_steps"]) == ("ce", 0)  # the paper's heal
    assert rows["random"]["sublayers_removed"] == rows["score_loglik"]["sublayers_removed"] == 2
    assert "1" in trimllm["snapshots"]  # the extra size, measured on the way
    assert (out / "full_ft" / "model").is_dir()  # saved for the Pareto plot, and the teacher
    kd = json.loads((out / "trimllm_kd" / "run" / "history.json").read_text())["settings"]
    assert kd["heal"] == "kd" and kd["teacher"] == str(out / "full_ft" / "model")
    assert rows["trimllm_kd"]["steps"] == trimllm["steps"]
    assert len(rows["trimllm"]["correct"]) == 8 and rows["trimllm"]["chance"] > 0
    assert rows["trimllm"]["compute_dtype"] == "fp32"  # the ci profile pins fp32


def test_reference_resumes_without_recomputing(reference_run):
    out, argv = reference_run
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/result.json")}
    script("reference").main(argv)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/result.json")} == before


def test_cross_domain_and_pareto(reference_run, tmp_path, monkeypatch, capsys):
    out, _ = reference_run
    monkeypatch.setenv("TRIMLAB_PROFILE", "ci")
    final = out / "trimllm" / "run" / "final"
    cross = tmp_path / "cross.json"
    script("cross_domain").main(
        ["--trimmed", f"toy={final}", "--datasets", "toy_arith", "--out", str(cross)]
    )
    got = json.loads(cross.read_text())
    assert set(got["acc"]) == {"untrimmed", "toy"}
    assert 0 <= got["acc"]["toy"]["toy_arith"] <= 1
    assert got["decoder_kept"]["untrimmed"] == 1 and got["decoder_kept"]["toy"] < 1

    pareto = tmp_path / "pareto.json"
    argv = ["--model", "full=tiny-llama", "--model", f"trimmed={final}", "--dataset", "toy_arith"]
    argv += ["--repeats", "1", "--new-tokens", "3", "--out", str(pareto)]
    argv += ["--figure", str(tmp_path / "p.png")]
    script("pareto").main(argv)
    rows = {r["name"]: r for r in json.loads(pareto.read_text())["rows"]}
    assert set(rows) == {"full", "full + int8", "trimmed", "trimmed + int8"}
    assert rows["trimmed"]["bytes"] < rows["full"]["bytes"]
    assert rows["full + int8"]["bytes"] < rows["full"]["bytes"]
    assert all(r["decode_tokens_per_s"] > 0 for r in rows.values())
    assert (tmp_path / "p.png").stat().st_size > 0
    assert "| trimmed + int8 |" in capsys.readouterr().out


def test_publish_copies_results_but_no_weights(reference_run, tmp_path):
    out, _ = reference_run
    spec = importlib.util.spec_from_file_location(
        "publish", BENCHMARKS.parent / "scripts" / "publish_results.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    written = mod.publish(out, tmp_path / "pub")
    names = {p.relative_to(tmp_path / "pub").as_posix() for p in written}
    assert {"settings.json", "trimllm/result.json", "trimllm/history.json"} <= names
    assert "full_ft/result.json" in names and not any("model" in n for n in names)
    assert all(p.suffix == ".json" for p in written)
    from trimlab.results import load_rows

    assert set(load_rows(tmp_path / "pub")) == set(load_rows(out))


def test_sizes_table_lists_each_trim_row_at_each_size(reference_run):
    from trimlab.results import load_rows, sizes_table

    out, _ = reference_run
    rows = load_rows(out)
    table = sizes_table(rows, ["trimllm", "score_loglik"])
    lines = table.splitlines()
    assert lines[0].startswith("| row | acc at <= 1 |") and len(lines) == 4
    assert lines[2].startswith("| TrimLLM, score = both | ")
    assert lines[3].startswith("| TrimLLM, score = loglik | ") and lines[3].count("|") == 5


def test_cli_and_benchmarks_build_equal_configurations(monkeypatch):
    """Equal flags give equal run configurations in the CLI, reference.py and speed.py."""
    from trimlab import cli

    monkeypatch.setenv("TRIMLAB_PROFILE", "cpu")
    flags = "--model tiny-llama --r 0.5 --drop-rate 1 --score loglik --steps-per-round 3"
    flags += " --calib-items 12 --eval-items 20 --context yes --max-length 128 --seed 4"
    common = flags.split()
    from_cli = cli.trim_config(
        cli.build_parser().parse_args(
            ["trim", "--domain", "sciq", "--target", "2", "--out", "x", *common]
        )
    )
    ref = script("reference")
    from_reference = ref.config_from_args(ref.build_parser().parse_args(common))
    assert from_cli == from_reference
    assert from_cli.r == 0.5 and from_cli.use_context and from_cli.profile == "cpu"
    speed = script("speed")
    from_speed = speed._parse_args(["--model", "tiny-llama", "--profile", "cpu"]).config
    assert from_speed == ref.config_from_args(
        ref.build_parser().parse_args(["--model", "tiny-llama", "--profile", "cpu"])
    )
    # the short spellings of the CLI mean the same settings
    short = cli.build_parser().parse_args(
        ["trim", "--domain", "sciq", "--target", "2", "--out", "x", "--steps", "3", "--n", "20"]
    )
    assert (cli.trim_config(short).steps_per_round, cli.trim_config(short).eval_items) == (3, 20)


def test_preselect_reads_a_committed_full_scan_history(capsys):
    history = BENCHMARKS.parent / "docs/results/reference-cpu/score_loglik/history.json"
    rows = script("preselect").main([str(history), "--n", "4", "60"])
    assert [r["n"] for r in rows] == [4, 60]
    assert rows[1]["hits"] == rows[1]["rounds"] and rows[1]["mean_regret"] == 0.0  # all
    assert (
        rows[0]["mean_regret"] >= 0.0 and "| score_loglik | loglik | 4 |" in capsys.readouterr().out
    )


def test_reference_refuses_unknown_rows(tmp_path):
    with pytest.raises(SystemExit, match="unknown rows"):
        script("reference").main(["--rows", "zero_shot trimlab", "--out", str(tmp_path)])
    assert not any(tmp_path.iterdir())


def test_retention_figure_draws_one_panel_per_table(reference_run, tmp_path, capsys):
    out, _ = reference_run
    spec = importlib.util.spec_from_file_location(
        "retention_figure", BENCHMARKS.parent / "scripts" / "retention_figure.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    png = tmp_path / "figs" / "retention.png"
    mod.main([str(out), str(REPO / "docs" / "results" / "reference-cpu"), "--out", str(png)])
    assert png.stat().st_size > 0 and not list(png.parent.glob("*.tmp.png"))
    assert "wrote" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "settings.json").write_text("{}")
    with pytest.raises(SystemExit, match="no full_ft row"):
        mod.main([str(tmp_path / "empty"), "--out", str(tmp_path / "x.png")])


def test_one_shot_removes_another_runs_drops_with_a_larger_budget(reference_run, tmp_path):
    """The healing-budget lever: one_shot of another run's drop set, a teacher given by
    path, more final steps; bad drop files are refused before anything is written."""
    out, argv = reference_run
    base = argv[: argv.index("--rows")]
    base[base.index("--final-steps") + 1] = "3"
    src = out / "trimlab" / "result.json"
    lever = tmp_path / "lever"
    common = ["--rows", "one_shot", "--teacher", str(out / "full_ft" / "model")]
    script("reference").main(base + common + ["--one-shot-drops", str(src), "--out", str(lever)])
    res = json.loads((lever / "one_shot" / "result.json").read_text())
    trimlab = json.loads(src.read_text())
    assert res["dropped"] == trimlab["dropped"] and res["heal"] == "kd"
    assert res["steps"] == json.loads((out / "full_ft" / "result.json").read_text())["steps"] + 2
    assert json.loads((lever / "settings.json").read_text())["one_shot_drops"] == str(src)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"dropped": ["99.mlp"]}))
    text = tmp_path / "text.json"
    text.write_text(json.dumps({"dropped": "3.mlp"}))
    cases = [
        (tmp_path / "none.json", "not a result.json"),
        (bad, "not sub-layers"),
        (text, "not a list of sub-layer names"),
    ]
    for drops, match in cases:
        with pytest.raises(SystemExit, match=match):
            script("reference").main(
                base + common + ["--one-shot-drops", str(drops), "--out", str(tmp_path / "x")]
            )
        assert not (tmp_path / "x").exists()


def test_a_snapshot_lost_to_a_kill_is_never_taken_at_a_smaller_size(
    toy_domain, tmp_path, monkeypatch
):
    """A run killed while measuring a size's snapshot (after that round's checkpoint)
    resumes without measuring a later, smaller model under that size's name."""
    monkeypatch.setenv("TRIMLAB_PROFILE", "ci")
    argv = (
        f"--domain {toy_domain} --target 3 --sizes 1 --eval-items 8 --calib-items 6 "
        f"--steps-per-round 1 --drop-rate 1 --rows trimllm --out {tmp_path}"
    ).split()
    mod = script("reference")
    measure = mod.measure

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "measure", killed)
    with pytest.raises(KeyboardInterrupt):
        mod.main(argv)
    monkeypatch.setattr(mod, "measure", measure)
    mod.main(argv)
    res = json.loads((tmp_path / "trimllm" / "result.json").read_text())
    assert res["sublayers_removed"] == 3 and res["snapshots"] == {}
    assert not list((tmp_path / "trimllm").glob("snapshot_*.json"))
