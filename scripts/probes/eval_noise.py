"""How much of the paired accuracy spread comes from which samples are scored (issue 14).

    python -m scripts.probes.eval_noise <sweep_dir> [--dataset results/datasets/<id>] [--format-check] [--worst]

For every run of an accuracy sweep the generated texts (``predictions.npz``) are scored again
exactly as the run scored them (the dataset's ``baselines.json`` metric context: parse failures get
the stated penalty); the per-sample median is checked against the run's own ``rel_l2_error`` and
``val_rel_l2_error``. Then, for each arm and seed paired with the reference arm's run of that seed,
per split: the log ratio of the primary metric, and its bootstrap standard error over the samples
(the same resampled samples for both runs of a pair, ``--resamples`` times). The SD over seed pairs
holds both the training-seed and the sample part; the bootstrap SE is the sample part alone. The same
for the geometric mean of the per-sample relative errors (each floored at 1e-3), a definition that
reads every sample rather than the middle one, and for ``floored_mean`` (``e_i / max(n_i, floor)``,
the mean-type definition most robust to small norms). ``--format-check`` rescores with the parser's
format check at the run's ``train.text.significant_digits`` (a value the format cannot write is a
parse failure: ``textdata.fields_writable``), as runs since 2026-12-02 score; without it, as the
committed v4 runs were scored.
``--worst`` lists, per run and split, the largest per-sample relative error, its sample and the
longest whitespace-separated field of its output. Prints Markdown.
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


def errors(texts: list[str], true: np.ndarray, ctx: Any, fmt: str, sig: int | None = None) -> np.ndarray:
    """Per-sample errors e_i (kPa) of generated texts, scored as a run scores them (``sig``: with
    the format check at that many digits)."""
    pred, parsed = accuracy.parse_texts(texts, true.shape[1], true.shape, fmt, sig)
    return accuracy.sample_errors(pred, true, ctx, parsed)


def median(e: np.ndarray, n: np.ndarray, floor: float) -> float:
    return float(np.median(accuracy.relative_errors(e, n)))


def geometric(e: np.ndarray, n: np.ndarray, floor: float) -> float:
    r = accuracy.relative_errors(e, n)
    return float(np.exp(np.mean(np.log(np.maximum(r, 1e-3)))))


def floored(e: np.ndarray, n: np.ndarray, floor: float) -> float:
    return float(np.mean(e / np.maximum(n, floor)))


DEFINITIONS = (("per-sample median", median), ("geometric mean", geometric), ("floored mean", floored))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m scripts.probes.eval_noise", description=__doc__.split("\n")[0]
    )
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--dataset", type=Path, default=None)
    p.add_argument("--reference", default="adamw")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--format-check", action="store_true")
    p.add_argument("--worst", action="store_true")
    a = p.parse_args(argv)
    runs = {}
    for s in sorted(a.sweep_dir.glob("runs/*/summary.json")):
        summary = json.loads(s.read_text())
        if summary.get("status") == "completed":
            runs[(summary["optimizer"], int(summary["seed"]))] = (s.parent, summary)
    if not runs:
        raise SystemExit(f"{a.sweep_dir}: no completed run (runs/*/summary.json); allowed: an accuracy sweep")
    first = next(iter(runs.values()))[1]
    dataset = a.dataset or Path("results/datasets") / first["dataset_id"]
    ctx = accuracy.MetricContext.from_json(
        json.loads((dataset / "baselines.json").read_text())["metric_context"]
    )
    run_cfg = OmegaConf.load(next(iter(runs.values()))[0] / "config.yaml")
    fmt = str(OmegaConf.select(run_cfg, "train.text.number_format", default="sci"))
    sig = int(OmegaConf.select(run_cfg, "train.text.significant_digits")) if a.format_check else None
    truth = {k: np.asarray(load_split(dataset, k)["stress"], dtype=np.float64) for k in SPLITS}
    scored: dict[tuple[str, int], dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    worst = []
    rescored = moved = 0
    for key, (run, summary) in runs.items():
        scored[key] = {}
        for k in SPLITS:
            n = int(summary["eval_samples"] if k == "test" else summary["val_eval_samples"])
            texts = [str(x) for x in np.load(run / "predictions.npz")[f"{k}_texts"]]
            true = truth[k][:n]
            e, norms = errors(texts, true, ctx, fmt, sig), accuracy.sample_norms(true)
            r = accuracy.relative_errors(e, norms)
            # rescored as the run scored them: its own median
            if sig is None and abs(float(np.median(r)) - float(summary[SUMMARY_KEY[k]])) > 1e-9:
                raise SystemExit(f"{run}: {k} median {np.median(r)} != summary {summary[SUMMARY_KEY[k]]}")
            scored[key][k] = (e, norms)
            if sig is not None:  # what the check changed against the run's own (unchecked) scoring
                rescored += int(np.sum(e != errors(texts, true, ctx, fmt)))
                moved += abs(float(np.median(r)) - float(summary[SUMMARY_KEY[k]])) > 1e-12
            if a.worst:
                i = int(np.argmax(r))
                longest = max(texts[i].split(), key=len, default="")
                worst.append(
                    f"| {key[0]} | {key[1]} | {k} | {i} | {r[i]:.3g} | `{longest[:40]}` ({len(longest)}) |"
                )
    rng = np.random.default_rng(0)
    print(f"Scored {'with' if sig else 'without'} the format check{f' ({sig} digits)' if sig else ''}.")
    if sig is not None:
        print(
            f"The check made {rescored} samples parse failures over {len(runs) * len(SPLITS)} run-splits "
            f"and moved {moved} of their medians (against each run's summary)."
        )
    print()
    print(
        "| arm | split | definition | log ratio per seed pair | mean | SD over pairs | bootstrap SE (samples), mean over pairs |"
    )
    print("|---|---|---|---|---|---|---|")
    arms = sorted({arm for arm, _ in scored if arm != a.reference})
    for arm in arms:
        seeds = sorted(s for (x, s) in scored if x == arm and (a.reference, s) in scored)
        for k in SPLITS:
            for name, f in DEFINITIONS:
                logs, ses = [], []
                for s in seeds:
                    (ea, na), (eb, nb) = scored[(a.reference, s)][k], scored[(arm, s)][k]
                    logs.append(float(np.log(f(eb, nb, ctx.floor_kpa) / f(ea, na, ctx.floor_kpa))))
                    m = len(ea)
                    boot = []
                    for _ in range(a.resamples):
                        i = rng.integers(0, m, m)
                        boot.append(np.log(f(eb[i], nb[i], ctx.floor_kpa) / f(ea[i], na[i], ctx.floor_kpa)))
                    ses.append(float(np.std(boot, ddof=1)))
                sd = statistics.stdev(logs) if len(logs) > 1 else float("nan")
                print(
                    f"| {arm} | {k} | {name} | {', '.join(f'{x:+.3f}' for x in logs)} (seeds {seeds}) | "
                    f"{statistics.mean(logs):+.3f} | {sd:.3f} | {statistics.mean(ses):.3f} |"
                )
    if worst:
        print("\n| arm | seed | split | sample | largest relative error | longest field (characters) |")
        print("|---|---|---|---|---|---|")
        print("\n".join(worst))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
