"""The notebooks' instant widgets work in a real browser: JupyterLab in headless Chromium.

For each notebook with an instant widget (``interact(...)``, or the run browser
``browse.browser(...)``; not ``interact_manual``, which waits for its button), on
the ``ci`` profile (a tiny random model, seconds a notebook): open a copy of it in
JupyterLab, run all cells, then move every control of the widget, one at a time, and see
the widget's output change each time. The page must never show "Error displaying widget"
or "model not found" (the widget manager lost a model), no cell may end in an error, and
no move may end in a traceback.

The browser is Debian's ``chromium`` (``make test`` installs it when run as root), driven
by playwright from PyPI with ``executable_path``: no browser is downloaded. The test skips,
saying what is missing, without Chromium, playwright or the data mirror.

The committed notebooks are never touched: each runs as a copy in a temporary tree that
mirrors the repository through symlinks (``docs/``, ``notebooks/figures/``, ...), so the
notebooks' relative paths (``../docs/results``, ``figures/...``) keep working.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.test_notebooks import IGNORE, NOTEBOOK_DIR, NOTEBOOKS, ROOT, code_cells, read

INSTANT = re.compile(r"\b(interact|browse\.browser)\(")  # interact_manual waits: not instant
BAD_TEXT = ("Error displaying widget", "model not found")
RUN_TIMEOUT_S = 240  # one notebook on the ci profile takes seconds; a busy CPU, more
MOVE_TIMEOUT_S = 30

pytestmark = pytest.mark.browser


def chromium() -> str | None:
    """The system Chromium: $TRIMLAB_CHROMIUM, else ``chromium`` on PATH (Debian's name)."""
    if os.environ.get("TRIMLAB_CHROMIUM"):
        return os.environ["TRIMLAB_CHROMIUM"]
    return shutil.which("chromium") or shutil.which("chromium-browser")


def widget_cell(path: Path) -> int | None:
    """Index (among all cells) of the notebook's instant-widget cell, if it has one."""
    for i, cell in enumerate(read(path).cells):
        src = cell.source
        if cell.cell_type == "code" and src.startswith(IGNORE) and INSTANT.search(src):
            return i
    return None


WIDGET_NOTEBOOKS = [p for p in NOTEBOOKS if widget_cell(p) is not None]


def test_the_instant_widgets_are_found():
    """The notebooks below are the ones with an instant widget; none is missed."""
    with_interact = [
        p.stem for p in NOTEBOOKS if any(INSTANT.search(c.source) for c in code_cells(read(p)))
    ]
    assert with_interact, "no notebook has an instant widget"
    assert [p.stem for p in WIDGET_NOTEBOOKS] == with_interact, (
        f"an instant widget outside a cell that starts with {IGNORE!r}"
    )


# ------------------------------------------------------------------------------ fixtures


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mirror(tree: Path) -> None:
    """``tree`` looks like the repository: symlinks to every top-level entry, and a real
    ``notebooks/`` of symlinks to everything there but the notebooks themselves."""
    tree.mkdir(parents=True)
    for entry in ROOT.iterdir():
        if entry.name not in ("notebooks", ".git"):
            (tree / entry.name).symlink_to(entry)
    (tree / "notebooks").mkdir()
    for entry in NOTEBOOK_DIR.iterdir():
        if entry.suffix != ".ipynb" and entry.name != ".ipynb_checkpoints":
            (tree / "notebooks" / entry.name).symlink_to(entry)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free port, rooted at a mirror of the repository, with
    settings of its own (all cells rendered, the app exposed to the page's scripts)."""
    data = os.environ.get("TRIMLAB_DATA_DIR")
    if not data or not Path(data).is_dir():
        pytest.skip("needs TRIMLAB_DATA_DIR (the notebooks read SciQ from the data mirror)")
    base = tmp_path_factory.mktemp("browser")
    tree = base / "tree"
    _mirror(tree)
    settings = base / "settings"
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    # every cell in the DOM, so that the widget cell is there to find
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    env = dict(
        os.environ,
        TRIMLAB_PROFILE="ci",
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_DATA_DIR=str(base / "data"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        IPYTHONDIR=str(base / "ipython"),
        MPLBACKEND="module://matplotlib_inline.backend_inline",
    )
    port, token = _free_port(), uuid.uuid4().hex
    log = (base / "lab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={tree}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        cwd=tree,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a group of its own, for teardown to end
    )
    url = f"http://127.0.0.1:{port}"

    def log_tail() -> str:
        log.flush()
        return (base / "lab.log").read_text()[-3000:]

    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"jupyter lab exited ({server.returncode}):\n{log_tail()}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer in 120 s:\n{log_tail()}")
                time.sleep(0.5)
        yield {"url": url, "token": token, "tree": tree, "log": log_tail}
    finally:
        # SIGTERM: the server shuts its kernels down (each in a session of its own) first
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    exe = chromium()
    if not exe or not Path(exe).exists():
        pytest.skip(
            "needs Chromium: apt-get install -y --no-install-recommends chromium "
            "(`make test` does it when run as root), or set TRIMLAB_CHROMIUM"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="needs playwright (pip install -c requirements.lock -e .[test])",
    )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True)
        try:
            yield b
        finally:
            b.close()


# ------------------------------------------------------------------------------ the test

# The current notebook panel and its kernel, as JupyterLab's own objects see them.
READY = """() => {
    const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const s = w && w.sessionContext;
    return !!(w && w.content && w.context.isReady && s && s.session && s.session.kernel
              && s.kernelDisplayStatus === "idle");
}"""
RUN_ALL = """() => {
    window.__runAll = undefined;
    window.jupyterapp.commands.execute("notebook:run-all-cells").then(
        ok => { window.__runAll = ok === false ? "failed" : "done"; },
        err => { window.__runAll = "error: " + err; });
}"""
IDLE = 'window.jupyterapp.shell.currentWidget.sessionContext.kernelDisplayStatus === "idle"'
MODEL = "() => window.jupyterapp.shell.currentWidget.content.model.toJSON()"
MARK = """(i) => {
    const cell = window.jupyterapp.shell.currentWidget.content.widgets[i];
    cell.node.setAttribute("data-browser-test", "widget");
    cell.node.scrollIntoView();
}"""


def _bad_text(page) -> list[str]:
    text = page.locator(".jp-NotebookPanel").first.inner_text()
    return [t for t in BAD_TEXT if t in text]


def _move(control, kind: str, back: bool = False) -> str:
    """Move one control a step: a slider by keyboard on its handle (up, or down from its
    top), a dropdown to another option; with ``back``, undo that. Returns what was done."""
    if kind == "slider":
        handle = control.locator(".noUi-handle").first
        now, top = handle.get_attribute("aria-valuenow"), handle.get_attribute("aria-valuemax")
        if back:  # the opposite of the step away, wherever that left the handle
            key = control.evaluate("el => el.dataset.browserTestBack")
        else:
            up = now is None or float(now) < float(top)  # down from its top
            key, opposite = ("ArrowRight", "ArrowLeft") if up else ("ArrowLeft", "ArrowRight")
            control.evaluate("(el, k) => { el.dataset.browserTestBack = k; }", opposite)
        handle.focus()
        handle.press(key)
        return f"slider at {now}: {key}"
    select = control.locator("select").first
    current = select.evaluate("s => s.selectedIndex")
    index = current - 1 if current > 0 else current + 1
    if back:
        index = control.evaluate("el => Number(el.dataset.browserTestFrom)")
    else:
        control.evaluate("(el, i) => { el.dataset.browserTestFrom = i; }", current)
    select.select_option(index=index)
    return f"dropdown option {current} -> {index}"


def _wait_text(page, output, test: str, arg: str, what: str) -> str:
    """Wait (kernel idle) until the output's text passes ``test``; no traceback in it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            f"([el, text]) => el.innerText.trim() && {test} && {IDLE}",
            arg=[output.element_handle(), arg],
            timeout=MOVE_TIMEOUT_S * 1000,
            polling=200,
        )
        timed_out = False
    except PlaywrightTimeout:
        timed_out = True
    if timed_out:
        pytest.fail(
            f"{what}: no change in {MOVE_TIMEOUT_S} s; the output is:\n{output.inner_text()}"
        )
    text = output.inner_text()
    assert "Traceback" not in text, f"{what}:\n{text}"
    assert not _bad_text(page), (what, _bad_text(page))
    return text


@pytest.mark.parametrize("notebook", WIDGET_NOTEBOOKS, ids=[p.stem for p in WIDGET_NOTEBOOKS])
def test_widget_output_follows_its_controls(notebook, browser, lab):
    copy = lab["tree"] / "notebooks" / notebook.name
    shutil.copyfile(notebook, copy)
    index = widget_cell(notebook)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{lab['url']}/lab/tree/notebooks/{notebook.name}?token={lab['token']}")
        page.wait_for_function(READY, timeout=120_000, polling=250)
        page.evaluate(RUN_ALL)
        page.wait_for_function(
            "() => window.__runAll !== undefined", timeout=RUN_TIMEOUT_S * 1000, polling=250
        )
        state = page.evaluate("() => window.__runAll")
        nb = page.evaluate(MODEL)
        failed = [
            (i, o.get("ename"), o.get("evalue"))
            for i, c in enumerate(nb["cells"])
            if c["cell_type"] == "code"
            for o in c.get("outputs", [])
            if o["output_type"] == "error"
        ]
        assert state == "done" and not failed, (
            f"run all: {state}; errors in cells {failed}\n{lab['log']()}"
        )
        unrun = [
            i
            for i, c in enumerate(nb["cells"])
            if c["cell_type"] == "code" and c["source"].strip() and not c["execution_count"]
        ]
        assert not unrun, f"cells not run: {unrun}"

        page.evaluate(MARK, index)
        cell = page.locator('[data-browser-test="widget"]')
        box = cell.locator(".widget-interact").first
        box.wait_for(state="visible", timeout=30_000)
        output = box.locator(".widget-output").first
        page.wait_for_function(
            "(el) => el.innerText.trim().length > 0",
            arg=output.element_handle(),
            timeout=MOVE_TIMEOUT_S * 1000,
        )
        assert not _bad_text(page), _bad_text(page)
        controls = box.locator(":scope > .widget-slider, :scope > .widget-dropdown")
        assert controls.count() > 0, "the widget shows no slider or dropdown"
        others = box.locator(":scope > :not(.widget-slider, .widget-dropdown, .widget-output)")
        assert others.count() == 0, f"a control this test cannot move: {others.all_inner_texts()}"
        # each control in turn: a step away changes the output, the step back restores it
        for k in range(controls.count()):
            control = controls.nth(k)
            kind = "slider" if "widget-slider" in control.get_attribute("class") else "dropdown"
            before = output.inner_text()
            done = _move(control, kind)
            _wait_text(page, output, "el.innerText !== text", before, f"control {k} ({done})")
            done = _move(control, kind, back=True)
            again = _wait_text(
                page, output, "el.innerText === text", before, f"control {k} back ({done})"
            )
            assert again == before
        assert not errors, f"errors in the page: {errors}"
    finally:
        context.close()
        # end the notebook's kernel, and the copy with its checkpoint
        _shutdown_kernels(lab)
        copy.unlink(missing_ok=True)
        shutil.rmtree(copy.parent / ".ipynb_checkpoints", ignore_errors=True)


def _shutdown_kernels(lab) -> None:
    api = f"{lab['url']}/api/sessions?token={lab['token']}"
    with urllib.request.urlopen(api, timeout=10) as r:
        sessions = json.load(r)
    for s in sessions:
        req = urllib.request.Request(
            f"{lab['url']}/api/sessions/{s['id']}?token={lab['token']}", method="DELETE"
        )
        urllib.request.urlopen(req, timeout=30).close()
