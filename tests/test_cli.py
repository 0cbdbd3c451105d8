"""The ``trimlab`` command: clear errors, and the demo/eval paths on the ci profile."""

from __future__ import annotations

import json
import os

import pytest

from trimlab import cli
from trimlab.results import load_rows, markdown

HAVE_DATA = bool(os.environ.get("TRIMLAB_DATA_DIR"))


@pytest.mark.parametrize(
    "argv, match",
    [
        (
            ["trim", "--model", "tiny-llama", "--domain", "science", "--target", "0", "--out", "X"],
            "target",
        ),
        (["eval", "--model", "tiny-nope", "--domain", "sciq"], "unknown"),
        (["eval", "--model", "tiny-llama", "--domain", "nope"], "unknown dataset"),
    ],
)
def test_bad_input_is_one_clear_line(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "trim" in argv and not HAVE_DATA:
        pytest.skip("needs TRIMLAB_DATA_DIR")
    assert cli.main(["--profile", "ci", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trimlab: error:") and match in err


@pytest.mark.skipif(not HAVE_DATA, reason="needs TRIMLAB_DATA_DIR")
def test_eval_and_zero_shot_run_on_the_ci_profile(capsys, tmp_path):
    assert cli.main(["--profile", "ci", "eval", "--domain", "sciq", "--n", "6"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["n"] == 6 and 0 <= out["acc"] <= 1
    rows = tmp_path / "rows.json"
    argv = [
        "--profile",
        "ci",
        "zero-shot",
        "--n",
        "4",
        "--datasets",
        "sciq",
        "piqa",
        "--json",
        str(rows),
    ]
    assert cli.main(argv) == 0
    table = capsys.readouterr().out
    assert "| sciq | yes | 4 |" in table and "| piqa | no | 4 |" in table
    assert len(json.loads(rows.read_text())["rows"]) == 3


@pytest.mark.skipif(not HAVE_DATA, reason="needs TRIMLAB_DATA_DIR")
def test_trim_prints_one_bar_and_round_summaries_no_logs_no_warnings(capfd, tmp_path):
    argv = ["--profile", "ci", "trim", "--model", "tiny-llama", "--domain", "sciq"]
    argv += ["--target", "2", "--n", "6", "--calib", "6", "--out", str(tmp_path / "run")]
    assert cli.main(argv) == 0
    out, err = capfd.readouterr()
    both = out + err
    assert "round 1: dropped" in both and "round 2: dropped" in both
    assert "'loss'" not in both and "grad_norm" not in both  # no Trainer log dicts
    assert "Warning" not in both and "warn" not in both.lower()
    assert err.count("trim sciq to 2") >= 1  # the one bar of the trim phase
    assert "| after |" in out


def test_results_markdown(tmp_path):
    for row, acc in (("full_ft", 0.8), ("trimllm", 0.6)):
        (tmp_path / row).mkdir()
        res = {
            "acc": acc,
            "decoder_kept": 1.0 if row == "full_ft" else 0.5,
            "bytes_kept": 0.7,
            "seconds": 120,
            "sublayers_removed": 0,
            "target": "50%",
        }
        (tmp_path / row / "result.json").write_text(json.dumps(res))
    md = markdown(load_rows(tmp_path))
    assert "| TrimLLM (50%) | 0.600 | 75% |" in md
    assert "| full fine-tuning | 0.800 | 100% |" in md
    # a row that knows its item count carries its 95% Wilson interval
    res = json.loads((tmp_path / "trimllm" / "result.json").read_text()) | {"n": 300}
    (tmp_path / "trimllm" / "result.json").write_text(json.dumps(res))
    md = markdown(load_rows(tmp_path))
    assert "| TrimLLM (50%) | 0.600 [0.544, 0.654] | 75% |" in md


def test_demo_is_the_open_book_kd_run(monkeypatch, tmp_path):
    """``trimlab demo`` calls trimlab.demo.run with the demo's configuration (the run
    itself is tested in tests/test_demo.py)."""
    from trimlab import demo

    seen = {}
    monkeypatch.setattr(demo, "run", lambda out, cfg, **kw: seen.update(out=out, cfg=cfg, **kw))
    argv = ["--profile", "ci", "demo", "--n", "5", "--out", str(tmp_path), "--target", "2"]
    assert cli.main(argv) == 0
    cfg = seen["cfg"]
    assert (cfg.heal, cfg.use_context, cfg.eval_items, cfg.profile) == ("kd", True, 5, "ci")
    assert seen["target"] == "2" and seen["teacher_steps"] == 20 and seen["out"] == str(tmp_path)
