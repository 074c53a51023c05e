"""The same-seed null of the accuracy endpoint: how far AdamW and its twin drift apart (issue 14).

    python -m scripts.probes.twin_spread <sweep_dir> [<sweep_dir> ...] [--twin adamw_foreach]

AdamW and ``adamw_foreach`` share the seed, the initial weights and the data order and apply the
same update, rounded differently (torch's fused kernel against its foreach one). Whatever separates
a pair is how far training amplifies rounding, which no treatment-free pairing can remove. Reads
the finished runs' ``summary.json`` of every sweep given (the pilot's and the ``twins`` probe's),
pairs the reference and the twin by seed and prints, per summary quantity, the log ratios, their
mean and SD, and the seed pairs that SD needs to show a 5% margin when nothing differs (one-sided
t bounds at the decision rule's two look levels, power 0.8: ``analysis.decide.pairs_needed``); then
the pairs each SD needs at the second look's level for wider margins (what a protocol that chose
another margin would cost).
By default no treatment arm is read (``--twin <arm>`` reads that one instead). Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from analysis.decide import pairs_needed

QUANTITIES = {
    "rel_l2_error": "test rel-L2, per-sample median (the primary)",
    "val_rel_l2_error": "val rel-L2, per-sample median",
    "rel_l2_floored_mean": "test rel-L2, floored mean",
    "rel_l2_group_scaled_mean": "test rel-L2, group-scaled mean",
    "rel_l2_pooled": "test rel-L2, pooled",
    "target_nll": "test target NLL (teacher-forced)",
    "val_target_nll": "val target NLL (teacher-forced)",
    "final_loss": "final training loss",
}
LEVELS = (0.995, 0.98)  # the two-stage rule's look 1 and look 2 (conf/analysis: criteria.sequential)
MARGIN = math.log(1.05)
MARGINS = (0.05, 0.10, 0.15, 0.20, 0.25)
CAP = 100_000


def load(sweeps: list[Path]) -> dict[tuple[str, int], dict]:
    runs: dict[tuple[str, int], dict] = {}
    for sweep in sweeps:
        for f in sorted(sweep.glob("runs/*/summary.json")):
            s = json.loads(f.read_text())
            if s.get("status") != "completed":
                continue
            key = (str(s["optimizer"]), int(s["seed"]))
            if key in runs:
                raise SystemExit(f"{f}: {key} is also in another sweep given; give each seed once")
            runs[key] = s
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m scripts.probes.twin_spread", description=__doc__.split("\n")[0]
    )
    p.add_argument("sweeps", type=Path, nargs="+")
    p.add_argument("--reference", default="adamw")
    p.add_argument("--twin", default="adamw_foreach")
    a = p.parse_args(argv)
    for d in a.sweeps:
        if not d.is_dir():
            raise SystemExit(f"{d}: not a directory; allowed: sweep directories holding runs/*/summary.json")
    runs = load(a.sweeps)
    seeds = sorted(s for (arm, s) in runs if arm == a.reference and (a.twin, s) in runs)
    if len(seeds) < 2:
        raise SystemExit(
            f"{len(seeds)} seed(s) with both {a.reference} and {a.twin} finished; allowed: at least 2"
        )
    ref = [runs[(a.reference, s)] for s in seeds]
    print(f"{len(seeds)} same-seed pairs ({a.twin} / {a.reference}), seeds {seeds}\n")
    levels = " | ".join(f"pairs for 5% at {c:g}" for c in LEVELS)
    print(f"| quantity | {a.reference} mean | log ratios | mean | SD | {levels} |")
    print("|---|---|---|---|---|" + "---|" * len(LEVELS))
    sds: dict[str, float] = {}
    for key, label in QUANTITIES.items():
        pairs = [(r.get(key), runs[(a.twin, s)].get(key)) for r, s in zip(ref, seeds, strict=True)]
        if any(x is None or y is None or x <= 0 or y <= 0 for x, y in pairs):
            print(f"| {label} | (missing or not positive in some run) |" + " |" * (3 + len(LEVELS)))
            continue
        logs = [math.log(y / x) for x, y in pairs]
        sd = sds[label] = statistics.stdev(logs)
        need = [pairs_needed(0.0, sd, MARGIN, c, 0.8, CAP) for c in LEVELS]
        print(
            f"| {label} | {statistics.mean(x for x, _ in pairs):.4g} | "
            f"{', '.join(f'{v:+.3f}' for v in logs)} | {statistics.mean(logs):+.3f} | {sd:.3f} | "
            + " | ".join(str(n) if n is not None else f"> {CAP}" for n in need)
            + " |"
        )
    print(f"\nSeed pairs for a margin at the look-2 level ({LEVELS[-1]:g}, power 0.8), from the SDs above:\n")
    print("| quantity | SD | " + " | ".join(f"{m:.0%}" for m in MARGINS) + " |")
    print("|---|---|" + "---|" * len(MARGINS))
    for label, sd in sds.items():
        cells = [pairs_needed(0.0, sd, math.log1p(m), LEVELS[-1], 0.8, CAP) for m in MARGINS]
        print(
            f"| {label} | {sd:.3f} | "
            + " | ".join(str(n) if n is not None else f"> {CAP}" for n in cells)
            + " |"
        )
    ratios = [
        r["rel_l2_error"] / r["best_baseline_rel_l2_error"]
        for r in ref
        if r.get("rel_l2_error") and r.get("best_baseline_rel_l2_error")
    ]
    if ratios:
        print(
            f"\n{a.reference}'s test error / best non-learned baseline, {len(ratios)} seeds: "
            f"min {min(ratios):.3f}, median {statistics.median(ratios):.3f}, max {max(ratios):.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
