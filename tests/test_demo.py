"""The main job's short run (trimlab.demo): open-book SciQ, a teacher, TrimLLM with KD."""

from __future__ import annotations

import json

from trimlab import demo


def test_demo_trains_a_teacher_trims_with_kd_and_resumes(tmp_path):
    cfg = demo.demo_config("ci", eval_items=8, calib_items=4, steps_per_round=1, batch_size=4)
    assert cfg.use_context and cfg.heal == "kd" and cfg.score == "loglik"
    lines: list[str] = []
    report = demo.run(tmp_path, cfg, target=2, teacher_steps=2, log=lines.append)
    assert list(report["rows"]) == ["zero-shot", "teacher (full fine-tuning)", "TrimLLM + KD"]
    trimmed = report["rows"]["TrimLLM + KD"]
    assert trimmed["sublayers_removed"] == 2 and len(report["dropped"]) == 2
    assert trimmed["params"] < report["rows"]["zero-shot"]["params"]
    assert report["settings"]["heal"] == "kd" and report["settings"]["teacher"]
    assert json.loads((tmp_path / "report.json").read_text())["dropped"] == report["dropped"]
    assert any(line.startswith("| TrimLLM + KD | ") for line in lines)
    # A second call reuses the teacher and the finished run.
    again: list[str] = []
    second = demo.run(tmp_path, cfg, target=2, teacher_steps=2, log=again.append)
    assert second["dropped"] == report["dropped"]
    assert any("reusing" in line for line in again)
