"""Write files and directories so that a crash never leaves something that looks complete.

Every writer puts its bytes under a temporary name in the same directory and renames it into
place (``os.replace`` is atomic on POSIX within one filesystem). Readers therefore see either the
old file, the new file, or nothing: never half of one.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays and Paths show up in summaries; make them plain JSON.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any) -> str:
    """JSON text with a stable key order; NaN/inf written as null (JSON has no NaN)."""
    return json.dumps(_nan_to_none(obj), indent=2, sort_keys=True, default=_json_default) + "\n"


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj


def write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> Path:
    return write_bytes(path, dumps(obj).encode())


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)


@contextlib.contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it to ``final`` only on success.

    On an exception the partial directory is removed, so ``final`` never exists half-built.
    ``final`` must not exist yet (callers skip finished work by checking for it first).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def append_jsonl(path: str | Path, obj: Any) -> None:
    """Append one JSON line and flush it (metrics.jsonl: a torn last line is tolerated by readers)."""
    with open(path, "a") as f:
        f.write(json.dumps(_nan_to_none(obj), sort_keys=True, default=_json_default) + "\n")
        f.flush()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file (gzip-compressed when its name ends in .gz), ignoring a torn final line left
    by a killed writer."""
    rows: list[dict[str, Any]] = []
    with gzip.open(path, "rt") if str(path).endswith(".gz") else open(path) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # the writer was killed mid-line; everything before it is intact
            raise
    return rows
