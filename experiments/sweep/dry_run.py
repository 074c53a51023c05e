"""``sweep.dry_run=true``: the planned runs in order with predicted peak memory against the device's,
the runs that will not fit flagged, and the GPU-hours of the whole sweep (formulas: experiments.sweep.plan).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from experiments.sweep import plan as P


def device_memory_gib(cfg: Any) -> tuple[float, str]:
    if cfg.sweep.device_memory_gib is not None:
        return float(cfg.sweep.device_memory_gib), "sweep.device_memory_gib"
    try:  # NVML, not torch: importing torch costs seconds and the dry run needs only this number
        import pynvml  # optional: NVIDIA's library, present only where there is a driver

        pynvml.nvmlInit()
        first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
        handle = pynvml.nvmlDeviceGetHandleByIndex(int(first) if first.isdigit() else 0)
        name = pynvml.nvmlDeviceGetName(handle)
        return pynvml.nvmlDeviceGetMemoryInfo(handle).total / P.GIB, str(name)
    except Exception:  # no NVML/GPU here: fall back to the protocol's 80 GB card
        pass
    return 80.0, "default (no GPU visible)"


def show(cfg: Any, runs: list[P.PlannedRun], sweep_id: str) -> int:
    mem_gib, mem_src = device_memory_gib(cfg)
    preds = P.predict(runs, cfg.sweep, mem_gib, P.measured_throughput(Path(cfg.results_root)))
    console = Console(width=None if sys.stdout.isatty() else 200)
    t = Table(
        title=f"sweep {sweep_id}: {cfg.sweep.design} at scale {cfg.scale} (dry run; device "
        f"{mem_gib:.1f} GiB from {mem_src})"
    )
    for col in (
        "#",
        "run_id",
        "arm",
        "seed",
        "setting",
        "params",
        "pred. peak GiB",
        "fits",
        "train GPU-h",
        "throughput",
    ):
        t.add_column(col)
    for p in preds:
        r = p.run
        params = f"{r.n_params / 1e9:.2f}B" if r.n_params >= 1e8 else f"{r.n_params / 1e6:.2f}M"
        source = "estimate*" if p.throughput_source.startswith("estimate") else p.throughput_source
        t.add_row(
            str(r.index),
            r.run_id,
            r.arm,
            str(r.seed),
            r.setting,
            params,
            f"{p.peak_bytes / P.GIB:.1f}",
            "yes" if p.fits else "NO (will not fit)",
            f"{p.gpu_hours:.2f}",
            source,
        )
    console.print(t)
    estimated = next((p.throughput_source for p in preds if p.throughput_source.startswith("estimate")), None)
    if estimated:
        console.print(
            f"* throughput {estimated} (no finished run of that arm and model under "
            f"{cfg.results_root}/sweeps)",
            markup=False,
        )
    misfits = [p for p in preds if not p.fits]
    total_h = sum(p.gpu_hours for p in preds)
    console.print(
        f"{len(preds)} runs; {len(misfits)} predicted not to fit in {mem_gib:.1f} GiB; "
        f"projected {total_h:.1f} GPU-hours of training (F may add seeds; C may skip larger models; "
        "evaluation's generation is not counted: on the pilot it was 7-42 s per run, see "
        "experiments/BENCHMARKS.md).",
        markup=False,
    )
    return 0
