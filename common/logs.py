"""One logging set-up for the whole project: readable console lines plus a log file per run.

Console: ``12:03:04 experiments.run | message``. Files get the date and level too. Call
``setup_logging`` once at the top of an entry point; call it again with ``log_file`` when the
run directory is known (the console handler is kept, a file handler is added).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

CONSOLE_FORMAT = "%(asctime)s %(name)s | %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s | %(message)s"
_FILE_HANDLER_ATTR = "_harness_file"


def setup_logging(log_file: str | Path | None = None, level: str | None = None) -> logging.Logger:
    root = logging.getLogger()
    level_name = (level or os.environ.get("LOG_LEVEL", "INFO")).upper()
    root.setLevel(level_name)
    if not any(getattr(h, "_harness_console", False) for h in root.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter(CONSOLE_FORMAT, datefmt="%H:%M:%S"))
        console._harness_console = True  # type: ignore[attr-defined]
        root.addHandler(console)
    if log_file is not None:
        for h in list(root.handlers):
            if getattr(h, _FILE_HANDLER_ATTR, False):
                root.removeHandler(h)
                h.close()
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file)
        fh.setFormatter(logging.Formatter(FILE_FORMAT))
        setattr(fh, _FILE_HANDLER_ATTR, True)
        root.addHandler(fh)
    # Libraries that shout at INFO on every import.
    for noisy in ("matplotlib", "urllib3", "PIL", "filelock", "httpx", "numexpr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return root
