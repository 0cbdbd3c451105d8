"""``scripts/run_notebooks.py``: a kernel that sits idle while a cell still runs is caught
as hung and the notebook runs again on a fresh kernel; a kernel that computes is not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def runner(monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "run_notebooks", ROOT / "scripts" / "run_notebooks.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "IDLE_LIMIT_S", 3.0)
    monkeypatch.setattr(mod.NudgingClient, "nudge_every", 0.5)
    return mod


def notebook(tmp_path: Path, source: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_an_idle_kernel_is_hung_and_the_notebook_runs_again(runner, tmp_path, capsys):
    # sleeping uses no CPU: to the watchdog, the same as a kernel that lost the request
    path = notebook(tmp_path, "import time\ntime.sleep(30)")
    before = path.read_text()
    with pytest.raises(runner.HungKernel, match="idle for 3 s"):
        runner.execute_with_retries(path, timeout=60, kernel="python3", retries=1)
    assert "running it again on a fresh kernel" in capsys.readouterr().out
    assert path.read_text() == before  # nothing written


def test_a_computing_kernel_is_not_hung(runner, tmp_path):
    path = notebook(
        tmp_path,
        "import time\nt = time.time()\nwhile time.time() - t < 5:\n    pass\nprint('done')",
    )
    runner.execute_with_retries(path, timeout=60, kernel="python3", retries=0)
    out = nbformat.read(path, as_version=4).cells[0].outputs
    assert out and out[0]["text"] == "done\n"
