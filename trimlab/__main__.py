import sys

from trimlab.cli import main

sys.exit(main())
