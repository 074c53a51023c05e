"""Identity is content: ids are short hashes of the settings that change a result."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def content_id(settings: Any, length: int = 12) -> str:
    """Hex digest of the canonical JSON of ``settings`` (sorted keys, no whitespace).

    Pass only what changes the result (not paths, timestamps, logging switches), so that
    re-running the same experiment finds the same id and can skip finished work.
    """
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
