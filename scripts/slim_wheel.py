"""Write a copy of a wheel without the native libraries a GPU box does not load.

    python scripts/slim_wheel.py WHEEL OUT_DIR [--keep GLOB ...] [--drop GLOB ...]

The bitsandbytes wheel is 43 MB, almost all of it one ``libbitsandbytes_<backend>.so`` per CUDA and
ROCm version; a device call carries at most 64 MiB with the working tree and the dataset, and the GPU
image's torch is built for one CUDA version. ``--drop`` globs (matched against member paths) remove
members unless a ``--keep`` glob matches them; the ``.dist-info/RECORD`` is rewritten to list exactly
the members left (their hashes are unchanged), so pip installs the copy as it would the original.
The copy has the original's file name, in OUT_DIR (which must not be the wheel's own folder).
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import zipfile
from pathlib import Path


def slim(wheel: Path, out_dir: Path, drop: list[str], keep: list[str]) -> tuple[Path, list[str]]:
    """The slimmed copy's path and the members it left out."""
    out = out_dir / wheel.name
    tmp = out.with_name(out.name + ".tmp")
    dropped: list[str] = []
    with zipfile.ZipFile(wheel) as src:
        names = src.namelist()
        record = next((n for n in names if n.endswith(".dist-info/RECORD")), None)
        if record is None:
            raise ValueError(f"{wheel}: no .dist-info/RECORD: not a wheel")

        def gone(name: str) -> bool:
            return any(fnmatch.fnmatch(name, g) for g in drop) and not any(
                fnmatch.fnmatch(name, g) for g in keep
            )

        dropped = [n for n in names if gone(n)]
        if record in dropped:
            raise ValueError("the RECORD itself cannot be dropped")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                if info.filename in dropped:
                    continue
                data = src.read(info.filename)
                if info.filename == record:
                    lines = data.decode().splitlines()
                    data = (
                        "\n".join(ln for ln in lines if ln.split(",", 1)[0] not in dropped) + "\n"
                    ).encode()
                dst.writestr(info, data)
    tmp.replace(out)
    return out, dropped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="slim_wheel", description=__doc__.split("\n")[0])
    p.add_argument("wheel", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--drop", action="append", default=[], help="member glob to leave out (repeatable)")
    p.add_argument(
        "--keep", action="append", default=[], help="member glob kept even if dropped (repeatable)"
    )
    a = p.parse_args(argv)
    if not a.wheel.is_file() or a.wheel.suffix != ".whl":
        print(f"wheel={a.wheel} is not allowed; allowed: an existing .whl file")
        return 2
    if a.out_dir.resolve() == a.wheel.parent.resolve():
        print(f"out_dir={a.out_dir} is not allowed; allowed: a folder other than the wheel's own")
        return 2
    a.out_dir.mkdir(parents=True, exist_ok=True)
    try:
        out, dropped = slim(a.wheel, a.out_dir, a.drop, a.keep)
    except (ValueError, zipfile.BadZipFile) as exc:
        print(f"wheel={a.wheel}: {exc}")
        return 2
    print(f"{out}: {out.stat().st_size / 2**20:.1f} MiB ({len(dropped)} members left out)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
