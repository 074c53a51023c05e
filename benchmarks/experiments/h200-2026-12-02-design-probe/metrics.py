"""Every accuracy definition (and two candidates) of the design probe's runs, from their predictions.

python benchmarks/experiments/h200-2026-12-02-design-probe/metrics.py results/datasets/be4e162aaad2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from datagen.dataset import load_split
from experiments.eval import accuracy as A

KEYS = ("floored", "psm", "cap1", "geo", "pooled", "fail", "nll")


def candidates(e: np.ndarray, n: np.ndarray, floor: float) -> dict[str, float]:
    r = e / n
    return {
        "floored": float(np.mean(e / np.maximum(n, floor))),
        "psm": float(np.median(r)),
        "cap1": float(np.mean(np.minimum(r, 1))),
        "geo": float(np.exp(np.mean(np.log(np.maximum(r, 1e-3))))),
        "pooled": float(e.sum() / n.sum()),
    }


def main() -> None:
    d = Path(sys.argv[1] if len(sys.argv) > 1 else "results/datasets/be4e162aaad2")
    ctx = A.MetricContext.from_json(json.loads((d / "baselines.json").read_text())["metric_context"])
    held = {s: load_split(d, s) for s in ("val", "test")}
    res: dict[str, dict[str, dict[str, float]]] = {}
    for f in sorted(Path(__file__).parent.glob("*/predictions.npz")):
        name, z = f.parent.name, np.load(f)
        summary = json.loads((f.parent / "summary.json").read_text())
        res[name] = {}
        for s in ("test", "val"):
            true = np.asarray(held[s]["stress"], dtype=np.float64)
            pred = z[f"{s}_pred"]
            ok = ~np.isnan(pred).any(axis=(1, 2))
            e = A.sample_errors(np.nan_to_num(pred), true, ctx, ok)
            row = candidates(e, A.sample_norms(true), ctx.floor_kpa)
            row["fail"] = float((~ok).mean())
            row["nll"] = summary.get(("" if s == "test" else "val_") + "target_nll")
            res[name][s] = row
    print(f"{'run':20s} split " + " ".join(f"{k:>8s}" for k in KEYS))
    for name, by in res.items():
        for s in ("test", "val"):
            print(f"{name:20s} {s:5s} " + " ".join(f"{by[s][k]:8.4f}" for k in KEYS))
    print("seed-pair log differences (seed 1 vs seed 0):")
    for a, b in (("shx_packed", "shx_packed_s1"), ("shx_unpacked", "shx_unpacked_s1")):
        for s in ("test", "val"):
            diffs = " ".join(f"{k}={np.log(res[b][s][k] / res[a][s][k]):+.3f}" for k in KEYS[:5])
            print(f"{a} {s} {diffs}")


if __name__ == "__main__":
    main()
