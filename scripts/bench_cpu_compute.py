"""CPU training-step cost of a 16-bit-parameter arm with and without the fp32 compute path
(``train.cpu_fp32_compute``, experiments/run/models.py::compute_in_fp32), in one process.

Two copies of the same model (same seed, or the same pretrained weights), cast by the arm, each with
its own optimizer: one computes under bf16 autocast (the path before ``cpu_fp32_compute``, and a
GPU's), the other in fp32 on the same bf16 weights. Steps alternate between the two (the order
flips every round), so both see the same machine load; each step is forward + backward + optimizer
step on random token ids (the cost does not depend on the ids' values). The first step of each is
reported separately (allocation, lazy state). Process CPU time (user + sys) is the load-independent
figure; wall time and the load average are printed with it.

    python -m scripts.bench_cpu_compute --steps 6 model=tiny optimizer=flashoptim
    python -m scripts.bench_cpu_compute --steps 2 model=smollm2-135m train.max_seq_len=128 \\
        train.micro_batch_size=1

Overrides are the run's (conf/run.yaml; the smoke scale's 2 x 768 tokens and one thread unless
overridden); ``--steps`` (default 4) is the timed steps per path after the first. Prints one JSON
object (and writes it to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from typing import Any

import torch

from common.atomic import write_json
from common.config import compose
from experiments import config as run_config
from experiments.run import arms, models


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench_cpu_compute")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per path after the first")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args, overrides = ap.parse_known_args(argv)
    if args.steps < 1:
        print(f"--steps {args.steps}: must be >= 1", file=sys.stderr)
        return 2
    steps, out = args.steps, args.out
    run_config.register()
    cfg = compose("run", overrides)
    t, o = cfg.train, cfg.optimizer
    if o.param_dtype == "float32":
        print(
            f"optimizer={o.name}: fp32 parameters; the fp32 compute path is for 16-bit arms", file=sys.stderr
        )
        return 2
    torch.set_num_threads(int(cfg.harness.cpu_threads or 1))
    device = torch.device("cpu")
    vocab = int(cfg.model.vocab_size or t.text.tokenizer_vocab_size)
    t0 = time.perf_counter()
    base, init = models.build_model(cfg.model, vocab, device, int(cfg.seed))
    load_s = time.perf_counter() - t0
    arms.apply_param_dtype(base, o)
    runs: dict[str, dict[str, Any]] = {}
    for path in ("autocast", "fp32_upcast"):
        model = copy.deepcopy(base) if path == "autocast" else base
        if path == "fp32_upcast":
            models.compute_in_fp32(model)
        model.train()
        runs[path] = {
            "model": model,
            "opt": arms.build_optimizer(model, o, t, device),
            "ctx": (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if path == "autocast" else None,
            "cpu_s": [],
            "wall_s": [],
            "loss": [],
        }
    vocab_real = base.get_input_embeddings().weight.shape[0]
    gen = torch.Generator().manual_seed(0)
    load_before = os.getloadavg()
    order = ["autocast", "fp32_upcast"]
    for i in range(steps + 1):
        ids = torch.randint(0, vocab_real, (t.micro_batch_size, t.max_seq_len), generator=gen)
        for path in order if i % 2 == 0 else order[::-1]:
            r = runs[path]
            c0, w0 = time.process_time(), time.perf_counter()
            if r["ctx"] is not None:
                with r["ctx"]():
                    loss = r["model"](input_ids=ids, labels=ids).loss
            else:
                loss = r["model"](input_ids=ids, labels=ids).loss
            loss.backward()
            r["opt"].step()
            r["opt"].zero_grad(set_to_none=True)
            r["cpu_s"].append(time.process_time() - c0)
            r["wall_s"].append(time.perf_counter() - w0)
            r["loss"].append(float(loss.detach()))
            print(
                f"step {i} {path}: cpu {r['cpu_s'][-1]:.2f} s wall {r['wall_s'][-1]:.2f} s", file=sys.stderr
            )
    load_after = os.getloadavg()
    result: dict[str, Any] = {
        "model": cfg.model.name,
        "model_init": init,
        "load_s": load_s,
        "optimizer": o.name,
        "tokens_per_step": t.micro_batch_size * t.max_seq_len,
        "micro_batch_size": t.micro_batch_size,
        "seq_len": t.max_seq_len,
        "threads": torch.get_num_threads(),
        "timed_steps": steps,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "torch": torch.__version__,
    }
    for path, r in runs.items():
        cpu, wall = statistics.median(r["cpu_s"][1:]), statistics.median(r["wall_s"][1:])
        result[path] = {
            "first_step_cpu_s": r["cpu_s"][0],
            "median_step_cpu_s": cpu,
            "median_step_wall_s": wall,
            "steps_per_cpu_s": 1.0 / cpu,
            "steps_per_s_wall": 1.0 / wall,
            "cpu_s": r["cpu_s"],
            "wall_s": r["wall_s"],
            "loss": r["loss"],
        }
    result["speedup_cpu"] = (
        result["autocast"]["median_step_cpu_s"] / result["fp32_upcast"]["median_step_cpu_s"]
    )
    print(json.dumps(result, indent=1))
    if out:
        write_json(out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
