"""``python -m flashoptim.cpu_bench``: one optimizer step on CPU, FlashAdamW's torch path vs torch AdamW.

Parameters are shaped like a Llama (embedding, untied head, per layer q/k/v/o, gate/up/down and two
norms, a final norm), as the run engine builds them: FlashAdamW gets bf16 matrices and fp32 norms
(``cast_model``), AdamW fp32 everywhere (the ``adamw`` arm; torch's default single-tensor loop on
CPU).  Both optimizers step in the same process, alternately, on fixed random gradients; each step
is timed on process CPU time (the load-independent figure) and on wall time.  Prints a table and
writes JSON (``--out``).  Results: flashoptim/BENCHMARKS.md, "CPU path".

    python -m flashoptim.cpu_bench [--models smoke,medium] [--steps 30] [--threads 1] [--out f.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from flashoptim.adam import FlashAdamW

# (vocab, hidden, intermediate, layers, heads, kv_heads): smoke is conf/model/tiny.yaml with the
# smoke tokenizer's 384-token vocabulary; medium is a 21M-parameter model of the same shape family.
MODELS = {"smoke": (384, 64, 128, 2, 4, 2), "medium": (8192, 512, 1536, 4, 8, 4)}


def llama_shapes(vocab: int, d: int, m: int, layers: int, heads: int, kv: int) -> list[tuple[int, ...]]:
    kv_dim = d // heads * kv
    layer = [(d, d), (kv_dim, d), (kv_dim, d), (d, d), (m, d), (m, d), (d, m), (d,), (d,)]
    return [(vocab, d), *(layer * layers), (d,), (vocab, d)]


def _params(shapes: list[tuple[int, ...]], flash: bool) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(0)
    out = []
    for s in shapes:
        t = torch.randn(s, generator=g) * 0.02
        out.append(torch.nn.Parameter(t.to(torch.bfloat16) if flash and len(s) > 1 else t))
    for p in out:
        p.grad = (torch.randn(p.shape, generator=g) * 1e-3).to(p.dtype)
    return out


def _groups(ps: list[torch.nn.Parameter]) -> list[dict[str, Any]]:
    return [
        {"params": [p for p in ps if p.ndim >= 2], "weight_decay": 0.1},
        {"params": [p for p in ps if p.ndim < 2], "weight_decay": 0.0},
    ]


def bench_model(name: str, steps: int, warmup: int = 3) -> dict[str, Any]:
    shapes = llama_shapes(*MODELS[name])
    opts = {
        "torch_adamw_fp32": torch.optim.AdamW(_groups(_params(shapes, False)), lr=1e-3),
        "flash_adamw24_torch": FlashAdamW(_groups(_params(shapes, True)), lr=1e-3, backend="torch"),
    }
    cpu: dict[str, list[float]] = {k: [] for k in opts}
    wall: dict[str, list[float]] = {k: [] for k in opts}
    for i in range(warmup + steps):
        for arm, opt in opts.items():  # alternate: both arms see the same machine conditions
            w0, c0 = time.perf_counter(), time.process_time()
            opt.step()
            c1, w1 = time.process_time(), time.perf_counter()
            if i >= warmup:
                cpu[arm].append(c1 - c0)
                wall[arm].append(w1 - w0)
    res: dict[str, Any] = {
        "model": name,
        "shape": dict(zip(("vocab", "hidden", "intermediate", "layers", "heads", "kv_heads"), MODELS[name])),
        "n_params": sum(torch.Size(s).numel() for s in shapes),
        "n_tensors": len(shapes),
        "steps": steps,
    }
    for arm in opts:
        res[arm] = {
            "cpu_ms_median": 1e3 * statistics.median(cpu[arm]),
            "wall_ms_median": 1e3 * statistics.median(wall[arm]),
        }
    ref, ours = res["torch_adamw_fp32"], res["flash_adamw24_torch"]
    res["ratio_cpu"] = ours["cpu_ms_median"] / ref["cpu_ms_median"]
    res["ratio_wall"] = ours["wall_ms_median"] / ref["wall_ms_median"]
    # Per-step ratios of the interleaved pairs: their spread shows how much the machine moved them.
    pairs = sorted(a / b for a, b in zip(cpu["flash_adamw24_torch"], cpu["torch_adamw_fp32"]))
    res["ratio_cpu_pairs_q10_q90"] = [pairs[len(pairs) // 10], pairs[(9 * len(pairs)) // 10]]
    return res


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flashoptim.cpu_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smoke,medium", help=f"comma-separated, from {sorted(MODELS)}")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per arm (after 3 warm-up steps)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the smoke runs use 1)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    bad = [m for m in models if m not in MODELS]
    if bad or args.steps < 1 or args.threads < 1:
        why = (
            f"--models {bad} unknown; allowed: {sorted(MODELS)}"
            if bad
            else "--steps and --threads must be >= 1"
        )
        print(f"cpu_bench: {why}")
        return 2
    torch.set_num_threads(args.threads)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_avg_1min_at_start": os.getloadavg()[0],
        "torch": torch.__version__,
        "threads": args.threads,
        "commit": _commit(),
    }
    results = [bench_model(m, args.steps) for m in models]
    print(f"{meta}")
    print(
        "| model | params (tensors) | torch AdamW ms (CPU/wall) | FlashAdamW torch path ms (CPU/wall) | ratio CPU (pairs q10-q90) | ratio wall |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        a, f = r["torch_adamw_fp32"], r["flash_adamw24_torch"]
        q10, q90 = r["ratio_cpu_pairs_q10_q90"]
        print(
            f"| {r['model']} | {r['n_params']:,} ({r['n_tensors']}) | {a['cpu_ms_median']:.2f} / {a['wall_ms_median']:.2f} "
            f"| {f['cpu_ms_median']:.2f} / {f['wall_ms_median']:.2f} | {r['ratio_cpu']:.2f} ({q10:.2f}-{q90:.2f}) "
            f"| {r['ratio_wall']:.2f} |"
        )
    if args.out:
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
