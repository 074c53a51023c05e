"""``python -m flashoptim.bench``: one AdamW step over ~1.01B params shaped like Llama-2-7B layers.

Each arm runs in its own process (``flashoptim/bench_worker.py``) so allocator state does not leak
between arms, and so the published ``flashoptim`` wheel can be imported under its own name without
shadowing ours: its process gets only the unpacked wheel on ``PYTHONPATH``.  Prints a table and
writes JSON (``--out``).  Needs a CUDA device.

    python -m flashoptim.bench [--out bench.json] [--steps 20] [--arms a,b,...]
                               [--published-wheel .whl/published/flashoptim-0.1.4-py3-none-any.whl]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from flashoptim.bench_worker import MIN_BYTES_PER_PARAM

OURS = ["flash_adamw24", "flash_adamw32", "flash_adamw_none", "flash_adamw24_torch"]
BASELINES = ["torch_adamw_fused_fp32", "bnb_adamw8bit_bf16"]
PUBLISHED = ["published_adamw24", "published_adamw32", "published_adamw_none"]
WORKER = Path(__file__).with_name("bench_worker.py")


def copy_bandwidth_GBps(n_bytes: int = 2 * 1024**3, reps: int = 10) -> float:
    """Device-to-device copy of ``n_bytes``; bandwidth counts bytes read plus bytes written."""
    a = torch.empty(n_bytes // 4, device="cuda", dtype=torch.float32).uniform_()
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    times = []
    for _ in range(reps):
        s = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        e = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        s.record()
        b.copy_(a)
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    del a, b
    torch.cuda.empty_cache()
    return float(2 * n_bytes / statistics.median(times) / 1e9)


def _unpack_published(wheel: Path) -> Path:
    dest = Path(tempfile.gettempdir()) / "pubfo" / "flashoptim_published"
    if not (dest / "flashoptim" / "__init__.py").exists():
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(dest)
    return dest


def _run_worker(arm: str, steps: int, workdir: Path, published_root: Path | None) -> dict[str, Any]:
    out = workdir / f"{arm}.json"
    env = dict(os.environ)
    cwd = None
    if arm.startswith("published_"):
        assert published_root is not None
        # Only the unpacked wheel (and the carried site dir, for nothing of ours) on the path, run
        # from a neutral directory: `import flashoptim` must find the published package.
        keep = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and "site" in p]
        env["PYTHONPATH"] = os.pathsep.join([str(published_root), *keep])
        cwd = tempfile.gettempdir()
    proc = subprocess.run(
        [sys.executable, str(WORKER), arm, str(out), str(steps)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.exists():
        result: dict[str, Any] = json.loads(out.read_text())
    else:
        result = {"arm": arm, "error": (proc.stderr or proc.stdout)[-500:]}
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="flashoptim_bench.json")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--arms", default=",".join(OURS + BASELINES + PUBLISHED))
    ap.add_argument("--published-wheel", default=".whl/published/flashoptim-0.1.4-py3-none-any.whl")
    args = ap.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in MIN_BYTES_PER_PARAM]
    if unknown:
        print(f"--arms: unknown {unknown}; allowed: {sorted(MIN_BYTES_PER_PARAM)}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("flashoptim.bench needs a CUDA device", file=sys.stderr)
        return 2
    wheel = Path(args.published_wheel)
    published_root = _unpack_published(wheel) if wheel.exists() else None
    if published_root is None:
        arms = [a for a in arms if not a.startswith("published_")]
        print(f"published wheel {wheel} not found: published arms skipped", file=sys.stderr)
    bw = copy_bandwidth_GBps()
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "copy_GBps": bw,
        "arms": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for arm in arms:
            r = _run_worker(arm, args.steps, Path(tmp), published_root)
            if "achieved_GBps" in r:
                r["frac_of_copy_bw"] = r["achieved_GBps"] / bw
            report["arms"][arm] = r
            print(arm, json.dumps(r), flush=True)
    tmp_out = args.out + ".tmp"
    Path(tmp_out).write_text(json.dumps(report, indent=1))
    os.replace(tmp_out, args.out)
    print(f"\n{report['device']}, copy bandwidth {bw:,.0f} GB/s (read+write)")
    print(f"{'arm':26s} {'step ms':>9s} {'B/param':>8s} {'min B moved':>11s} {'GB/s':>7s} {'% copy':>7s}")
    for arm, r in report["arms"].items():
        if "error" in r:
            print(f"{arm:26s} error: {r['error'][:80]}")
            continue
        print(
            f"{arm:26s} {r['step_ms_median']:9.2f} {r['resident_bytes_per_param']:8.3f} "
            f"{r['min_bytes_moved_per_param']:11.3f} {r['achieved_GBps']:7.0f} {100 * r['frac_of_copy_bw']:6.1f}%"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
