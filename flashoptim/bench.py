"""``python -m flashoptim.bench``: one AdamW step over ~1.01B params shaped like Llama-2-7B layers;
``python -m flashoptim.bench e2e``: a few training steps of random-init Llamas, one process per arm.

Each arm runs in its own process (``flashoptim/bench_worker.py``) so allocator state does not leak
between arms, and so the published ``flashoptim`` wheel can be imported under its own name without
shadowing ours: its process gets only the unpacked wheel on ``PYTHONPATH``.  Prints a table and
writes JSON (``--out``).  Needs a CUDA device.

    python -m flashoptim.bench [--out bench.json] [--steps 50] [--arms a,b,...] [--workload W]
                               [--published-wheel .whl/published/flashoptim-0.1.4-py3-none-any.whl]
    python -m flashoptim.bench e2e [--models llama7b,llama13b] [--arms ours24,ours24_gr,...]
                                   [--steps 6] [--micro-batch 1] [--seq 2048] [--out e2e.json]
                                   [--build-cache release|keep]

``--workload``: ``llama7b_layers`` (the default, bandwidth-bound) or ``small_tensors`` (2,048
tensors of 4,096 and 11,008 values: launch-bound).  The e2e arms are listed in
``flashoptim/bench_e2e_worker.py`` (ours and the published FlashAdamW 24-bit with and without
gradient release, torch fused AdamW, bitsandbytes AdamW8bit); each (model, arm) is one process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from flashoptim.bench_e2e_worker import ARMS as E2E_ARMS
from flashoptim.bench_e2e_worker import CACHE_MODES as E2E_CACHE_MODES
from flashoptim.bench_e2e_worker import MODELS as E2E_MODELS
from flashoptim.bench_worker import MIN_BYTES_PER_PARAM, WORKLOADS

OURS = ["flash_adamw24", "flash_adamw32", "flash_adamw_none", "flash_adamw24_torch"]
BASELINES = ["torch_adamw_fused_fp32", "bnb_adamw8bit_bf16"]
PUBLISHED = ["published_adamw24", "published_adamw32", "published_adamw_none"]
WORKER = Path(__file__).with_name("bench_worker.py")
E2E_WORKER = Path(__file__).with_name("bench_e2e_worker.py")
# set for a published arm's worker: the directory its ``flashoptim`` must come from
PUBLISHED_ROOT_ENV = "FLASHOPTIM_BENCH_PUBLISHED_ROOT"


def _unpack_published(wheel: Path) -> Path:
    dest = Path(tempfile.gettempdir()) / "pubfo" / "flashoptim_published"
    if not (dest / "flashoptim" / "__init__.py").exists():
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(dest)
    return dest


def _worker_env(published: bool, published_root: Path | None) -> tuple[dict[str, str], str | None]:
    """The worker's environment: ours runs in this process's own; a published arm in the same one
    with the unpacked wheel first on ``PYTHONPATH``, so ``import flashoptim`` finds the published
    package (a script's own directory comes first on ``sys.path``, and ``flashoptim/`` holds no
    ``flashoptim`` package) and the worker checks where it came from (``PUBLISHED_ROOT_ENV``).

    Hazard: the published e2e arms failed in every earlier run (``Could not import module
    'LlamaConfig'``); the cause was the worker's own directory on ``sys.path`` (see
    ``bench_worker._drop_own_directory``), not this environment.
    """
    env = dict(os.environ)
    if published:
        assert published_root is not None
        rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([str(published_root), *rest])
        env[PUBLISHED_ROOT_ENV] = str(published_root)
    else:
        env.pop(PUBLISHED_ROOT_ENV, None)
    return env, None


def _run_worker(
    arm: str, steps: int, workdir: Path, published_root: Path | None, workload: str = "llama7b_layers"
) -> dict[str, Any]:
    out = workdir / f"{arm}.json"
    env, cwd = _worker_env(arm.startswith("published_"), published_root)
    proc = subprocess.run(
        [sys.executable, str(WORKER), arm, str(out), str(steps), workload],
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


def _write_json(path: str, report: dict[str, Any]) -> None:
    tmp_out = path + ".tmp"
    Path(tmp_out).write_text(json.dumps(report, indent=1))
    os.replace(tmp_out, path)


def e2e_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m flashoptim.bench e2e", description="training steps, one process per arm"
    )
    ap.add_argument("--models", default="llama1b,llama7b,llama13b")
    ap.add_argument("--arms", default=",".join(E2E_ARMS))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--micro-batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--out", default="flashoptim_e2e.json")
    ap.add_argument(
        "--build-cache",
        choices=E2E_CACHE_MODES,
        default="release",
        help="after setup, empty the allocator cache the fp32 build left (release, every arm) or keep it",
    )
    ap.add_argument("--published-wheel", default=".whl/published/flashoptim-0.1.4-py3-none-any.whl")
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    arms = [a for a in args.arms.split(",") if a]
    for what, given, allowed in (("--models", models, E2E_MODELS), ("--arms", arms, E2E_ARMS)):
        unknown = [x for x in given if x not in allowed]
        if unknown or not given:
            print(f"{what}: unknown or empty {unknown}; allowed: {sorted(allowed)}", file=sys.stderr)
            return 2
    if args.steps < 2 or args.micro_batch < 1 or args.seq < 1:
        print(
            "--steps must be >= 2 (step 1 is left out of the median), --micro-batch and --seq >= 1",
            file=sys.stderr,
        )
        return 2
    if not torch.cuda.is_available():
        print("flashoptim.bench e2e needs a CUDA device", file=sys.stderr)
        return 2
    wheel = Path(args.published_wheel)
    published_root = _unpack_published(wheel) if wheel.exists() else None
    if published_root is None and any(a.startswith("published") for a in arms):
        print(f"--published-wheel {wheel} not found; the published arms need it", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "steps": args.steps,
        "micro_batch": args.micro_batch,
        "seq": args.seq,
        "build_cache": args.build_cache,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            for arm in arms:
                out = Path(tmp) / f"{model}_{arm}.json"
                env, cwd = _worker_env(arm.startswith("published"), published_root)
                cmd = [sys.executable, str(E2E_WORKER), model, arm, str(out), str(args.steps)]
                cmd += [str(args.micro_batch), str(args.seq), args.build_cache]
                proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
                if out.exists():
                    r: dict[str, Any] = json.loads(out.read_text())
                else:
                    r = {
                        "model": model,
                        "arm": arm,
                        "status": "error",
                        "error": (proc.stderr or proc.stdout)[-500:],
                    }
                report["runs"].append(r)
                _write_json(args.out, report)  # after every arm: a killed run keeps what it measured
                print(
                    "E2E",
                    json.dumps({k: v for k, v in r.items() if k not in ("losses", "step_s")}),
                    flush=True,
                )
    print(
        f"\n{report['device']}, micro-batch {args.micro_batch} x {args.seq}, {args.steps} steps (median of 2..N), "
        f"build cache {args.build_cache}"
    )
    print(
        f"{'model':9s} {'arm':18s} {'peak alloc GiB':>14s} {'peak resv GiB':>13s} {'step s':>7s} {'tokens/s':>9s} "
        f"{'setup alloc/resv GiB':>20s}"
    )
    for r in report["runs"]:
        if r.get("status") != "ok":
            print(f"{r['model']:9s} {r['arm']:18s} {r.get('status')}: {str(r.get('error', ''))[:60]}")
            continue
        print(
            f"{r['model']:9s} {r['arm']:18s} {r['peak_alloc_GiB']:14.2f} {r['peak_reserved_GiB']:13.2f} "
            f"{r['step_s_median']:7.3f} {r['tokens_per_s']:9.0f} "
            f"{r['setup_alloc_GiB']:9.2f}/{r['setup_reserved_GiB']:.2f}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "e2e":
        return e2e_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="flashoptim_bench.json")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--arms", default=",".join(OURS + BASELINES + PUBLISHED))
    ap.add_argument("--published-wheel", default=".whl/published/flashoptim-0.1.4-py3-none-any.whl")
    ap.add_argument("--workload", default="llama7b_layers")
    args = ap.parse_args(argv)
    if args.workload not in WORKLOADS:
        print(f"--workload: unknown {args.workload!r}; allowed: {sorted(WORKLOADS)}", file=sys.stderr)
        return 2
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
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "steps": args.steps,
        "workload": args.workload,
        "arms": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for arm in arms:
            r = _run_worker(arm, args.steps, Path(tmp), published_root, args.workload)
            report["arms"][arm] = r
            print(arm, json.dumps(r), flush=True)
    _write_json(args.out, report)
    print(
        f"\n{report['device']}; step ms: median of {args.steps} with a GPU lead-in (device time), "
        "cold: the host's pre-launch time included; copy: measured in each arm's process"
    )
    print(
        f"{'arm':26s} {'step ms':>8s} {'cold ms':>8s} {'B/param':>8s} {'min B moved':>11s} "
        f"{'GB/s':>7s} {'copy GB/s':>9s} {'% copy':>7s}"
    )
    for arm, r in report["arms"].items():
        if "error" in r:
            print(f"{arm:26s} error: {r['error'][:80]}")
            continue
        print(
            f"{arm:26s} {r['step_ms_median']:8.3f} {r['step_ms_cold_median']:8.3f} "
            f"{r['resident_bytes_per_param']:8.3f} {r['min_bytes_moved_per_param']:11.3f} "
            f"{r['achieved_GBps']:7.0f} {r['copy_GBps']:9.0f} {100 * r['frac_of_copy_bw']:6.1f}%"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
