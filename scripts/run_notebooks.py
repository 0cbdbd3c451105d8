"""Execute the lab notebooks top to bottom on a fresh kernel and save the outputs in place.

The committed notebooks carry outputs from exactly this run, in the ``lab`` profile (the
real SmolLM2-135M on a few items, fp32, one thread), so that ``pytest --nbval`` can compare
every cell's output strictly (see ``notebooks/README.md``)::

    python scripts/run_notebooks.py                    # all notebooks/NN_*.ipynb
    python scripts/run_notebooks.py notebooks/02_scoring.ipynb

``TRIMLAB_PROFILE`` is set to ``lab`` unless ``--profile`` says otherwise (outputs of
another profile must not be committed: nbval in CI would fail). ``TRIMLAB_DATA_DIR``
defaults to ``../shared/data`` beside the checkout when that exists, as in the Makefile.
Each notebook runs in its own kernel with the notebook's folder as working directory.
The time of each notebook is printed; those are the "lab" times in the notebook headers.

ipykernel 7 sometimes leaves an ``execute_request`` unread on its shell socket: the
kernel sits idle and the runner waits for the 10-minute cell timeout (ipykernel issue
1554: a reply sent on the socket can swallow the wake-up of a request that arrives at
that moment). Any later message on that socket wakes it, so while a cell runs longer
than a few seconds, :class:`NudgingClient` sends a ``kernel_info_request`` every few
seconds; nbclient ignores the replies, which belong to no cell.

The nudge does not catch every hang: rarely the kernel sits idle and the runner still
waits. So the client also watches the kernel's CPU time (its child processes included):
a cell whose kernel has used less than ``IDLE_CPU_S`` of CPU in ``IDLE_LIMIT_S`` seconds is
hung (no lab cell waits without computing), and the notebook is run again on a fresh
kernel, once (``--retries``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def default_notebooks() -> list[Path]:
    """The numbered lab notebooks, in order."""
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


IDLE_LIMIT_S = 90.0  # a cell whose kernel computed nothing for this long is hung
IDLE_CPU_S = 0.5  # "nothing": less CPU than this in that time (the nudges' replies cost ms)


class HungKernel(RuntimeError):
    """The kernel sat idle while a cell was still running."""


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children, live and finished."""
    proc = psutil.Process(pid)
    t = proc.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in proc.children(recursive=True):
        try:
            c = child.cpu_times()
            total += c.user + c.system
        except psutil.NoSuchProcess:
            pass
    return total


class NudgingClient(NotebookClient):
    """nbclient's client, which nudges the kernel's shell socket while a cell runs and
    raises :class:`HungKernel` when the kernel stops computing (see the module docstring)."""

    nudge_every = 3.0

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        pid = getattr(self.km.provisioner, "pid", None) if self.km else None

        async def nudge() -> None:
            since, used = time.monotonic(), cpu_seconds(pid) if pid else 0.0
            while True:
                await asyncio.sleep(self.nudge_every)
                self.kc.kernel_info()
                if not pid:
                    continue
                now = cpu_seconds(pid)
                if now - used >= IDLE_CPU_S:
                    since, used = time.monotonic(), now
                elif time.monotonic() - since > IDLE_LIMIT_S:
                    raise HungKernel(f"cell {cell_index}: kernel idle for {IDLE_LIMIT_S:.0f} s")

        run = asyncio.ensure_future(
            super().async_execute_cell(cell, cell_index, execution_count, store_history)
        )
        watch = asyncio.ensure_future(nudge())
        try:
            await asyncio.wait({run, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not run.done():
                run.cancel()  # and let nbclient's own pollers stop before the kernel goes
                with contextlib.suppress(BaseException):
                    await run
                watch.result()  # raises HungKernel
            return run.result()
        finally:
            watch.cancel()


def execute(path: Path, timeout: int, kernel: str) -> float:
    """Run one notebook on a fresh kernel, write it back; return the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    client = NudgingClient(
        nb,
        timeout=timeout,
        kernel_name=kernel,
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
        shutdown_kernel="immediate",  # outputs are complete; do not wait on stray threads
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nbformat.validate(nb)
    nbformat.write(merge_outputs(nb, nbformat.read(path, as_version=4), path), path)
    return seconds


def execute_with_retries(path: Path, timeout: int, kernel: str, retries: int) -> float:
    """:func:`execute`, run again on a fresh kernel when the kernel hung."""
    for attempt in range(retries + 1):
        try:
            return execute(path, timeout, kernel)
        except HungKernel as e:
            if attempt == retries:
                raise
            print(f"  {e}: running it again on a fresh kernel", flush=True)
    raise AssertionError("unreachable")


def merge_outputs(ran, on_disk, path: Path):
    """The notebook as it is on disk now, with the outputs of the run: markdown edited
    while the notebook ran is kept. A code cell edited meanwhile makes the run stale."""
    code = [c for c in on_disk.cells if c.cell_type == "code"]
    done = [c for c in ran.cells if c.cell_type == "code"]
    if [c.source for c in code] != [c.source for c in done]:
        raise SystemExit(f"{path.name}: a code cell changed while it ran; run it again")
    for cell, out in zip(code, done, strict=True):
        cell.outputs, cell.execution_count = out.outputs, out.execution_count
    return on_disk


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/NN_*.ipynb")
    p.add_argument("--profile", default="lab", help="TRIMLAB_PROFILE for the kernels (lab)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    p.add_argument("--retries", type=int, default=1, help="runs again of a notebook that hung")
    args = p.parse_args(argv)

    os.environ["TRIMLAB_PROFILE"] = args.profile
    shared = ROOT.parent / "shared" / "data"
    if not os.environ.get("TRIMLAB_DATA_DIR") and shared.is_dir():
        os.environ["TRIMLAB_DATA_DIR"] = str(shared)
    if args.profile != "lab":
        print(
            f"warning: profile {args.profile!r}; commit only lab-profile outputs", file=sys.stderr
        )
    paths = [path.resolve() for path in args.notebooks] or default_notebooks()
    total, failed = 0.0, []
    for path in paths:
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ...", flush=True)
        try:
            seconds = execute_with_retries(path, args.timeout, args.kernel, args.retries)
        except (CellExecutionError, CellTimeoutError, HungKernel) as e:
            print(f"  FAILED:\n{e}", file=sys.stderr)
            failed.append(path.name)
            continue
        total += seconds
        print(f"  {seconds:.1f} s", flush=True)
    print(f"total {total:.1f} s ({args.profile} profile)")
    if failed:
        print(f"failed: {', '.join(failed)} (not saved)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
