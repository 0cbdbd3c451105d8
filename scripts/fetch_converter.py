"""Put llama.cpp's converter (from the installed llama-cpp-python's sdist) in the cache.

``make setup`` runs this after installing the ``deploy`` extra; ``trimlab export`` needs
it. Usage: ``python scripts/fetch_converter.py [--force]``.
"""

import sys

from trimlab.llamacpp import fetch_converter

if __name__ == "__main__":
    print(fetch_converter(force="--force" in sys.argv[1:]))
