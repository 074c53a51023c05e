"""The dataset-only baselines on a small real FEniCSx dataset (smoke physics, generated once here).

Known answers come from properties of the estimators, not from the code's output: residuals of a
group mean sum to zero within each group, a 1-nearest-neighbour predictor reproduces its own
training samples, "predict zero" has relative error exactly 1, and so on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.config import ConfigError, compose
from datagen.dataset import load_split
from datagen.generate import generate
from datagen.spec import validate_datagen
from experiments.eval import accuracy as acc
from experiments.eval import baselines as bl

REPO = Path(__file__).resolve().parents[2]
# Smoke physics (all tissues, behaviours, scenarios; 1 cell per axis), 100 samples.
SMALL = [
    "data=smoke",
    "data.splits.train=60",
    "data.splits.val=20",
    "data.splits.test=20",
    "data.shard_size=20",
]
FAST = ["baselines.bootstrap.n_resamples=50", "baselines.regressor.max_iter=50"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = compose("datagen", [*SMALL, f"results_root={tmp_path_factory.mktemp('data')}", "workers=1"])
    validate_datagen(cfg)
    return generate(cfg)


def bcfg(*overrides: str) -> Any:
    cfg = compose("baselines/default", [*FAST, *overrides]).baselines
    bl.validate(cfg)
    return cfg


def test_each_baseline_on_real_data(dataset: Path) -> None:
    b = bcfg()
    train, test = load_split(dataset, "train"), load_split(dataset, "test")
    preds, fallbacks, _ = bl.predict_all(train, {"train": train, "test": test}, b)
    assert set(preds["test"]) == set(bl.NON_LEARNED) | set(bl.LEARNED)
    labels = acc.group_labels(train, b.group_fields)
    y = train["stress"]

    # Zeros: relative error exactly 1 per sample.
    ctx = acc.MetricContext.from_train(train, b.metric)
    s = acc.score(preds["test"]["zeros"], test["stress"], acc.group_labels(test, ctx.scale_group), ctx)
    assert s["pooled"] == s["per_sample_mean"] == s["per_sample_median"] == pytest.approx(1.0)

    # Whole-training mean / median: residuals sum to zero / are split in half, per value.
    assert (y - preds["train"]["train_mean"]).sum(axis=0) == pytest.approx(np.zeros(y.shape[1:]), abs=1e-9)
    res = y - preds["train"]["train_median"]
    assert ((res > 0).sum(axis=0) <= len(y) / 2).all() and ((res < 0).sum(axis=0) <= len(y) / 2).all()

    # Group mean / median, within each group of (tissue, behaviour, law, scenario).
    for g in np.unique(labels):
        rows = labels == g
        r_mean = y[rows] - preds["train"]["group_mean"][rows]
        assert r_mean.sum(axis=0) == pytest.approx(np.zeros(y.shape[1:]), abs=1e-9)
        r_med = y[rows] - preds["train"]["group_median"][rows]
        assert ((r_med > 0).sum(axis=0) <= rows.sum() / 2).all()
    assert fallbacks["train"]["group_mean"] == 0
    # A test group that has no training sample falls back to the whole-training mean (counted).
    unseen = ~np.isin(acc.group_labels(test, b.group_fields), labels)
    assert fallbacks["test"]["group_mean"] == fallbacks["test"]["knn"] == int(unseen.sum())
    assert np.allclose(preds["test"]["group_mean"][unseen], y.mean(axis=0))

    # kNN: k=1 reproduces the training samples; k >= group size is the group mean.
    one, _ = bl.knn_predictor(train, train, b.group_fields, 1, "uniform")
    assert np.allclose(one, y)
    everyone, _ = bl.knn_predictor(train, train, b.group_fields, len(y), "uniform")
    assert np.allclose(everyone, preds["train"]["group_mean"])

    # The regressor (least-squares gradient boosting starts from the training mean and each step
    # lowers the training squared error): in-sample squared error below the training mean's.
    sq = {n: float(((preds["train"][n] - y) ** 2).sum()) for n in ("regressor", "train_mean")}
    assert sq["regressor"] < sq["train_mean"]


def test_mlp_regressor_fits(dataset: Path) -> None:
    b = bcfg("baselines.regressor.kind=mlp", "baselines.regressor.max_iter=300")
    train = load_split(dataset, "train")
    [pred] = bl.regressor_predictor(train, [train], b.regressor)
    assert pred.shape == train["stress"].shape
    err = acc.sample_norms(pred - train["stress"]).sum() / acc.sample_norms(train["stress"]).sum()
    assert err < 0.5  # in-sample, standardised inputs and outputs: well below "predict zero"


def test_baselines_json_cache_and_trivial(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = bcfg(f"baselines.cache_dir={tmp_path}")
    result, cached = bl.load_or_compute(dataset, b)
    assert not cached
    path = tmp_path / dataset.name / "baselines.json"
    assert bl.baselines_path(dataset, b) == path and path.exists()
    # no temp file left; the lock runs started together share stays (empty, flock only)
    assert sorted(p.name for p in path.parent.iterdir()) == ["baselines.json", "baselines.json.lock"]
    assert result["dataset_id"] == dataset.name and result["schema"] == bl.SCHEMA
    for split in ("val", "test"):
        sc = result["scores"][split]
        for m in acc.METRICS:
            best = result["trivial"][split][m]
            assert best["baseline"] in bl.NON_LEARNED
            assert best["value"] == min(sc[n]["metrics"][m] for n in bl.NON_LEARNED)
        # The strata partition the split.
        for f in ("tissue", "behaviour", "scenario"):
            assert sum(v["n"] for v in sc["zeros"]["strata"][f].values()) == result["n_samples"][split]
        assert sc["zeros"]["metrics"]["pooled"] == pytest.approx(1.0)
    assert result["weight_shares"]["test"]["per_sample_mean"]["top1"] == pytest.approx(1 / 20)

    # Second call: read from the cache, never recomputed.
    def boom(*a: Any, **k: Any) -> None:
        raise AssertionError("recomputed despite a valid cache")

    monkeypatch.setattr(bl, "compute", boom)
    again, cached = bl.load_or_compute(dataset, b)
    assert cached and again == result
    # A result-changing setting misses the cache; the cache location does not count.
    with pytest.raises(AssertionError, match="recomputed"):
        bl.load_or_compute(dataset, bcfg(f"baselines.cache_dir={tmp_path}", "baselines.knn.k=3"))
    assert bl.config_id(b) == bl.config_id(bcfg("baselines.cache_dir=/elsewhere"))


def test_learned_baselines_are_a_setting(dataset: Path) -> None:
    b = bcfg("baselines.learned=[knn]")
    train, test = load_split(dataset, "train"), load_split(dataset, "test")
    preds, _, wall = bl.predict_all(train, {"test": test}, b)
    assert set(preds["test"]) == set(bl.NON_LEARNED) | {"knn"} and "regressor" not in wall
    with pytest.raises(ConfigError, match=r"baselines\.learned"):
        bcfg("baselines.learned=[knn,forest]")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "experiments.eval.baselines", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_cli_table_and_bad_input(dataset: Path, tmp_path: Path) -> None:
    ok = run_cli(str(dataset), f"baselines.cache_dir={tmp_path}", *FAST)
    assert ok.returncode == 0, ok.stderr
    assert "trivial = " in ok.stdout and "regressor" in ok.stdout
    assert (tmp_path / dataset.name / "baselines.json").exists()
    for args, needle in [
        ([str(tmp_path / "nowhere")], "manifest.json"),
        ([str(dataset), "baselines.knn.k=0"], "baselines.knn.k"),
        ([str(dataset), "baselines.splits=[holdout]"], "baselines.splits"),
        ([str(dataset), "baselines.metric.primary=rmse"], "baselines.metric.primary"),
        ([str(dataset), "baselines.nope=1"], "baselines.nope"),
        ([str(dataset), "baselines.max_samples={test:0}"], "baselines.max_samples.test"),
        ([str(dataset), "baselines.max_samples={train:5}"], "baselines.max_samples.train"),
    ]:
        bad = run_cli(*args, f"baselines.cache_dir={tmp_path / 'bad'}")
        assert bad.returncode == 2, (args, bad.stderr)
        assert needle in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert not (tmp_path / "bad").exists()


def test_cli_max_samples_caps_the_scored_samples(dataset: Path, tmp_path: Path) -> None:
    """The documented form `baselines.max_samples={test:N}` (scripts/gpu_pilot.py uses it) composes
    and scores only the first N test samples (it was refused as an unknown key before)."""
    capped = run_cli(str(dataset), f"baselines.cache_dir={tmp_path}", "baselines.max_samples={test:3}", *FAST)
    assert capped.returncode == 0, capped.stderr
    written = json.loads((tmp_path / dataset.name / "baselines.json").read_text())
    assert written["n_samples"]["test"] == 3, written["n_samples"]
