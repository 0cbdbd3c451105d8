"""The same trim under torchrun with 2 CPU processes (gloo) drops the same sub-layers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "helpers" / "dist_trim.py"


@pytest.mark.slow
def test_two_processes_reach_the_same_drop_sequence(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    import os

    env = {**os.environ, **env}
    subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "one.json")], check=True, env=env, timeout=600
    )
    subprocess.run(
        [
            torchrun,
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            str(SCRIPT),
            str(tmp_path / "two.json"),
        ],
        check=True,
        env=env,
        timeout=600,
    )
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["distributed"] and not one["distributed"]  # Trainer really ran DDP over gloo
    assert len(one["drops"]) == 4
    assert two["drops"] == one["drops"]
