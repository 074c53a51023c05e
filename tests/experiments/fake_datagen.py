"""A stand-in for ``python -m datagen`` for sweep tests: composes the real datagen config and writes
only manifest.json where the real generator would (``<results_root>/fake_datagen_fail`` makes it fail).
Every start is appended to ``<results_root>/datagen_invocations.jsonl``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import datagen.spec
from common.atomic import append_jsonl, write_json
from common.config import load_validated
from datagen.dataset import dataset_dir, dataset_id


def main() -> int:
    cfg = load_validated("datagen", sys.argv[1:], datagen.spec.validate_datagen)
    root = Path(cfg.results_root)
    append_jsonl(root / "datagen_invocations.jsonl", {"argv": sys.argv[1:]})
    if (root / "fake_datagen_fail").exists():
        print("fake datagen: planted failure", file=sys.stderr)
        return 1
    write_json(dataset_dir(cfg.data, root) / "manifest.json", {"dataset_id": dataset_id(cfg.data)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
