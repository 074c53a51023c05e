"""How many ``scale=pilot_accuracy`` runs one GPU holds at once, and what a full-length run scores.

    python3 scripts/probes/pilot_share.py OUT.json [--steps 400] [--jobs 1,8,16] [--mps-jobs 16]
                      [--pairs adamw,flashoptim] [--pair-seeds 0,1] [--pair-steps N] [key=value ...]

Issue 14's pilot must finish in <= 25 minutes of one H200, and one ~26M run alone keeps the GPU
mostly idle (its steps are short and launch-bound).  This probe measures, with the harness's own
runs (``python -m experiments.run scale=pilot_accuracy``):

1. ``--jobs``: for each N, N AdamW runs of ``--steps`` steps started at once (N=1 is the run alone),
   evaluation cut to one test sample; per run the median step time and the phases, per batch the
   wall time.  Aggregate throughput = sum over runs of 1 / median step time (steps/s while they
   overlap); speed-up = aggregate / the lone run's.
2. ``--mps-jobs``: the same under CUDA MPS (``nvidia-cuda-mps-control -d``, stopped afterwards),
   when the daemon starts.
3. ``--pairs`` x ``--pair-seeds``, first: full-length runs (the scale's steps and evaluation), all
   at once without MPS: the primary metric against the best non-learned baseline, val and test, the
   paired log ratios of the seeds, and one more sharing figure (their median step times).

Writes everything to OUT.json after each stage (a killed probe keeps what it measured), and the
full-length runs' summaries beside it.  Needs the pilot dataset and its baselines.json in
``results/datasets/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from experiments import identity
from experiments.config import load_run_config

KEYS = (
    "status",
    "status_reason",
    "steps_completed",
    "median_step_time_s",
    "tokens_per_s",
    "phase_times_s",
    "final_loss",
    "rel_l2_metric",
    "rel_l2_error",
    "val_rel_l2_error",
    "best_baseline_rel_l2_error",
    "best_baseline_name",
    "val_best_baseline_rel_l2_error",
    "val_best_baseline_name",
    "parse_failure_rate",
    "val_parse_failure_rate",
    "peak_mem_allocated_bytes",
    "train_wall_s",
)


def run_batch(tag: str, runs: list[list[str]], env: dict[str, str], logdir: Path) -> dict[str, Any]:
    """Start every run at once; wait; read each summary."""
    logdir.mkdir(parents=True, exist_ok=True)
    dirs = [identity.run_dir(load_run_config(ov)) for ov in runs]
    for d in dirs:  # a rerun of the probe measures again, never reads an old summary
        shutil.rmtree(d, ignore_errors=True)
    t0 = time.perf_counter()
    with contextlib.ExitStack() as logs:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "experiments.run", *ov],
                stdout=logs.enter_context(open(logdir / f"{tag}-{i}.log", "wb")),
                stderr=subprocess.STDOUT,
                env=env,
            )
            for i, ov in enumerate(runs)
        ]
        rcs = [p.wait() for p in procs]
    wall = time.perf_counter() - t0
    rows = []
    for ov, d, rc in zip(runs, dirs, rcs, strict=True):
        path = d / "summary.json"
        s = json.loads(path.read_text()) if path.exists() else {}
        rows.append({"overrides": ov, "rc": rc, "run_dir": str(d), **{k: s.get(k) for k in KEYS}})
    med = [r["median_step_time_s"] for r in rows if r["median_step_time_s"]]
    out = {
        "tag": tag,
        "jobs": len(runs),
        "wall_s": wall,
        "return_codes": rcs,
        "rows": rows,
        "aggregate_steps_per_s": sum(1 / m for m in med) if med else None,
        "median_step_s_median": statistics.median(med) if med else None,
    }
    print(
        f"{tag}: {len(runs)} runs, wall {wall:.1f} s, rc {sorted(set(rcs))}, median step "
        f"{out['median_step_s_median']}, aggregate {out['aggregate_steps_per_s']} steps/s",
        flush=True,
    )
    return out


def mps(start: bool) -> str:
    exe = shutil.which("nvidia-cuda-mps-control")
    if exe is None:
        return "nvidia-cuda-mps-control not found"
    if start:
        rc = subprocess.call([exe, "-d"])
        time.sleep(1.0)
        return f"started (rc {rc})"
    p = subprocess.run([exe], input="quit\n", text=True, capture_output=True)
    time.sleep(1.0)
    return f"stopped (rc {p.returncode})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--jobs", default="1,8,16")
    ap.add_argument("--mps-jobs", default="16", help="comma list; empty: no MPS stage")
    ap.add_argument("--pairs", default="adamw,flashoptim", help="arms of the full-length runs; empty: none")
    ap.add_argument("--pair-seeds", default="0,1")
    ap.add_argument("--pair-steps", type=int, default=None, help="default: the scale's")
    ap.add_argument("--results-root", default="results")
    ap.add_argument(
        "extra", nargs="*", help="key=value overrides for every run (a CPU check: model=tiny ...)"
    )
    a = ap.parse_intermixed_args(argv)
    out_path = Path(a.out)
    logdir = out_path.parent / "pilot_share_logs"
    env = dict(os.environ, WANDB_MODE="disabled")
    report: dict[str, Any] = {"args": vars(a), "batches": [], "mps": None, "pairs": None}

    def save() -> None:
        tmp = out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1, default=str))
        os.replace(tmp, out_path)

    def short(n: int, tag: str, first_seed: int) -> list[list[str]]:
        return [
            [
                "scale=pilot_accuracy",
                "optimizer=adamw",
                f"seed={first_seed + i}",
                f"sweep_id=pilot-share-{tag}",
                "wandb=disabled",
                f"results_root={a.results_root}",
                f"train.max_steps={a.steps}",
                "train.eval.val_samples=0",
                "train.eval.test_samples=1",
                # their own baselines file (it is keyed by the samples scored, and the full-length
                # runs' file must stay as it is), non-learned only: computed in seconds by the first
                f"baselines.cache_dir={a.results_root}/baselines-short",
                "baselines.learned=[]",
                *a.extra,
            ]
            for i in range(n)
        ]

    arms = [x for x in a.pairs.split(",") if x]
    seeds = [int(x) for x in a.pair_seeds.split(",") if x]
    if arms:  # first, so that a probe stopped at its time limit still has the accuracy
        runs = [
            [
                "scale=pilot_accuracy",
                f"optimizer={arm}",
                f"seed={s}",
                "sweep_id=pilot-share-pairs",
                "wandb=disabled",
                f"results_root={a.results_root}",
                *([f"train.max_steps={a.pair_steps}"] if a.pair_steps else []),
                *a.extra,
            ]
            for arm in arms
            for s in seeds
        ]
        b = run_batch("pairs", runs, env, logdir)
        by = {(r["overrides"][1].split("=")[1], int(r["overrides"][2].split("=")[1])): r for r in b["rows"]}
        logs: dict[str, list[float | None]] = {"test": [], "val": []}
        if len(arms) == 2:
            for s in seeds:
                ref, trt = by.get((arms[0], s)), by.get((arms[1], s))
                for split, key in (("test", "rel_l2_error"), ("val", "val_rel_l2_error")):
                    x, y = (ref or {}).get(key), (trt or {}).get(key)
                    logs[split].append(math.log(y / x) if x and y else None)
        b["log_ratio"] = logs
        report["pairs"] = b
        for r in b["rows"]:
            src = Path(r["run_dir"]) / "summary.json"
            if src.exists():
                name = "summary-" + "-".join(o.split("=")[1] for o in r["overrides"][1:3]) + ".json"
                shutil.copy(src, out_path.parent / name)
        save()
    seed = 100  # the short runs' seeds, apart from the pairs'
    for n in [int(x) for x in a.jobs.split(",") if x]:
        report["batches"].append(run_batch(f"n{n}", short(n, f"n{n}", seed), env, logdir))
        seed += n
        save()
    base = report["batches"][0]["aggregate_steps_per_s"] if report["batches"] else None
    mps_jobs = [int(x) for x in a.mps_jobs.split(",") if x]
    if mps_jobs:
        report["mps"] = {"start": mps(True), "batches": []}
        try:
            for n in mps_jobs:
                b = run_batch(f"mps-n{n}", short(n, f"mps-n{n}", seed), env, logdir)
                seed += n
                report["mps"]["batches"].append(b)
                save()
        finally:
            report["mps"]["stop"] = mps(False)
    for b in report["batches"] + ((report["mps"] or {}).get("batches") or []):
        b["speedup_vs_alone"] = (b["aggregate_steps_per_s"] or 0) / base if base else None
    save()
    print(json.dumps({k: v for k, v in report.items() if k != "batches"}, default=str)[:3000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
