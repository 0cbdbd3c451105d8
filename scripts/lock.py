"""Write ``requirements.lock``: the exact versions of a tested environment.

The lock is a pip constraints file, ``pip freeze`` of a fresh venv that ``make
test-latest`` built from ``pyproject.toml``'s ranges (torch 2.13.0, the CPU wheel,
installed first) and ran the whole suite in. So every pin in it has passed the tests
together, and it holds no CUDA packages: the venv never had them.

Usage (``make lock`` runs this after ``make test-latest`` has passed)::

    python scripts/lock.py --venv .venv-latest [--out requirements.lock]

torch is written as ``torch==2.13.0``, without the ``+cpu`` local label, so that the
constraint admits the CPU wheel here and the plain wheel on macOS (PEP 440: ``==2.13.0``
matches ``2.13.0+cpu``). The file is written atomically.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = """\
# The tested, exact environment of trimlab: a pip constraints file (pip install -c).
# Regenerate with `make lock` (it runs `make test-latest` first, then
# scripts/lock.py --venv .venv-latest). Edit pyproject.toml's ranges, not this file.
# Written from {python} ({pip}).
"""


def freeze(python: Path) -> list[str]:
    """``pip freeze`` of an environment, without trimlab itself, as ``name==version``."""
    out = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    pins = []
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("-e "):
            continue
        if "==" not in line:
            raise SystemExit(f"lock: cannot pin {line!r} (not a name==version line)")
        name, version = line.split("==", 1)
        if name.lower() == "trimlab":
            continue
        if re.match(r"(nvidia-|triton$|cuda-)", name.lower()):
            raise SystemExit(f"lock: {name} is a CUDA package; install torch==2.13.0 (CPU) first")
        pins.append(f"{name}=={version.split('+', 1)[0]}")
    return sorted(pins, key=str.lower)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", type=Path, required=True, help="the tested venv to freeze")
    ap.add_argument("--out", type=Path, default=ROOT / "requirements.lock")
    args = ap.parse_args(argv)
    python = args.venv / "bin" / "python"
    if not python.exists():
        ap.error(f"no Python at {python}; run `make test-latest` first")
    pip = subprocess.run(
        [str(python), "-m", "pip", "--version"], check=True, capture_output=True, text=True
    ).stdout.split(" from ")[0]
    version = subprocess.run(
        [str(python), "-c", "import sys; print(sys.version.split()[0])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    text = HEADER.format(python=f"Python {version}", pip=pip) + "\n".join(freeze(python)) + "\n"
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, prefix=".lock-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, args.out)
    print(f"lock: wrote {args.out} ({text.count('==')} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
