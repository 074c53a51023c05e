"""Starts a thread when imported: a fork server that preloads it must not fork (tests/experiments/test_sweep.py)."""

import threading

_stop = threading.Event()
threading.Thread(target=_stop.wait, daemon=True).start()
