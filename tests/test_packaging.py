"""The install story: one source of dependencies, the README's commands, CI."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

import trimlab

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_installs_the_project_from_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {re.split(r"[=<> ]", d)[0] for d in conda} == {"python", "pip"}
    assert "-e .[test]" in pip
    # the only other pip line is the CPU torch wheel, and pyproject's range admits it
    others = [p for p in pip if p != "-e .[test]"]
    assert others == ["torch==2.13.0"]
    deps = pyproject()["project"]["dependencies"]
    torch_req = next(d for d in deps if d.startswith("torch"))
    assert ">=2.4" in torch_req and "<3" in torch_req


def test_dependencies_are_ranges_and_pin_one_transformers_major():
    deps = pyproject()["project"]["dependencies"]
    assert "transformers>=5,<6" in deps
    for dep in deps:
        assert ">=" in dep and "<" in dep, f"{dep} should be a version range"
    names = {re.split(r"[<>=]", d)[0] for d in deps}
    for pkg in (
        "torch",
        "transformers",
        "datasets",
        "jupyterlab",
        "ipywidgets",
        "matplotlib",
        "lm-eval",
    ):
        assert pkg in names
    assert any(
        d.startswith("nbval") for d in pyproject()["project"]["optional-dependencies"]["test"]
    )


def test_version_and_citation():
    assert re.fullmatch(r"\d+\.\d+\.\d+", trimlab.__version__)
    assert "2412.11242" in (ROOT / "CITATION.cff").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "torch==2.13.0" in makefile and "TRIMLAB_DATA_DIR" in makefile
    assert makefile.index('"$(TORCH)"') < makefile.index('-e ".[test]"')  # torch wheel first


def test_data_folder_holds_cards_not_rows():
    data = ROOT / "data"
    assert not list(data.glob("**/*.jsonl")), "dataset rows must not be committed"
    assert (data / "README.md").exists() and (data / "sciq.md").exists()
    assert "data/cache/" in (ROOT / ".gitignore").read_text()
