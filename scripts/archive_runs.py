"""Compress the per-step ``metrics.jsonl`` of run directories kept as committed evidence.

    python -m scripts.archive_runs benchmarks/experiments/<folder> [more folders]

Every ``metrics.jsonl`` under the folders becomes ``metrics.jsonl.gz`` (same bytes inside, gzip with
a fixed timestamp, so the archive of the same file is the same file); the analysis, the pilot tables
and ``scripts/compare_sweeps.py`` read either. A 2,400-step run's metrics are ~0.9 MB of JSON and
~65 KB compressed: the committed runs were most of the working tree that travels to the GPU machine
(64 MiB with the pilot dataset and the wheels). A file whose archive exists and holds other bytes is
refused, never overwritten.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path


def archive(path: Path) -> bool:
    """Compress one metrics.jsonl beside itself and remove it; False when already archived."""
    data = path.read_bytes()
    target = path.with_name(path.name + ".gz")
    if target.exists():
        if gzip.decompress(target.read_bytes()) != data:
            raise SystemExit(f"{target} exists and holds other metrics than {path}; allowed: one of them")
        path.unlink()
        return False
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)
    tmp.replace(target)
    path.unlink()
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.archive_runs", description=__doc__.split("\n")[0])
    p.add_argument("folders", nargs="+", type=Path)
    a = p.parse_args(argv)
    for folder in a.folders:
        if not folder.is_dir():
            print(f"{folder} is not a folder; allowed: folders holding run directories", file=sys.stderr)
            return 2
    done = sum(archive(f) for folder in a.folders for f in sorted(folder.rglob("metrics.jsonl")))
    print(f"{done} metrics.jsonl compressed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
