"""Gradient release vs the plain step at 7B (issue 15's 2% bar), from call 3's harness runs.

    python benchmarks/flashoptim/h200-2026-12-02-s7/gr_ratio.py

Per seed: median step time of steps 3-12 (the harness's own median, summary.json) of flashoptim_gr
over flashoptim, both runs on the same machine one after the other; then the mean ratio over the
seeds with a two-sided 95% t-interval.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from scipy import stats

HERE = Path(__file__).parent


def main() -> None:
    by: dict[tuple[str, int], dict[str, float]] = {}
    for f in sorted(HERE.glob("call3_gr-*-summary.json")):
        s = json.loads(f.read_text())
        sweep = f.name.split("-")[1]  # r: reentrant (default), n: non-reentrant
        by.setdefault((sweep, s["seed"]), {})[s["optimizer"]] = s["median_step_time_s"]
    for sweep, label in (("r", "reentrant"), ("n", "non-reentrant")):
        ratios = []
        for (sw, seed), arms in sorted(by.items()):
            if sw == sweep:
                r = arms["flashoptim_gr"] / arms["flashoptim"]
                ratios.append(r)
                print(
                    f"{label} seed {seed}: plain {arms['flashoptim']:.4f} s, GR {arms['flashoptim_gr']:.4f} s, ratio {r:.4f}"
                )
        if len(ratios) > 1:
            m, sd = statistics.mean(ratios), statistics.stdev(ratios)
            half = stats.t.ppf(0.975, len(ratios) - 1) * sd / len(ratios) ** 0.5
            print(
                f"{label}: mean ratio {m:.4f}, 95% CI [{m - half:.4f}, {m + half:.4f}] over {len(ratios)} seeds"
            )


if __name__ == "__main__":
    main()
