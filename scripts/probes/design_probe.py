"""Issue 14: which text design lets the pilot's small model learn within the pilot's GPU budget.

    python3 scripts/probes/design_probe.py OUT_DIR [--steps 800] [--only a,b] [--deadline-s 480]

The first eight configurations were run at commit 3b07de8, when ``scale=pilot_accuracy`` was the
26M model with ``sci`` targets (their overrides are relative to that); the ``b32*`` ones on today's
scale (llama-11m, ``shared_exp``). Every configuration below is one run of the harness
(``python -m experiments.run scale=pilot_accuracy optimizer=adamw``) with a few overrides; all of
them start at once and share the GPU (as the pilot's accuracy runs do). Up to the third probe no
other arm is run: the design is chosen before any treatment is looked at; the fourth (``b24_*``)
names its arm, to measure the seed spread and a positive control at a design already chosen. What
varies: the number format of the targets (``sci`` vs ``shared_exp``), packing
(packed rows vs one sample per row, i.e. attention masked at sample boundaries), model size, learning
rate, steps, and a second seed of two designs (the seed-to-seed spread of every metric definition).

``--steps`` is the budget of a packed run (8 x 2,048 tokens a step); the unpacked runs get the steps
that present the same number of samples, the ``*_x3`` run three times the steps. Each run's
``summary.json``, ``predictions.npz`` (generated texts and parsed predictions, val and test) and the
tail of its ``run.log`` are copied to ``OUT_DIR/<name>/``; ``OUT_DIR/probe.json`` has the commands,
return codes and wall times. Runs still going at ``--deadline-s`` are stopped with SIGTERM (their
directories say so). Needs the pilot dataset (and its ``baselines.json``) in ``results/datasets/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

SHX = "train.text.number_format=shared_exp"
UNPACKED = ["train.packing=false", "train.max_seq_len=384", "train.micro_batch_size=40"]
SMALL = [
    "model.hidden_size=384",
    "model.num_hidden_layers=6",
    "model.num_attention_heads=6",
    "model.num_key_value_heads=6",
    "model.intermediate_size=1024",
]
# name -> (seed, overrides, steps as a multiple of --steps)
CONFIGS: dict[str, tuple[int, list[str], float]] = {
    "sci_packed": (0, [], 1.0),
    "shx_packed": (0, [SHX], 1.0),
    "shx_packed_s1": (1, [SHX], 1.0),
    "shx_unpacked": (0, [SHX, *UNPACKED], 1.7),  # 40 samples a step vs ~68 packed: same samples seen
    "shx_unpacked_s1": (1, [SHX, *UNPACKED], 1.7),
    "shx_packed_small": (0, [SHX, *SMALL], 1.0),
    "shx_packed_lr2e-3": (0, [SHX, "train.lr=2e-3"], 1.0),
    "shx_packed_x3": (0, [SHX], 3.0),
    # second probe (after scale=pilot_accuracy became llama-11m + shared_exp, 1,000 steps of 8 rows):
    # more rows a step, where a small model's steps are launch-bound
    "b32": (0, ["train.micro_batch_size=32"], 1.0),
    "b32_s1": (1, ["train.micro_batch_size=32"], 1.0),
    "b32_lr2e-3": (0, ["train.micro_batch_size=32", "train.lr=2e-3"], 1.0),
    # third probe (pilot v2: 12,000 training samples, 1,400 steps, cosine to 0; its first look had
    # AdamW at 0.58-0.61x): what per-run compute, spent how, reaches 0.5x. Run with --steps 1400.
    "v2_11m_x3": (0, [], 3.0),  # 3x the steps
    "v2_11m_b24": (0, ["train.micro_batch_size=24"], 1.0),  # 3x the samples a step
    "v2_26m_x1.25": (0, ["model=llama-26m"], 1.25),  # ~3x the compute (2.4x a step)
    "v2_26m_x2": (0, ["model=llama-26m"], 2.0),  # ~5x the compute
    # fourth probe: the seed spread and a positive control at the cheapest design that learned
    # (24 rows a step, 1,400 steps: 0.37x): is the paired spread small, is adamw_bf16 worse there?
    # Not yet run (2026-12-02: no device machine could be started for it).
    "b24_adamw_s0": (0, ["train.micro_batch_size=24"], 1.0),
    "b24_adamw_s1": (1, ["train.micro_batch_size=24"], 1.0),
    "b24_bf16_s0": (0, ["train.micro_batch_size=24", "optimizer=adamw_bf16"], 1.0),
    "b24_bf16_s1": (1, ["train.micro_batch_size=24", "optimizer=adamw_bf16"], 1.0),
    "b24_flash_s0": (0, ["train.micro_batch_size=24", "optimizer=flashoptim"], 1.0),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="design_probe", description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--only", default="", help="comma-separated configuration names (default: all)")
    p.add_argument("--deadline-s", type=float, default=480.0)
    p.add_argument("--mps", action="store_true", help="share the GPU through CUDA MPS (scripts/gpu_pilot.py)")
    a = p.parse_args(argv)
    names = [n for n in a.only.split(",") if n] or list(CONFIGS)
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        print(f"--only: unknown configuration {unknown}; allowed: {', '.join(CONFIGS)}")
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    from scripts.gpu_pilot import mps_session  # the repository is on PYTHONPATH (scripts/gpu_env.sh)

    with mps_session(a.mps, "--mps not given") as mps_state:
        record, t0 = launch(a, names)
    collect(a, names, record)
    (a.out / "probe.json").write_text(
        json.dumps({"configs": record, "wall_s": time.perf_counter() - t0, "mps": mps_state}, indent=2)
    )
    print(json.dumps(record, indent=1))
    return 0


def launch(a: argparse.Namespace, names: list[str]) -> tuple[dict[str, dict], float]:
    """Start every configuration at once; wait for them (SIGTERM at the deadline). (record, t0)"""
    record: dict[str, dict] = {}
    procs = {}
    t0 = time.perf_counter()
    for name in names:
        seed, over, mult = CONFIGS[name]
        steps = max(1, round(a.steps * mult))
        cmd = [
            sys.executable,
            "-m",
            "experiments.run",
            "scale=pilot_accuracy",
            *([] if any(o.startswith("optimizer=") for o in over) else ["optimizer=adamw"]),
            f"seed={seed}",
            f"sweep_id=probe-{name}",
            "wandb=disabled",
            f"train.max_steps={steps}",
            *over,
        ]
        log = open(a.out / f"{name}.log", "wb")  # noqa: SIM115 (closed when the run ends)
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
        record[name] = {"command": " ".join(cmd), "steps": steps, "seed": seed}
    pending = set(procs)
    while pending:
        for name in list(pending):
            proc, log = procs[name]
            if proc.poll() is not None:
                record[name].update(rc=proc.returncode, wall_s=time.perf_counter() - t0)
                log.close()
                pending.discard(name)
        if time.perf_counter() - t0 > a.deadline_s:
            for name in pending:
                procs[name][0].send_signal(signal.SIGTERM)
                record[name]["stopped_at_deadline"] = True
            for name in list(pending):
                procs[name][0].wait(timeout=60)
                record[name].update(rc=procs[name][0].returncode, wall_s=time.perf_counter() - t0)
                procs[name][1].close()
            pending.clear()
        time.sleep(1.0)
    return record, t0


def collect(a: argparse.Namespace, names: list[str], record: dict[str, dict]) -> None:
    """Copy each run's files to ``OUT_DIR/<name>/`` and add its headline figures to ``record``."""
    for name in names:
        runs = sorted(Path(f"results/sweeps/probe-{name}/runs").glob("*"))
        dest = a.out / name
        dest.mkdir(exist_ok=True)
        for run in runs:
            for f in ("summary.json", "predictions.npz", "config.yaml"):
                if (run / f).is_file():
                    shutil.copy2(run / f, dest / f)
            if (run / "run.log").is_file():
                (dest / "run.log.tail").write_text(
                    "\n".join((run / "run.log").read_text().splitlines()[-40:])
                )
        s = dest / "summary.json"
        if s.is_file():
            js = json.loads(s.read_text())
            record[name].update(
                {
                    k: js.get(k)
                    for k in (
                        "status",
                        "median_step_time_s",
                        "final_loss",
                        "rel_l2_error",
                        "val_rel_l2_error",
                        "rel_l2_per_sample_median",
                        "val_rel_l2_per_sample_median",
                        "parse_failure_rate",
                        "target_nll",
                        "val_target_nll",
                    )
                }
            )


if __name__ == "__main__":
    raise SystemExit(main())
