"""Structure of the committed lab notebooks (fast: nothing is executed here).

* The outputs come from one fresh top-to-bottom run: every code cell executed, execution
  counts 1..n in order, no errors (``scripts/run_notebooks.py`` makes such a run).
* The outputs come from the ``lab`` profile (the real SmolLM2-135M); a cell that still
  runs a toy (a tiny random model, toy items) says so in its own output.
* Every notebook has the lab's sections: the time estimate (lab measured, GPU), learning
  objectives, "What did you observe?" prompts, exercises with a trimlab check, a summary,
  and the licence of any dataset it shows items from.
* Widgets: marked ``# NBVAL_IGNORE_OUTPUT``, and the function a widget drives is also
  called in a normal cell, so a headless run exercises its logic.

The outputs themselves are compared by nbval (see ``notebooks/README.md``)::

    TRIMLAB_PROFILE=lab pytest --nbval notebooks/ \\
        --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
EXPECTED = [
    "00_setup",
    "01_hypothesis",
    "02_scoring",
    "03_surgery",
    "04_sparse_finetuning",
    "05_progressive_dropping",
    "06_ablations",
    "07_speed",
    "08_training_cost",
]
IGNORE = "# NBVAL_IGNORE_OUTPUT"


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def markdown(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts.append(str(out.data.get("text/plain", "")))
    return "".join(parts)


def test_the_lab_notebooks_are_there():
    assert [p.stem for p in NOTEBOOKS][: len(EXPECTED)] == EXPECTED


@pytest.fixture(params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def nb(request):
    notebook = read(request.param)
    notebook.metadata["_stem"] = request.param.stem
    return notebook


def test_outputs_are_from_one_fresh_top_to_bottom_run(nb):
    cells = code_cells(nb)
    assert cells, "no code cells"
    counts = [c.execution_count for c in cells]
    assert None not in counts, (
        f"code cells not executed (cells {[i for i, n in enumerate(counts) if n is None]}); "
        "run scripts/run_notebooks.py"
    )
    assert counts == list(range(1, len(cells) + 1)), (
        f"execution counts {counts} are not 1..{len(cells)}: not one fresh top-to-bottom run; "
        "run scripts/run_notebooks.py"
    )
    for i, cell in enumerate(cells):
        assert cell.source.strip(), f"empty code cell {i}"
        for out in cell.outputs:
            assert out.output_type != "error", f"cell {i} raised {out.get('ename')}"
            if out.output_type == "execute_result":
                assert out.execution_count == cell.execution_count
            if out.output_type == "stream" and out.name == "stderr":
                pytest.fail(f"cell {i} wrote to stderr: {out.text[:200]!r}")


WARNING_TEXT = re.compile(r"\w*Warning\b|Traceback \(most recent call last\)|deprecated")


def test_no_warnings_or_tracebacks_in_outputs(nb):
    """No committed output holds a stderr stream, an error, a warning or a traceback: a
    student must never meet one on a fresh install (strict nbval fails on a new one)."""
    for i, cell in enumerate(code_cells(nb)):
        for out in cell.outputs:
            assert out.output_type != "error", f"cell {i} raised {out.get('ename')}"
            assert out.get("name") != "stderr", f"cell {i} wrote to stderr"
        found = WARNING_TEXT.search(output_text(cell))
        assert not found, f"cell {i} shows {found.group(0)!r}: {output_text(cell)[:200]!r}"


def test_no_missing_outputs(nb):
    """A cell that prints, plots or shows a widget at its top level (not inside a branch or
    a function) must have kept its output."""
    for i, cell in enumerate(code_cells(nb)):
        shows = re.search(r"^(print\(|plt\.show\(\)|widget = interact\()", cell.source, re.M)
        lone_call = re.search(r"^\w+\(\)\s*$", cell.source.strip().splitlines()[-1])
        if shows or lone_call or "trimlab.exercises.check_" in cell.source:
            assert cell.outputs, f"code cell {i} should have output but has none"


def test_the_opening_cell(nb):
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    text = first.source
    assert "Estimated time" in text
    assert re.search(r"`lab`.*\|\s*about \d+(-\d+)? (s|min) \(measured\)\s*\|", text), (
        "lab time not measured"
    )
    assert "`cpu`" in text and "GPU" in text and "not measured" in text
    assert "TO BE MEASURED" not in markdown(nb)
    assert "Learning objectives" in text
    assert len(re.findall(r"^- ", text, re.M)) >= 2, "list the learning objectives"


def test_required_sections(nb):
    text = markdown(nb)
    assert "**What did you observe?**" in text
    assert re.search(r"^## Summary", text, re.M)
    assert re.search(r"^## Exercise", text, re.M)
    checks = [c for c in code_cells(nb) if "trimlab.exercises.check_" in c.source]
    assert 1 <= len(checks) <= 5, "one to five exercises per notebook"
    for cell in checks:
        assert "return None" in cell.source, "an exercise stub returns None"
        assert output_text(cell).startswith("not yet"), "stubs are committed unsolved"


def test_notebooks_import_trimlab_and_use_the_profile(nb):
    sources = "\n".join(c.source for c in code_cells(nb))
    assert "import trimlab" in sources
    assert "trimlab.get_profile()" in sources
    assert "profile: lab" in output_text(code_cells(nb)[0]), (
        "outputs must come from the lab profile"
    )


TOY_SOURCE = re.compile(r"\b(tiny_model|tiny_tokenizer|toy_items)\(|load_model\(\"tiny-")
TOY_LABEL = re.compile(r"\b(toy|tiny random)\b", re.I)


def toy_unlabelled(cells) -> list[int]:
    """Code cells that run a toy (a tiny random model, toy items) and whose output does
    not say so. Exercise checks are exempt: their output is feedback, not a result."""
    bad = []
    for i, cell in enumerate(cells):
        if "trimlab.exercises.check_" in cell.source or not TOY_SOURCE.search(cell.source):
            continue
        text = output_text(cell)
        if text.strip() and not TOY_LABEL.search(text):
            bad.append(i)
    return bad


def test_toy_outputs_say_so(nb):
    """A student reading the committed outputs must never take a toy's numbers for a real
    model's: every output of a cell that runs a tiny model or toy items labels itself."""
    bad = toy_unlabelled(code_cells(nb))
    assert not bad, f"code cells {bad} show a toy's output without saying so (print a label)"


def test_the_toy_label_check_catches_an_unlabelled_output():
    cell = nbformat.v4.new_code_cell(
        "m, _ = tiny_model('llama')\nprint(m.config.num_hidden_layers)"
    )
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="4\n")]
    assert toy_unlabelled([cell]) == [0]
    cell.outputs[0].text = "4 blocks (a tiny random model: toy weights)\n"
    assert toy_unlabelled([cell]) == []


def test_licence_of_shown_datasets(nb):
    cells = code_cells(nb)
    if not any("load_domain(" in c.source for c in cells):
        return
    assert any("licence(" in c.source for c in cells), "state the licence of the data shown"
    shown = "".join(output_text(c) for c in cells)
    if any('"sciq"' in c.source for c in cells):
        assert "CC BY-NC 3.0" in shown


def test_equations_where_they_apply(nb):
    text = markdown(nb)
    stem = nb.metadata["_stem"]
    if stem == "02_scoring":
        assert r"\frac{1}{a_i + \epsilon}" in text  # Eq. 3
        assert r"\lVert A_i \rVert_F" in text  # Eq. 4
    if stem == "04_sparse_finetuning":
        assert r"\lceil r \cdot U \rceil" in text
    if stem in ("01_hypothesis", "02_scoring", "03_surgery", "04_sparse_finetuning"):
        assert "$$" in text


def test_widgets(nb):
    cells = code_cells(nb)
    for i, cell in enumerate(cells):
        match = re.search(r"\binteract(ive|_manual)?\(\s*(\w+)", cell.source)
        if not match:
            continue
        assert cell.source.splitlines()[0] == IGNORE, f"widget cell {i} needs {IGNORE} first"
        if match.group(1) != "_manual":  # a Run button needs no debouncing
            assert "continuous_update=False" in cell.source
        fn = match.group(2)
        plain = [c for c in cells if IGNORE not in c.source]
        called = rf"^\s*(\w+ = )?{fn}\("
        assert any(re.search(called, c.source, re.M) for c in plain), (
            f"{fn} drives a widget but is never called in a normal cell"
        )


def test_plots_show_no_figure_repr(nb):
    for i, cell in enumerate(code_cells(nb)):
        if "plt." in cell.source or "heatmap(" in cell.source:
            assert "plt.show()" in cell.source, f"plot cell {i} must call plt.show()"
        for out in cell.outputs:
            if out.output_type == "execute_result":
                assert not str(out.data.get("text/plain", "")).startswith("<Figure"), (
                    f"cell {i} returns a figure: end it with plt.show()"
                )


def test_solutions_and_readme():
    readme = (NOTEBOOK_DIR / "README.md").read_text()
    for stem in EXPECTED:
        assert (ROOT / "solutions" / f"{stem}.py").is_file()
        assert stem in readme
    assert (NOTEBOOK_DIR / "sanitize.cfg").is_file()
