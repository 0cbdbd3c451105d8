"""The install story: one source of dependencies, the README's commands, CI."""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import trimlab

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_installs_the_project_from_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # python and pip, plus what builds llama-cpp-python (the deploy extra)
    assert {re.split(r"[=<> ]", d)[0] for d in conda} == {"python", "pip", "cmake", "cxx-compiler"}
    assert "-e .[test,deploy]" in pip  # what `make setup` installs
    # the only other pip line is the CPU torch wheel, and pyproject's range admits it
    others = [p for p in pip if p != "-e .[test,deploy]"]
    assert others == ["-c requirements.lock", "torch==2.13.0"]
    deps = pyproject()["project"]["dependencies"]
    torch_req = next(d for d in deps if d.startswith("torch"))
    assert ">=2.4" in torch_req and "<3" in torch_req


def test_dependencies_are_ranges_and_pin_one_transformers_major():
    deps = pyproject()["project"]["dependencies"]
    assert "transformers>=5.24,<6" in deps  # 5.24: the cache argument (see README)
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
    install = '-e ".[test,deploy]"'  # the deploy extra: llama.cpp, which the export tests run
    assert makefile.index('"$(TORCH)"') < makefile.index(install)  # torch wheel first
    # both installs take their versions from the lock
    assert '-c $(LOCK) "$(TORCH)"' in makefile and f"-c $(LOCK) {install}" in makefile
    # a missing C++ compiler (llama-cpp-python builds from source) is said before pip runs
    assert makefile.index("scripts/check_compiler.sh") < makefile.index(install)
    assert "scripts/fetch_converter.py" in makefile


def test_data_folder_holds_cards_not_rows():
    data = ROOT / "data"
    assert not list(data.glob("**/*.jsonl")), "dataset rows must not be committed"
    assert (data / "README.md").exists() and (data / "sciq.md").exists()
    assert "data/cache/" in (ROOT / ".gitignore").read_text()


# ----------------------------------------------------------------------------- the lock

OPTIONAL = {
    # speed backends that trimlab.bench uses only when they import (int8 weight-only, 4-bit)
    "torchao",
    "bitsandbytes",
    # llama.cpp's converter, which trimlab/convert_hook.py imports from the files that
    # scripts/fetch_converter.py takes from the locked llama-cpp-python sdist
    "conversion",
    "convert_hf_to_gguf",
}


def lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def project_requirements() -> list[Requirement]:
    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    reqs = project["dependencies"] + extras["test"] + extras["deploy"]
    return [Requirement(r) for r in reqs]


def test_lock_satisfies_pyproject():
    pins = lock()
    for req in project_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), (
            f"requirements.lock pins {req.name}=={pins[name]}, outside {req.specifier}"
        )


def test_lock_has_no_cuda_packages_and_the_cpu_torch():
    pins = lock()
    assert pins["torch"] == "2.13.0"  # no +cpu label: ==2.13.0 admits the CPU wheel too
    cuda = [n for n in pins if n.startswith(("nvidia-", "cuda-")) or n == "triton"]
    assert not cuda, f"the lock would pull CUDA packages: {cuda}"


def imported_modules() -> set[str]:
    """Top-level modules imported anywhere in the project's code and notebooks."""
    sources = []
    for folder in ("trimlab", "tests", "benchmarks", "scripts", "solutions"):
        sources += [p.read_text() for p in (ROOT / folder).rglob("*.py")]
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        sources += ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    mods = set()
    for src in sources:
        lines = [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
    return mods - set(sys.stdlib_module_names) - {"trimlab", "tests", "__future__"}


def test_lock_pins_every_imported_dependency():
    pins = lock()
    owners = md.packages_distributions()
    missing = []
    for mod in sorted(imported_modules() - OPTIONAL):
        dists = owners.get(mod)
        assert dists, f"{mod} is imported but no installed distribution provides it"
        if not any(canonicalize_name(d) in pins for d in dists):
            missing.append(f"{mod} ({', '.join(dists)})")
    assert not missing, f"imported but not pinned in requirements.lock: {missing}"


@pytest.mark.skipif(
    os.environ.get("TRIMLAB_UNLOCKED") == "1", reason="make test-latest runs unlocked on purpose"
)
def test_installed_environment_is_the_lock():
    """pip freeze of the running venv equals the lock, both ways (trimlab aside)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    installed = {}
    for line in out.splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            if canonicalize_name(name) != "trimlab":
                installed[canonicalize_name(name)] = version.split("+")[0]
    pins = lock()
    assert {n: v for n, v in installed.items() if pins.get(n) != v} == {}, "not as locked"
    assert sorted(set(pins) - set(installed)) == [], "locked but not installed"


def test_makefile_regenerates_the_lock_after_the_latest_suite():
    makefile = (ROOT / "Makefile").read_text()
    assert "lock: test-latest" in makefile and "scripts/lock.py" in makefile
    assert "test-latest" not in (ROOT / ".ci" / "run").read_text()


def test_changelog_has_an_entry_for_this_version():
    import trimlab

    text = (Path(__file__).resolve().parents[1] / "CHANGELOG.md").read_text()
    versions = re.findall(r"^## (\d+\.\d+\.\d+) \(", text, flags=re.M)
    assert versions and versions[0] == trimlab.__version__, (versions[:1], trimlab.__version__)
