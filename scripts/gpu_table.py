"""The GPU evidence table: every arm at one model size, each in its own process.

    python -m scripts.gpu_table --model llama-1b --steps 50
    python -m scripts.gpu_table --model llama2-7b --steps 6 --timing-warmup 2

Each arm is a real ``python -m experiments.run`` (same code, same run directory contract), with
micro-batch 1, sequence 2048, activation checkpointing, W&B off, no periodic checkpoint, and a small
evaluation; one process per arm so an OOM or allocator state cannot leak into the next arm. Prints
a markdown table (peak allocated GiB, step s, tokens/s, status) and writes it with the summaries as
JSON to ``--out``. Runs go to ``results/sweeps/<sweep_id>/runs/``; the dataset must exist
(``python -m datagen data=smoke``, or carry ``results/datasets/<id>`` to the GPU machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from experiments import identity
from experiments.config import load_run_config

GIB = 2**30
ARMS = ("adamw", "adam8bit", "flashoptim", "flashoptim_gr")


def overrides(args: argparse.Namespace, arm: str) -> list[str]:
    return [
        f"optimizer={arm}",
        f"model={args.model}",
        f"sweep_id={args.sweep_id}",
        f"seed={args.seed}",
        f"results_root={args.results_root}",
        f"data={args.data}",
        "wandb=disabled",
        f"train.max_steps={args.steps}",
        f"train.micro_batch_size={args.micro_batch}",
        "train.grad_accum_steps=1",
        f"train.max_seq_len={args.seq}",
        f"train.lr={args.lr}",
        f"train.warmup_steps={min(5, args.steps - 1)}",
        f"train.timing_warmup_steps={args.timing_warmup}",
        "train.eval.val_samples=0",
        f"train.eval.test_samples={args.eval_samples}",
        "harness.sync_every_steps=1",
        "harness.checkpoint_every_steps=0",
        "harness.keep_checkpoint=false",
        f"harness.memory_snapshot={'true' if args.snapshot else 'false'}",
        *([f"harness.cuda_memory_cap_gib={args.memory_cap_gib}"] if args.memory_cap_gib else []),
        *args.extra,
    ]


def run_arm(args: argparse.Namespace, arm: str) -> dict[str, Any]:
    ov = overrides(args, arm)
    cfg = load_run_config(ov)
    run_dir = identity.run_dir(cfg)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", *ov], text=True, capture_output=True, timeout=args.timeout_s
    )
    wall = time.perf_counter() - t0
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    if summary is None:
        sys.stderr.write(proc.stderr[-3000:])
    return {
        "arm": arm,
        "exit_code": proc.returncode,
        "wall_s": wall,
        "run_dir": str(run_dir),
        "summary": summary,
    }


def _gib(x: Any) -> str:
    return f"{x / GIB:.2f}" if isinstance(x, int | float) else "-"


def _num(x: Any, fmt: str) -> str:
    return format(x, fmt) if isinstance(x, int | float) else "-"


def table(args: argparse.Namespace, rows: list[dict[str, Any]], device: str) -> str:
    cap = f", allocator capped at {args.memory_cap_gib} GiB" if args.memory_cap_gib else ""
    lines = [
        f"### {args.model}, micro-batch {args.micro_batch} x sequence {args.seq}, activation checkpointing, "
        f"{args.steps} steps ({device}{cap})",
        "",
        "| arm | status | peak allocated GiB | peak reserved GiB | NVML process GiB | step s (median) "
        "| tokens/s | MFU | state B/param | state dtypes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["summary"] or {}
        lines.append(
            f"| {r['arm']} | {s.get('status', 'no summary')} | {_gib(s.get('peak_mem_allocated_bytes'))} "
            f"| {_gib(s.get('peak_mem_reserved_bytes'))} | {_gib(s.get('peak_mem_nvml_process_bytes'))} "
            f"| {_num(s.get('median_step_time_s'), '.3f')} | {_num(s.get('tokens_per_s'), ',.0f')} "
            f"| {_num(s.get('mfu'), '.1%')} | {_num(s.get('optimizer_state_bytes_per_param'), '.2f')} "
            f"| {','.join(s.get('optimizer_state_dtypes') or []) or '-'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="llama-1b")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--timing-warmup", type=int, default=5, help="steps left out of the timing medians")
    p.add_argument("--micro-batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--eval-samples", type=int, default=2)
    p.add_argument("--data", default="smoke")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweep-id", dest="sweep_id", default=None)
    p.add_argument("--results-root", dest="results_root", default="results")
    p.add_argument("--out", default=os.environ.get("OUT", "results/gpu_table"))
    p.add_argument("--snapshot", action="store_true", help="write a one-step memory snapshot per arm")
    p.add_argument(
        "--memory-cap-gib",
        dest="memory_cap_gib",
        type=float,
        default=None,
        help="cap the CUDA allocator, e.g. 79.6 (an H100 80GB total) on an H200",
    )
    p.add_argument("--timeout-s", dest="timeout_s", type=float, default=900)
    p.add_argument("extra", nargs="*", help="further key=value overrides for every arm")
    args = p.parse_args(argv)
    args.sweep_id = args.sweep_id or f"gpu-table-{args.model}"
    rows: list[dict[str, Any]] = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = ""
    for arm in args.arms.split(","):
        r = run_arm(args, arm)
        s = r["summary"] or {}
        print(
            f"{arm}: {s.get('status', 'no summary')} ({s.get('status_reason') or 'ok'}) in {r['wall_s']:.0f} s",
            flush=True,
        )
        rows.append(r)
        # after every arm, so a call stopped at its time limit keeps the arms that finished
        device = next((r["summary"]["device"] for r in rows if r["summary"]), "unknown device")
        md = table(args, rows, device)
        for name, text in (
            (f"gpu_table-{args.model}.md", md + "\n"),
            (
                f"gpu_table-{args.model}.json",
                json.dumps({"args": vars(args), "rows": rows}, indent=2, default=str),
            ),
        ):
            tmp = out / (name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, out / name)
    print(md)
    return 0 if all(r["summary"] is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
