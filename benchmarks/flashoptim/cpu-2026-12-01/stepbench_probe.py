"""CPU step probe used while developing cpu_step.py (figures in stepbench_probe.log).

``TH=<threads> python benchmarks/flashoptim/cpu-2026-12-01/stepbench_probe.py`` from the repo root:
torch AdamW (fp32) then FlashAdamW (bf16), 21 tensors of the smoke model's shapes, median process
CPU time of 20 steps after 3. Superseded by ``python -m flashoptim.cpu_bench`` (interleaved arms).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch

sys.path.insert(0, ".")
import flashoptim

LAYER = [(64, 64), (32, 64), (32, 64), (64, 64), (128, 64), (128, 64), (64, 128), (64,), (64,)]
SHAPES = [(384, 64), (384, 64), (64,), *LAYER, *LAYER]


def bench(opt: torch.optim.Optimizer, ps: list[torch.nn.Parameter], n: int = 20) -> float:
    for p in ps:
        p.grad = torch.randn_like(p) * 1e-3
    for _ in range(3):
        opt.step()
    times = []
    for _ in range(n):
        t0 = time.process_time()
        opt.step()
        times.append(time.process_time() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    torch.set_num_threads(int(os.environ.get("TH", "1")))
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(s)) for s in SHAPES]
    a = bench(torch.optim.AdamW(ps, lr=1e-3), ps)
    ps = [torch.nn.Parameter(torch.randn(s).to(torch.bfloat16)) for s in SHAPES]
    f = bench(flashoptim.FlashAdamW(ps, lr=1e-3), ps)
    n = sum(p.numel() for p in ps)
    print(
        f"threads {torch.get_num_threads()} nparams {n} adamw {a:.2f} ms flash {f:.2f} ms ratio {f / a:.2f} (cpu time)"
    )


if __name__ == "__main__":
    main()
