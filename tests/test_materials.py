"""The materials around the notebooks (fast: nothing is executed, no kernel, no network).

* Every numbered notebook ends with a ``## Questionnaire`` cell (just before its summary)
  of at least three numbered questions, and ``solutions/questionnaires.md`` answers each
  of them, numbered to match.
* Every bullet of every "What did you observe?" prompt has an instructor answer in
  ``solutions/observations.md``, under that notebook's section.
* Every notebook's first cell shows its pipeline figure (``figures/pipeline_NN.png``,
  drawn by ``scripts/pipeline_figure.py``) and the student working time, and talks to
  students only: text for maintainers lives in ``notebooks/README.md``.
"""

from __future__ import annotations

import importlib.util
import re
import struct
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = ROOT / "solutions"
OBSERVE = "**What did you observe?**"
NUMBERED = re.compile(r"^(\d+)\.\s", re.M)
MAX_FIGURE_BYTES = 20_000


def words(text: str) -> str:
    return " ".join(text.split())


def sections(path: Path) -> dict[str, str]:
    """``## name`` sections of a markdown file: {name: body}."""
    parts = re.split(r"^## (\S+)[ \t]*$", path.read_text(), flags=re.M)
    return {name: body for name, body in zip(parts[1::2], parts[2::2])}


def markdown_cells(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "markdown"]


def observe_bullets(nb) -> list[str]:
    """The bullets of every "What did you observe?" prompt, whitespace collapsed."""
    bullets = []
    for source in markdown_cells(nb):
        if OBSERVE in source:
            prompt = source.split(OBSERVE, 1)[1]
            bullets += [words(b) for b in re.findall(r"^- (.*(?:\n[ \t]+\S.*)*)", prompt, re.M)]
    return bullets


def numbers(text: str) -> list[int]:
    return [int(n) for n in NUMBERED.findall(text)]


@pytest.fixture(params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def nb(request):
    notebook = nbformat.read(request.param, as_version=4)
    notebook.metadata["_stem"] = request.param.stem
    return notebook


def test_the_notebooks_are_there():
    assert len(NOTEBOOKS) >= 9


def test_questionnaire_before_the_summary(nb):
    cells = nb.cells
    found = [
        i
        for i, c in enumerate(cells)
        if c.cell_type == "markdown" and c.source.startswith("## Questionnaire")
    ]
    assert len(found) == 1, "one markdown cell starting with '## Questionnaire'"
    i = found[0]
    rest = cells[i + 1 :]
    if any(c.cell_type == "markdown" and re.search(r"^## Summary", c.source, re.M) for c in cells):
        assert (
            rest and rest[0].cell_type == "markdown" and rest[0].source.startswith("## Summary")
        ), "the questionnaire comes just before the summary cell"
    else:
        assert not rest, "without a summary, the questionnaire is the last cell"
    asked = numbers(cells[i].source)
    assert len(asked) >= 3, "at least three numbered questions"
    assert asked == list(range(1, len(asked) + 1)), f"questions numbered 1..n, got {asked}"


def test_every_question_has_an_answer(nb):
    stem = nb.metadata["_stem"]
    cell = next(s for s in markdown_cells(nb) if s.startswith("## Questionnaire"))
    asked = numbers(cell)
    answers = sections(SOLUTIONS / "questionnaires.md")
    assert stem in answers, f"solutions/questionnaires.md has no section '## {stem}'"
    given = numbers(answers[stem])
    assert given == asked, f"{stem}: questions {asked}, answers {given}"


def test_every_observation_prompt_has_instructor_answers(nb):
    stem = nb.metadata["_stem"]
    bullets = observe_bullets(nb)
    assert bullets, f"{stem}: no bullets under {OBSERVE}"
    answers = sections(SOLUTIONS / "observations.md")
    assert stem in answers, f"solutions/observations.md has no section '## {stem}'"
    text = words(answers[stem])
    for bullet in bullets:
        start = " ".join(bullet.split()[:6])
        assert start in text, f"{stem}: no answer for the bullet starting {start!r}"


def test_solution_files_have_no_stray_sections():
    stems = {p.stem for p in NOTEBOOKS}
    for name in ("questionnaires.md", "observations.md"):
        extra = set(sections(SOLUTIONS / name)) - stems
        assert not extra, f"solutions/{name}: sections for no notebook: {sorted(extra)}"


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_first_cell_shows_the_pipeline_figure(nb):
    nn = nb.metadata["_stem"][:2]
    first = nb.cells[0].source
    link = f"](figures/pipeline_{nn}.png)"
    assert link in first, f"the first cell links figures/pipeline_{nn}.png"
    lines = first.splitlines()
    assert lines[0].startswith("# ") and any(link in ln for ln in lines[1:4]), (
        "the figure comes right after the title line"
    )
    path = NOTEBOOK_DIR / "figures" / f"pipeline_{nn}.png"
    assert path.is_file(), f"{path} is missing: run python scripts/pipeline_figure.py"
    assert path.stat().st_size < MAX_FIGURE_BYTES
    width, height = png_size(path)
    assert 500 <= width <= 900 and 80 <= height <= 160, (width, height)


def test_first_cell_gives_the_student_working_time(nb):
    first = nb.cells[0].source
    assert re.search(
        r"^\*\*Student working time:\*\* about \d+(-\d+)? minutes \(reading, running, "
        r"the exercises and the questionnaire\)\.$",
        first,
        re.M,
    )


MAINTAINER_TEXT = re.compile(r"nbval|sanitiz|runner|the notebook tests|(?-i:\bCI\b)", re.I)


def test_the_header_talks_to_students(nb):
    """Nothing about nbval, CI, sanitizers or the runner in the first two markdown cells."""
    for source in markdown_cells(nb)[:2]:
        found = MAINTAINER_TEXT.search(source)
        assert not found, (
            f"maintainer text {found.group(0)!r} near the top: move it to notebooks/README.md"
        )


def load_figure_script():
    path = ROOT / "scripts" / "pipeline_figure.py"
    spec = importlib.util.spec_from_file_location("pipeline_figure", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_figure_script_covers_every_notebook(tmp_path):
    fig = load_figure_script()
    assert sorted(fig.COVERS) == sorted(p.stem[:2] for p in NOTEBOOKS)
    for nn, covered in fig.COVERS.items():
        assert covered and set(covered) <= set(fig.STAGES), nn
        idx = [fig.STAGES.index(s) for s in covered]
        assert idx == list(range(min(idx), max(idx) + 1)), f"{nn}: stages must be neighbours"
    path = fig.draw("05", tmp_path / "pipeline_05.png")
    assert path.stat().st_size < MAX_FIGURE_BYTES
    assert png_size(path) == (700, 110)


def test_notebook_readme_lists_student_time_and_maintainer_notes():
    readme = (NOTEBOOK_DIR / "README.md").read_text()
    assert "student time" in readme
    assert re.search(r"^## For maintainers", readme, re.M)
