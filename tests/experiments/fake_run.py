"""A stand-in for ``python -m experiments.run`` that honours the run-directory contract, for sweep tests.

It is a real process (so kill, resume, launchers and parallelism are exercised for real) that writes
metrics.jsonl rows step by step, then summary.json last and atomically, with numbers planted through
``<results_root>/fake_spec.json``:

    {"steps": 6, "step_s": 0.05,
     "arms": {"<arm>": {"status": "completed", "peak": 1e9, "crash": false, "gate_b_fired": false,
                        "rel_l2": 0.1, "best_baseline": 1.0}},
     "seeds": {"<arm>:<seed>": {...same keys, override the arm's...}}}

Every start is appended to ``<results_root>/invocations.jsonl`` (run_id, arm, seed, resume, pid, parent
pid, GPU, whether this module was imported before the run started: a fork server's preload).
The run directory comes from HARNESS_RUN_DIR, which the sweep sets to the directory it expects.
SIGTERM, as in the real run, stops it after the current step: it takes ``stop_s`` (the checkpoint's
time, default 0.5 s) and writes a resumable summary with status ``aborted``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from common.atomic import append_jsonl, read_jsonl, write_json


def main() -> int:
    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    run_dir = Path(os.environ["HARNESS_RUN_DIR"])
    root = Path(args["results_root"])
    spec_path = root / "fake_spec.json"
    spec = json.loads(spec_path.read_text()) if spec_path.exists() else {}
    arm, seed = args["optimizer"], int(args["seed"])
    mine = {**spec.get("arms", {}).get(arm, {}), **spec.get("seeds", {}).get(f"{arm}:{seed}", {})}
    resume = args.get("resume") == "true"
    append_jsonl(
        root / "invocations.jsonl",
        {
            "run_id": run_dir.name,
            "arm": arm,
            "seed": seed,
            "resume": resume,
            "pid": os.getpid(),
            "ppid": os.getppid(),
            # imported before this run started: the sweep's fork server preloaded it (sweep.preload_modules)
            "preloaded": sys.modules.get("tests.experiments.fake_run") is not None,
            "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "t": time.time(),
        },
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = run_dir / "metrics.jsonl"
    start = 0
    if resume and metrics.exists():
        rows = read_jsonl(metrics)
        start = rows[-1]["step"] if rows else 0
    steps, step_s = int(spec.get("steps", 6)), float(spec.get("step_s", 0.05))
    peak = mine.get("peak")
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stop.append(signum))
    for step in range(start + 1, steps + 1):
        if stop:  # like experiments.run: checkpoint after the step in hand, then a resumable summary
            time.sleep(float(spec.get("stop_s", 0.5)))
            write_json(
                run_dir / "summary.json",
                {
                    "run_id": run_dir.name,
                    "optimizer": arm,
                    "seed": seed,
                    "status": "aborted",
                    "status_reason": "SIGTERM: stopped after the step, checkpoint written",
                    "resumable": True,
                    "steps_completed": step - 1,
                },
            )
            return 0
        time.sleep(step_s)
        append_jsonl(
            metrics,
            {
                "step": step,
                "loss": 2.0,
                "lr": 1e-4,
                "step_time_s": step_s,
                "tokens_per_s": 1000.0,
                "mem_allocated_bytes": peak,
                "mem_reserved_bytes": peak,
            },
        )
    if mine.get("crash"):
        os._exit(3)  # dies like a segfault: no summary.json
    status = mine.get("status", "completed")
    gates = []
    if mine.get("gate_b_fired"):
        gates.append(
            {
                "gate": "B",
                "step": steps,
                "fired": True,
                "outcome": "fired",
                "values": {"reduction": 0.01},
                "reason": "planted: peak memory within 5%",
            }
        )
    write_json(
        run_dir / "summary.json",
        {
            "run_id": run_dir.name,
            "sweep_id": args.get("sweep_id"),
            "optimizer": arm,
            "model": args.get("model", "tiny"),
            "seed": seed,
            "scale": args.get("scale"),
            "status": status,
            "status_reason": None if status == "completed" else f"planted {status}",
            "gates": gates,
            "peak_mem_allocated_bytes": peak,
            "peak_mem_reserved_bytes": peak,
            "mem_measurable": peak is not None,
            "tokens_per_s": 1000.0,
            "steps_completed": steps,
            "grid": {"model": args.get("model", "tiny")},
            # planted test accuracy (gate F's seed-adding rule reads it; "seeds" overrides vary it)
            **({"rel_l2_error": float(mine["rel_l2"])} if mine.get("rel_l2") is not None else {}),
            # the best non-learned baseline on the same samples (the assay-sensitivity rule reads it):
            # planted far above the planted errors unless "best_baseline" says otherwise
            **(
                {"best_baseline_rel_l2_error": float(mine.get("best_baseline", 1.0))}
                if mine.get("rel_l2") is not None
                else {}
            ),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
