"""How much of the paired accuracy spread comes from which 500 samples are scored (issue 14).

    python -m scripts.probes.eval_noise <sweep_dir> [--dataset results/datasets/<id>]

For every run of an accuracy sweep the generated texts (``predictions.npz``) are scored again
exactly as the run scored them (the dataset's ``baselines.json`` metric context: parse failures get
the stated penalty); the per-sample median is checked against the run's own ``rel_l2_error`` and
``val_rel_l2_error``. Then, for each arm and seed paired with the reference arm's run of that seed,
per split: the log ratio of the primary metric, and its bootstrap standard error over the samples
(the same resampled samples for both runs of a pair, ``--resamples`` times). The SD over seed pairs
holds both the training-seed and the sample part; the bootstrap SE is the sample part alone. The same
for the geometric mean of the per-sample relative errors (each floored at 1e-3), a definition that
reads every sample rather than the middle one. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from datagen.dataset import load_split
from experiments.eval import accuracy

SPLITS = ("test", "val")
SUMMARY_KEY = {"test": "rel_l2_error", "val": "val_rel_l2_error"}


def per_sample(run: Path, split: str, true: np.ndarray, ctx: Any, fmt: str) -> np.ndarray:
    texts = np.load(run / "predictions.npz")[f"{split}_texts"]
    pred, parsed = accuracy.parse_texts(list(texts), true.shape[1], true.shape, fmt)
    return accuracy.relative_errors(
        accuracy.sample_errors(pred, true, ctx, parsed), accuracy.sample_norms(true)
    )


def geo(r: np.ndarray) -> float:
    return float(np.exp(np.mean(np.log(np.maximum(r, 1e-3)))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m scripts.probes.eval_noise", description=__doc__.split("\n")[0]
    )
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--dataset", type=Path, default=None)
    p.add_argument("--reference", default="adamw")
    p.add_argument("--resamples", type=int, default=1000)
    a = p.parse_args(argv)
    runs = {}
    for s in sorted(a.sweep_dir.glob("runs/*/summary.json")):
        summary = json.loads(s.read_text())
        if summary.get("status") == "completed":
            runs[(summary["optimizer"], int(summary["seed"]))] = (s.parent, summary)
    first = next(iter(runs.values()))[1]
    dataset = a.dataset or Path("results/datasets") / first["dataset_id"]
    ctx = accuracy.MetricContext.from_json(
        json.loads((dataset / "baselines.json").read_text())["metric_context"]
    )
    run_cfg = OmegaConf.load(next(iter(runs.values()))[0] / "config.yaml")
    fmt = str(OmegaConf.select(run_cfg, "train.text.number_format", default="sci"))
    truth = {k: np.asarray(load_split(dataset, k)["stress"], dtype=np.float64) for k in SPLITS}
    rel: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    for key, (run, summary) in runs.items():
        rel[key] = {}
        for k in SPLITS:
            n = int(summary["eval_samples"] if k == "test" else summary["val_eval_samples"])
            r = per_sample(run, k, truth[k][:n], ctx, fmt)
            if abs(float(np.median(r)) - float(summary[SUMMARY_KEY[k]])) > 1e-9:
                raise SystemExit(f"{run}: {k} median {np.median(r)} != summary {summary[SUMMARY_KEY[k]]}")
            rel[key][k] = r
    rng = np.random.default_rng(0)
    print(
        "| arm | split | definition | log ratio per seed pair | mean | SD over pairs | bootstrap SE (samples), mean over pairs |"
    )
    print("|---|---|---|---|---|---|---|")
    arms = sorted({arm for arm, _ in rel if arm != a.reference})
    for arm in arms:
        seeds = sorted(s for (x, s) in rel if x == arm and (a.reference, s) in rel)
        for k in SPLITS:
            for name, f in (("per-sample median", np.median), ("geometric mean", geo)):
                logs, ses = [], []
                for s in seeds:
                    ra, rb = rel[(a.reference, s)][k], rel[(arm, s)][k]
                    logs.append(float(np.log(f(rb) / f(ra))))
                    n = len(ra)
                    boot = []
                    for _ in range(a.resamples):
                        i = rng.integers(0, n, n)
                        boot.append(np.log(f(rb[i]) / f(ra[i])))
                    ses.append(float(np.std(boot, ddof=1)))
                sd = statistics.stdev(logs) if len(logs) > 1 else float("nan")
                print(
                    f"| {arm} | {k} | {name} | {', '.join(f'{x:+.3f}' for x in logs)} (seeds {seeds}) | "
                    f"{statistics.mean(logs):+.3f} | {sd:.3f} | {statistics.mean(ses):.3f} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
