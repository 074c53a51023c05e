"""``python -m experiments.sweep``: see :mod:`experiments.sweep.main`."""

from experiments.sweep.main import main

if __name__ == "__main__":
    raise SystemExit(main())
