"""The tables of a pilot's README, computed from its run directories alone.

    python -m scripts.pilot_summary docs/example-pilot

Reads ``<dir>/accuracy/runs/*/summary.json`` and ``<dir>/memory/runs/*/summary.json`` (the two
sweeps of ``scripts/gpu_pilot.py``) and prints Markdown: per run the primary accuracy metric and the
other definitions, parse failures, NLL and final loss; per arm the paired log ratios against AdamW
(same seed) with their mean and SD; the memory sweep's peaks and throughput. Nothing is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

REFERENCE = "adamw"


def _runs(sweep: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("runs/*/summary.json"))]


def _arm(s: dict[str, Any]) -> str:
    return str(s.get("optimizer_name") or s.get("optimizer"))


def _f(x: Any, nd: int = 4) -> str:
    return "-" if x is None else f"{x:.{nd}g}" if isinstance(x, float) else str(x)


def accuracy_tables(runs: list[dict[str, Any]]) -> str:
    metric = runs[0]["rel_l2_metric"]
    out = [
        f"Primary definition: `{metric}`; best non-learned baseline "
        f"{runs[0]['best_baseline_name']} {_f(runs[0]['best_baseline_rel_l2_error'])} (test) / "
        f"{runs[0]['val_best_baseline_name']} {_f(runs[0]['val_best_baseline_rel_l2_error'])} (val).",
        "",
        "| arm | seed | status | test | val | test / best baseline | val / best baseline | test floored_mean "
        "| test pooled | parse failures test / val | target NLL test / val | final loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in sorted(runs, key=lambda r: (_arm(r), r["seed"])):
        out.append(
            f"| {_arm(s)} | {s['seed']} | {s['status']} | {_f(s['rel_l2_error'])} | {_f(s['val_rel_l2_error'])} "
            f"| {s['rel_l2_error'] / s['best_baseline_rel_l2_error']:.3f} "
            f"| {s['val_rel_l2_error'] / s['val_best_baseline_rel_l2_error']:.3f} "
            f"| {_f(s['rel_l2_floored_mean'])} | {_f(s['rel_l2_pooled'])} "
            f"| {s['parse_failures']} / {s['val_parse_failures']} "
            f"| {_f(s['target_nll'])} / {_f(s['val_target_nll'])} | {_f(s['final_loss'])} |"
        )
    ref = {s["seed"]: s for s in runs if _arm(s) == REFERENCE}
    out += [
        "",
        f"Paired log(arm / {REFERENCE}) of the primary metric, same seed:",
        "",
        "| arm | split | log ratios (seeds) | mean | SD |",
        "|---|---|---|---|---|",
    ]
    for arm in sorted({_arm(s) for s in runs} - {REFERENCE}):
        for split, key in (("test", "rel_l2_error"), ("val", "val_rel_l2_error")):
            logs = [
                math.log(s[key] / ref[s["seed"]][key])
                for s in sorted(runs, key=lambda r: r["seed"])
                if _arm(s) == arm and s["seed"] in ref
            ]
            sd = statistics.stdev(logs) if len(logs) > 1 else float("nan")
            out.append(
                f"| {arm} | {split} | {', '.join(f'{x:+.3f}' for x in logs)} | {statistics.mean(logs):+.3f} | {sd:.3f} |"
            )
    return "\n".join(out)


def memory_table(runs: list[dict[str, Any]]) -> str:
    gib = 2.0**30
    out = [
        "| arm | seed | status | peak allocated GiB | peak reserved GiB | NVML process GiB | tokens/s | median step s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in sorted(runs, key=lambda r: (_arm(r), r["seed"])):
        out.append(
            f"| {_arm(s)} | {s['seed']} | {s['status']} | {s['peak_mem_allocated_bytes'] / gib:.2f} "
            f"| {s['peak_mem_reserved_bytes'] / gib:.2f} | {s['peak_mem_nvml_process_bytes'] / gib:.2f} "
            f"| {s['tokens_per_s']:,.0f} | {s['median_step_time_s']:.4f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.pilot_summary", description=__doc__.split("\n")[0])
    p.add_argument("pilot_dir", type=Path)
    a = p.parse_args(argv)
    acc, mem = _runs(a.pilot_dir / "accuracy"), _runs(a.pilot_dir / "memory")
    if not acc and not mem:
        print(
            f"pilot_dir={a.pilot_dir}: no runs under accuracy/runs or memory/runs; allowed: a pilot directory"
        )
        return 2
    if acc:
        print("## Accuracy sweep\n\n" + accuracy_tables(acc) + "\n")
    if mem:
        print("## Memory and throughput sweep\n\n" + memory_table(mem))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
