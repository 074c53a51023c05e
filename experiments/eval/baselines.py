"""Baselines of the accuracy endpoint, from a dataset directory alone (CPU, cached by dataset id).

``python -m experiments.eval.baselines <dataset_dir> [baselines.key=value ...]`` fits every baseline
on the ``train`` split, scores it on each of ``baselines.splits`` under every definition of
:mod:`experiments.eval.accuracy` (whole split and stratified by ``baselines.strata``), prints the
table and writes ``baselines.json`` (atomically) to ``<dataset_dir>/`` or
``<cache_dir>/<dataset_id>/``. A later call with the same dataset (id and shard hashes), the same
result-changing settings and the same :data:`BASELINES_VERSION` reads the file instead.

The baselines (all answer a (P, 6) stress field per sample, kPa):

Non-learned (:data:`NON_LEARNED`): a predictor that never reads a sample's numeric inputs
(material constants, load magnitudes, angles, times); its answer depends at most on the sample's
categorical labels (``group_fields``: tissue, behaviour, law, scenario) through one location
statistic of the training targets with the same labels. ``zeros``; ``train_median`` / ``train_mean``
(element-wise over all training samples); ``group_median`` / ``group_mean`` (element-wise over the
training samples of the same group; a group with no training sample falls back to the
whole-training statistic, counted in ``fallbacks``). The prompt names those labels, so a model
that beats none of them has not used the numbers it was given.

Learned reference points (:data:`LEARNED`): they map the numeric inputs to the outputs, which is
the task itself. ``knn``: mean stress of the ``knn.k`` training samples of the same group nearest in
the group's numeric inputs (the columns of ``params`` defined for the group, standardised by the
group's training mean and SD); ``regressor``: a standard scikit-learn model on all samples, inputs
= ``params`` (NaN where a parameter does not apply) + the group labels;
``hist_gradient_boosting``: one ``HistGradientBoostingRegressor`` per output value (native NaN and
categorical support); ``mlp``: ``MLPRegressor`` on standardised inputs (NaN -> 0 plus a
was-NaN indicator, one-hot labels) and standardised outputs.

"Trivial" (``trivial[split][metric]``) is the best non-learned baseline on that split under that
metric: the assay-sensitivity bar a reference arm must clear.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from common.atomic import read_json, write_json
from common.config import ConfigError, die, exit_on_config_error, load_validated, require
from common.ids import content_id
from common.logs import setup_logging
from common.provenance import now_iso
from datagen.dataset import DatasetError, load_manifest, load_split
from experiments.eval import accuracy as acc
from experiments.rundir import flock

log = logging.getLogger(__name__)

# Bump when a change here changes the numbers in baselines.json (it is part of the cache key).
BASELINES_VERSION = 1
SCHEMA = "baselines/1"
NON_LEARNED = ("zeros", "train_median", "train_mean", "group_mean", "group_median")
LEARNED = ("knn", "regressor")
REGRESSORS = ("hist_gradient_boosting", "mlp")
NON_RESULT_KEYS = ("cache_dir",)  # settings that do not change the numbers (not in config_id)


@dataclass
class KnnConfig:
    k: int = 5
    weights: str = "uniform"


@dataclass
class RegressorConfig:
    kind: str = "hist_gradient_boosting"
    max_iter: int = 200
    learning_rate: float = 0.1
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    seed: int = 0


@dataclass
class BootstrapConfig:
    n_resamples: int = 1000
    seed: int = 0


@dataclass
class MetricConfig:
    primary: str = "floored_mean"
    floor_quantile: float = 0.95
    floor_kpa: float | None = None
    scale_group: list[str] = field(default_factory=lambda: list(acc.GROUP_FIELDS))
    failure_penalty: list[str] = field(default_factory=lambda: ["zeros", "train_median"])


@dataclass
class BaselinesConfig:
    cache_dir: str | None = None
    learned: list[str] = field(default_factory=lambda: list(LEARNED))  # learned reference points to fit
    splits: list[str] = field(default_factory=lambda: ["val", "test"])
    # split -> score only its first N samples; None (the default for every held-out split): all. The
    # held-out splits are keys from the start, so `baselines.max_samples={test:100}` merges into them.
    max_samples: dict[str, int | None] = field(default_factory=lambda: {"val": None, "test": None})
    group_fields: list[str] = field(default_factory=lambda: list(acc.GROUP_FIELDS))
    strata: list[str] = field(default_factory=lambda: ["tissue", "behaviour", "scenario"])
    knn: KnnConfig = field(default_factory=KnnConfig)
    regressor: RegressorConfig = field(default_factory=RegressorConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    metric: MetricConfig = field(default_factory=MetricConfig)


ConfigStore.instance().store(group="baselines", name="baselines_schema", node=BaselinesConfig)


def validate(b: Any) -> None:
    """Semantic checks of the ``baselines`` node; a ConfigError names the key and what is allowed."""
    labels = set(acc.GROUP_FIELDS)
    require(
        len(b.splits) > 0 and "train" not in b.splits,
        "baselines.splits",
        list(b.splits),
        "a non-empty list of held-out splits (not train: the baselines are fitted on it)",
    )
    for s, n in b.max_samples.items():
        require(n is None or n >= 1, f"baselines.max_samples.{s}", n, "null (all samples) or >= 1")
    require(
        set(b.group_fields) <= labels and len(b.group_fields) > 0,
        "baselines.group_fields",
        list(b.group_fields),
        f"a non-empty subset of {sorted(labels)}",
    )
    require(set(b.strata) <= labels, "baselines.strata", list(b.strata), f"a subset of {sorted(labels)}")
    require(
        set(b.learned) <= set(LEARNED), "baselines.learned", list(b.learned), f"a subset of {list(LEARNED)}"
    )
    require(b.knn.k >= 1, "baselines.knn.k", b.knn.k, ">= 1")
    require(
        b.knn.weights in ("uniform", "distance"), "baselines.knn.weights", b.knn.weights, "uniform | distance"
    )
    require(
        b.regressor.kind in REGRESSORS, "baselines.regressor.kind", b.regressor.kind, " | ".join(REGRESSORS)
    )
    require(b.regressor.max_iter >= 1, "baselines.regressor.max_iter", b.regressor.max_iter, ">= 1")
    require(
        b.regressor.learning_rate > 0, "baselines.regressor.learning_rate", b.regressor.learning_rate, "> 0"
    )
    require(
        all(h >= 1 for h in b.regressor.hidden) and len(b.regressor.hidden) > 0,
        "baselines.regressor.hidden",
        list(b.regressor.hidden),
        "a non-empty list of widths >= 1",
    )
    require(b.bootstrap.n_resamples >= 2, "baselines.bootstrap.n_resamples", b.bootstrap.n_resamples, ">= 2")
    m = b.metric
    require(m.primary in acc.METRICS, "baselines.metric.primary", m.primary, " | ".join(acc.METRICS))
    require(0.0 <= m.floor_quantile <= 1.0, "baselines.metric.floor_quantile", m.floor_quantile, "in [0, 1]")
    require(
        m.floor_kpa is None or m.floor_kpa > 0, "baselines.metric.floor_kpa", m.floor_kpa, "null or > 0 (kPa)"
    )
    require(
        set(m.scale_group) <= labels,
        "baselines.metric.scale_group",
        list(m.scale_group),
        f"a subset of {sorted(labels)}",
    )
    require(
        len(m.failure_penalty) > 0 and set(m.failure_penalty) <= set(acc.FALLBACKS),
        "baselines.metric.failure_penalty",
        list(m.failure_penalty),
        f"a non-empty subset of {list(acc.FALLBACKS)}",
    )


def plain(b: Any) -> dict[str, Any]:
    return b if isinstance(b, dict) else OmegaConf.to_container(b, resolve=True)  # type: ignore[return-value]


def config_id(b: Any) -> str:
    settings = {k: v for k, v in plain(b).items() if k not in NON_RESULT_KEYS}
    # A split without a cap (None) scores all its samples, exactly as an absent key does: one id for both.
    settings["max_samples"] = {s: n for s, n in (settings.get("max_samples") or {}).items() if n is not None}
    return content_id({"baselines": settings, "version": BASELINES_VERSION})


def baselines_path(dataset_dir: str | Path, b: Any) -> Path:
    """Where the cached ``baselines.json`` of this dataset lives."""
    dataset_dir = Path(dataset_dir)
    if b.cache_dir is None:
        return dataset_dir / "baselines.json"
    return Path(b.cache_dir) / load_manifest(dataset_dir)["dataset_id"] / "baselines.json"


# ---------------------------------------------------------------------------------------- predictors


def _head(split: dict[str, Any], n: int | None) -> dict[str, Any]:
    if n is None:
        return split
    return {
        k: (v[:n] if isinstance(v, np.ndarray) and v.ndim >= 1 and k != "probe_points" else v)
        for k, v in split.items()
    }


def group_predictor(
    train: Mapping[str, Any], target: Mapping[str, Any], fields: Sequence[str], stat: str
) -> tuple[np.ndarray, int]:
    """Element-wise ``stat`` (mean | median) of the training stress of each target sample's group;
    returns the predictions and how many target samples fell back to the whole training split."""
    f = np.mean if stat == "mean" else np.median
    tl, gl = acc.group_labels(train, fields), acc.group_labels(target, fields)
    whole = f(train["stress"], axis=0)
    pred = np.empty(target["stress"].shape)
    fallbacks = 0
    for g in np.unique(gl):
        rows = gl == g
        members = tl == g
        if members.any():
            pred[rows] = f(train["stress"][members], axis=0)
        else:
            pred[rows] = whole
            fallbacks += int(rows.sum())
    return pred, fallbacks


def knn_predictor(
    train: Mapping[str, Any], target: Mapping[str, Any], fields: Sequence[str], k: int, weights: str
) -> tuple[np.ndarray, int]:
    """Mean stress of the k nearest training samples of the same group in the group's numeric inputs
    (columns of ``params`` finite for every training member, z-scored by the members' mean/SD)."""
    tl, gl = acc.group_labels(train, fields), acc.group_labels(target, fields)
    whole = np.mean(train["stress"], axis=0)
    pred = np.empty(target["stress"].shape)
    fallbacks = 0
    for g in np.unique(gl):
        rows = np.flatnonzero(gl == g)
        members = np.flatnonzero(tl == g)
        if len(members) == 0:
            pred[rows] = whole
            fallbacks += len(rows)
            continue
        xt = train["params"][members]
        cols = np.all(np.isfinite(xt), axis=0) & np.all(np.isfinite(target["params"][rows]), axis=0)
        mu, sd = xt[:, cols].mean(axis=0), xt[:, cols].std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        a = (xt[:, cols] - mu) / sd
        q = (target["params"][rows][:, cols] - mu) / sd
        dist = np.sqrt(((q[:, None, :] - a[None, :, :]) ** 2).sum(axis=2))  # (rows, members)
        kk = min(k, len(members))
        nearest = np.argsort(dist, axis=1, kind="stable")[:, :kk]
        ys = train["stress"][members][nearest]  # (rows, kk, P, 6)
        if weights == "distance":
            d = np.take_along_axis(dist, nearest, axis=1)
            w = 1.0 / np.maximum(d, 1e-12)
            pred[rows] = (ys * w[:, :, None, None]).sum(axis=1) / w.sum(axis=1)[:, None, None]
        else:
            pred[rows] = ys.mean(axis=1)
    return pred, fallbacks


def _label_codes(train: Mapping[str, Any], splits: Sequence[Mapping[str, Any]]) -> list[np.ndarray]:
    """Integer code of each group field per sample (codes from the sorted training values; unseen -> -1)."""
    out = [np.zeros((len(s["sample_id"]), len(acc.GROUP_FIELDS))) for s in splits]
    for j, f in enumerate(acc.GROUP_FIELDS):
        values = sorted(set(np.asarray(train[f]).astype(str)))
        index = {v: i for i, v in enumerate(values)}
        for o, s in zip(out, splits):
            o[:, j] = [index.get(v, -1) for v in np.asarray(s[f]).astype(str)]
    return out


def regressor_predictor(
    train: Mapping[str, Any], targets: Sequence[Mapping[str, Any]], r: Any
) -> list[np.ndarray]:
    """Fit one standard regressor on train (params + labels -> P*6 stresses); predict each target."""
    # scikit-learn is imported here: it is heavy and only this baseline needs it.
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.neural_network import MLPRegressor  # (heavy, as above)

    y = train["stress"].reshape(len(train["stress"]), -1)
    codes = _label_codes(train, [train, *targets])
    # Parameters no training sample has (laws absent from this dataset) carry no information.
    used = np.isfinite(train["params"]).any(axis=0)
    xs = [np.hstack([s["params"][:, used], c]) for s, c in zip([train, *targets], codes)]
    n_params = int(used.sum())
    if r.kind == "hist_gradient_boosting":
        cat = np.zeros(xs[0].shape[1], bool)
        cat[n_params:] = True
        preds = [np.empty((len(x), y.shape[1])) for x in xs[1:]]
        for j in range(y.shape[1]):
            model = HistGradientBoostingRegressor(
                max_iter=r.max_iter,
                learning_rate=r.learning_rate,
                categorical_features=cat,
                random_state=r.seed,
                early_stopping=False,
            ).fit(xs[0], y[:, j])
            for p, x in zip(preds, xs[1:]):
                p[:, j] = model.predict(x)
    else:

        def encode(x: np.ndarray, c: np.ndarray) -> np.ndarray:
            params = x[:, :n_params]
            nan = ~np.isfinite(params)
            onehot = [
                np.asarray(c[:, j : j + 1] == np.arange(int(codes[0][:, j].max()) + 1), float)
                for j in range(c.shape[1])
            ]
            return np.hstack([np.where(nan, 0.0, params), nan.astype(float), *onehot])

        enc = [encode(x, c) for x, c in zip(xs, codes)]
        mu, sd = enc[0].mean(axis=0), enc[0].std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        ymu, ysd = y.mean(axis=0), y.std(axis=0)
        ysd = np.where(ysd > 0, ysd, 1.0)
        model = MLPRegressor(
            hidden_layer_sizes=tuple(r.hidden),
            max_iter=r.max_iter,
            learning_rate_init=r.learning_rate * 0.01,
            random_state=r.seed,
        ).fit((enc[0] - mu) / sd, (y - ymu) / ysd)
        preds = [model.predict((e - mu) / sd) * ysd + ymu for e in enc[1:]]
    return [p.reshape(t["stress"].shape) for p, t in zip(preds, targets)]


def predict_all(
    train: Mapping[str, Any], targets: Mapping[str, Mapping[str, Any]], b: Any
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, int]], dict[str, float]]:
    """Predictions ``[split][baseline]`` (N, P, 6), group fallbacks ``[split][baseline]``, fit wall s."""
    preds: dict[str, dict[str, np.ndarray]] = {s: {} for s in targets}
    fallbacks: dict[str, dict[str, int]] = {s: {} for s in targets}
    wall: dict[str, float] = {}
    median, mean = np.median(train["stress"], axis=0), np.mean(train["stress"], axis=0)
    for s, t in targets.items():
        shape = t["stress"].shape
        preds[s]["zeros"] = np.zeros(shape)
        preds[s]["train_median"] = np.broadcast_to(median, shape)
        preds[s]["train_mean"] = np.broadcast_to(mean, shape)
        t0 = time.perf_counter()
        for stat in ("mean", "median"):
            preds[s][f"group_{stat}"], fallbacks[s][f"group_{stat}"] = group_predictor(
                train, t, b.group_fields, stat
            )
        if "knn" in b.learned:
            preds[s]["knn"], fallbacks[s]["knn"] = knn_predictor(
                train, t, b.group_fields, b.knn.k, b.knn.weights
            )
        wall[f"group_knn_{s}"] = time.perf_counter() - t0
    if "regressor" in b.learned:
        t0 = time.perf_counter()
        fitted = regressor_predictor(train, list(targets.values()), b.regressor)
        wall["regressor"] = time.perf_counter() - t0
        for s, p in zip(targets, fitted):
            preds[s]["regressor"] = p
    return preds, fallbacks, wall


# ---------------------------------------------------------------------------------------- scoring


def score_split(
    target: Mapping[str, Any], preds: Mapping[str, np.ndarray], ctx: acc.MetricContext, b: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per baseline: metrics, bootstrap SDs, contribution shares, strata; and the weight shares."""
    true = np.asarray(target["stress"], dtype=np.float64)
    labels = acc.group_labels(target, ctx.scale_group)
    norms = acc.sample_norms(true)
    scales = ctx.scales_for(labels)
    weight = {m: acc.weight_shares(m, norms, scales, ctx) for m in acc.METRICS}
    out: dict[str, Any] = {}
    for name, pred in preds.items():
        e = acc.sample_errors(pred, true, ctx)
        strata: dict[str, Any] = {}
        for f in b.strata:
            values = np.asarray(target[f]).astype(str)
            strata[f] = {
                v: {
                    "n": int((values == v).sum()),
                    "metrics": {
                        m: acc.aggregate(m, e[values == v], norms[values == v], scales[values == v], ctx)
                        for m in acc.METRICS
                    },
                }
                for v in sorted(set(values))
            }
        out[name] = {
            "metrics": {m: acc.aggregate(m, e, norms, scales, ctx) for m in acc.METRICS},
            "bootstrap_sd": {
                m: acc.bootstrap_sd(m, e, norms, scales, ctx, b.bootstrap.n_resamples, b.bootstrap.seed)
                for m in acc.METRICS
            },
            "contribution_shares": {
                m: acc.contribution_shares(m, e, norms, scales, ctx) for m in acc.METRICS
            },
            "strata": strata,
        }
    return out, weight


def trivial(scores: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per metric: the best (lowest) non-learned baseline and its value."""
    out = {}
    for m in acc.METRICS:
        best = min(NON_LEARNED, key=lambda n: scores[n]["metrics"][m])
        out[m] = {"baseline": best, "value": scores[best]["metrics"][m]}
    return out


def compute(dataset_dir: str | Path, b: Any) -> dict[str, Any]:
    """Fit and score every baseline on ``dataset_dir``; the content of ``baselines.json``."""
    t0 = time.perf_counter()
    man = load_manifest(dataset_dir)
    for s in b.splits:
        if s not in man["counts"]:
            raise ConfigError("baselines.splits", s, f"a split of the dataset: {sorted(man['counts'])}")
    train = load_split(dataset_dir, "train")
    if len(train["sample_id"]) == 0:
        raise DatasetError(f"{dataset_dir}: the train split is empty; the baselines are fitted on it")
    targets = {s: _head(load_split(dataset_dir, s), b.max_samples.get(s)) for s in b.splits}
    ctx = acc.MetricContext.from_train(train, b.metric)
    preds, fallbacks, wall = predict_all(train, targets, b)
    scores, weights = {}, {}
    for s, t in targets.items():
        scores[s], weights[s] = score_split(t, preds[s], ctx, b)
    wall["total"] = time.perf_counter() - t0
    return {
        "schema": SCHEMA,
        "version": BASELINES_VERSION,
        "dataset_id": man["dataset_id"],
        "shards_id": content_id(man["shard_hashes"]),
        "config_id": config_id(b),
        "config": plain(b),
        "created": now_iso(),
        "non_learned": list(NON_LEARNED),
        "learned": [n for n in LEARNED if n in b.learned],
        "metrics": list(acc.METRICS),
        "primary": ctx.primary,
        "metric_context": ctx.to_json(),
        "n_train": len(train["sample_id"]),
        "n_samples": {s: len(t["sample_id"]) for s, t in targets.items()},
        "fallbacks": fallbacks,
        "scores": scores,
        "weight_shares": weights,
        "trivial": {s: trivial(scores[s]) for s in targets},
        "wall_s": wall,
    }


def load_or_compute(dataset_dir: str | Path, b: Any) -> tuple[dict[str, Any], bool]:
    """The dataset's baselines: read from the cache when it matches (dataset id, shard hashes,
    config id, version), else computed and written atomically. Returns (result, from_cache).
    Runs that start together (several on one GPU) compute it once: the first holds
    ``baselines.json.lock`` while it computes, the others wait and read its file."""
    path = baselines_path(dataset_dir, b)
    with flock(path.with_name(path.name + ".lock")):
        return _load_or_compute(dataset_dir, b, path)


def _load_or_compute(dataset_dir: str | Path, b: Any, path: Path) -> tuple[dict[str, Any], bool]:
    man = load_manifest(dataset_dir)
    key = (man["dataset_id"], content_id(man["shard_hashes"]), config_id(b), BASELINES_VERSION)
    if path.exists():
        cached = read_json(path)
        if (
            cached.get("dataset_id"),
            cached.get("shards_id"),
            cached.get("config_id"),
            cached.get("version"),
        ) == key:
            return cached, True
        log.info("%s: settings or dataset changed; recomputing", path)
    result = compute(dataset_dir, b)
    write_json(path, result)
    return read_json(path), False  # as a reader sees it (NaN -> null), same as a cache hit


def for_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``baselines.json`` a run's summary carries (the analysis has no dataset): per
    split the best non-learned baseline under the primary definition, and every baseline's value
    under each definition and, under the primary, per stratum."""
    p = result["primary"]
    splits = {}
    for s, by_name in result["scores"].items():
        splits[s] = {
            "best_non_learned": dict(result["trivial"][s][p]),
            "scores": {
                name: {
                    "learned": name not in result["non_learned"],
                    "metrics": dict(sc["metrics"]),
                    "strata": {
                        f: {v: {"n": x["n"], "value": x["metrics"][p]} for v, x in by_value.items()}
                        for f, by_value in sc["strata"].items()
                    },
                }
                for name, sc in by_name.items()
            },
        }
    return {
        "schema": result["schema"],
        "dataset_id": result["dataset_id"],
        "config_id": result["config_id"],
        "primary": p,
        "floor_kpa": result["metric_context"]["floor_kpa"],
        "n_samples": dict(result["n_samples"]),
        "splits": splits,
    }


def format_table(result: Mapping[str, Any]) -> str:
    """One row per (split, baseline): every metric with its bootstrap SD."""
    metrics = result["metrics"]
    head = f"{'split':<6} {'baseline':<14} " + " ".join(f"{m:>22}" for m in metrics)
    lines = [
        f"dataset {result['dataset_id']}  primary: {result['primary']}  "
        f"floor {result['metric_context']['floor_kpa']:.4g} kPa",
        head,
    ]
    for s, by_name in result["scores"].items():
        for name in [*result["non_learned"], *result["learned"]]:
            sc = by_name[name]
            cells = []
            for m in metrics:
                v, sd = sc["metrics"][m], sc["bootstrap_sd"][m]
                cells.append(f"{_fmt(v)} +- {_fmt(sd)}".rjust(22))
            tag = "*" if name in result["non_learned"] else " "
            lines.append(f"{s:<6} {name + tag:<14} " + " ".join(cells))
        t = result["trivial"][s][result["primary"]]
        lines.append(
            f"{s:<6} trivial = {t['baseline']} ({_fmt(t['value'])}, {result['primary']}); "
            f"n = {result['n_samples'][s]}"
        )
    lines.append("* non-learned (reads no numeric input); +- bootstrap SD over resampled samples")
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "nan" if v is None or v != v else f"{v:.4g}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        die("usage: python -m experiments.eval.baselines <dataset_dir> [baselines.key=value ...]")
    dataset_dir, overrides = Path(argv[0]), argv[1:]
    if not (dataset_dir / "manifest.json").is_file():
        die(
            f"dataset_dir={str(dataset_dir)!r} is not allowed; allowed: a complete dataset directory "
            "(holding manifest.json, written by `python -m datagen`)"
        )
    cfg = load_validated("baselines/default", overrides, lambda c: validate(c.baselines))
    counts = load_manifest(dataset_dir)["counts"]
    with exit_on_config_error():
        for s in cfg.baselines.splits:
            require(s in counts, "baselines.splits", s, f"a split of the dataset: {sorted(counts)}")
        require(
            counts.get("train", 0) > 0,
            "dataset_dir",
            str(dataset_dir),
            "a dataset with a non-empty train split (the baselines are fitted on it)",
        )
    setup_logging()
    result, cached = load_or_compute(dataset_dir, cfg.baselines)
    print(format_table(result))
    print(f"{'read' if cached else 'wrote'} {baselines_path(dataset_dir, cfg.baselines)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
