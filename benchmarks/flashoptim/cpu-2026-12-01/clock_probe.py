"""Gate E clock probe: one training step of the smoke model per arm, as the run engine takes it.

Smoke model (tiny Llama, vocab 384, 2 x 768 tokens, activation checkpointing); AdamW fp32 with
fp32 compute, FlashAdamW on bf16 params under bf16 autocast. Median wall and process CPU time
per step (steps 3-7). Run from the repository root with clock_probe.sh (threads x busy processes).
Measured 2026-12-01 at commit 235c6bb plus the working tree of fa7d8de: clock_probe.log.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from types import SimpleNamespace

import torch

sys.path.insert(0, ".")
import flashoptim
from experiments.run.models import build_model

MODEL = SimpleNamespace(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    attn_implementation="sdpa",
    pretrained_path=None,
    activation_checkpointing=True,
)


def run(arm: str, steps: int = 7) -> tuple[float, float, float]:
    model, _ = build_model(MODEL, 384, torch.device("cpu"), 0)
    if arm == "flash":
        flashoptim.cast_model(model, dtype=torch.bfloat16)
    groups = [
        {"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": 0.01},
        {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = flashoptim.FlashAdamW(groups, lr=3e-3) if arm == "flash" else torch.optim.AdamW(groups, lr=3e-3)
    ids = torch.randint(0, 384, (2, 768))
    wall, cpu, opt_cpu = [], [], []
    for _ in range(steps):
        w0, c0 = time.perf_counter(), time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=arm == "flash"):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        c1 = time.process_time()
        opt.step()
        opt.zero_grad()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
        opt_cpu.append(time.process_time() - c1)
    return statistics.median(wall[2:]), statistics.median(cpu[2:]), statistics.median(opt_cpu[2:])


def main() -> None:
    threads = int(os.environ.get("TH", "2"))
    torch.set_num_threads(threads)
    r = {arm: run(arm) for arm in ("adamw", "flash")}
    out = {
        "threads": threads,
        "busy": os.environ.get("BUSY", "0"),
        "load": os.getloadavg()[0],
        "wall": [round(r[a][0], 3) for a in r],
        "cpu": [round(r[a][1], 3) for a in r],
        "optstep_cpu": [round(r[a][2], 4) for a in r],
        "ratio_wall": round(r["adamw"][0] / r["flash"][0], 3),
        "ratio_cpu": round(r["adamw"][1] / r["flash"][1], 3),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
