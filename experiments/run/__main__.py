"""``python -m experiments.run``: see :mod:`experiments.run.main`."""

import sys

from experiments.run.main import main

if __name__ == "__main__":
    sys.exit(main())
