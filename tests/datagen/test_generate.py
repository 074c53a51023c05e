"""Generation end to end on a tiny config: determinism (same bytes), resumability, manifest contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.config import compose
from datagen.dataset import DatasetError, dataset_dir, dataset_id, load_split
from datagen.generate import generate
from datagen.spec import validate_datagen

TINY = ["data=smoke", "data.splits.train=6", "data.splits.val=3", "data.splits.test=3", "data.shard_size=3"]


def tiny_cfg(root: Path, *extra: str) -> Any:
    cfg = compose("datagen", [*TINY, f"results_root={root}", *extra])
    validate_datagen(cfg)
    return cfg


def shard_hashes(d: Path) -> dict[str, str]:
    return json.loads((d / "manifest.json").read_text())["shard_hashes"]


def test_same_config_same_bytes_resume_and_contract(tmp_path: Path) -> None:
    a = generate(tiny_cfg(tmp_path / "a", "workers=1"))
    b = generate(tiny_cfg(tmp_path / "b", "workers=2"))  # other process layout, same bytes
    assert shard_hashes(a) == shard_hashes(b)
    assert a.name == b.name == dataset_id(tiny_cfg(tmp_path).data)
    assert dataset_dir(tiny_cfg(tmp_path).data, tmp_path / "a") == a

    man = json.loads((a / "manifest.json").read_text())
    for split in ("train", "val", "test"):
        arr = load_split(a, split)
        n = man["counts"][split]
        assert len(arr["sample_id"]) == n
        assert arr["stress"].shape == (n, len(man["probe_points"]), 6)
        assert arr["strain"].shape == arr["stress"].shape
        assert arr["params"].shape == (n, len(man["param_names"]))
        assert arr["converged"].all()
    assert sum(man["counts"].values()) + sum(man["rejected"].values()) == 12
    assert man["units"]["stress"].startswith("kPa") and man["solver_versions"]["dolfinx"].startswith("0.11")
    train = load_split(a, "train")
    # NaN exactly where a parameter does not apply: every sample has its law's constants
    for i, law in enumerate(train["material_model"]):
        prefix = "biot." if law == "linear_biot" else f"{law}."
        cols = [j for j, n in enumerate(train["param_names"]) if n.startswith(prefix)]
        assert cols and np.isfinite(train["params"][i, cols]).all()

    # The viewer renders a sample from the files alone.
    from datagen.show import render

    png = render(a, 0, "train", tmp_path / "s.png").path
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    # Resume: remove one shard and the manifest; the re-run solves only that shard, same bytes.
    hashes = shard_hashes(a)
    (a / "manifest.json").unlink()
    (a / "shards" / "val-00000.npz").unlink()
    before = (a / "shards" / "train-00000.npz").stat().st_mtime_ns
    generate(tiny_cfg(tmp_path / "a", "workers=1"))
    assert shard_hashes(a) == hashes
    assert (a / "shards" / "train-00000.npz").stat().st_mtime_ns == before

    # A tampered shard is refused by the reader.
    p = a / "shards" / "test-00000.npz"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="sha256"):
        load_split(a, "test")


def test_dataset_id_ignores_execution_knobs(tmp_path: Path) -> None:
    base = tiny_cfg(tmp_path)
    assert dataset_id(base.data) == dataset_id(tiny_cfg(tmp_path / "x", "workers=1").data)
    assert dataset_id(base.data) != dataset_id(tiny_cfg(tmp_path, "data.seed=8").data)


def test_failed_samples_are_rejected_counted_and_not_stored(tmp_path: Path) -> None:
    """A 95% compression in one increment with one cut-back allowed cannot converge."""
    cfg = tiny_cfg(
        tmp_path,
        "workers=1",
        "data.behaviours=[hyperelastic]",
        "data.scenarios=[uniaxial]",
        "data.loads.stretch.low=0.04",
        "data.loads.stretch.high=0.05",
        "data.solver.initial_load_steps=1",
        "data.solver.max_cutbacks=1",
    )
    d = generate(cfg)
    man = json.loads((d / "manifest.json").read_text())
    assert sum(man["rejected"].values()) > 0
    assert sum(man["counts"].values()) + sum(man["rejected"].values()) == 12
    for split in ("train", "val", "test"):
        arr = load_split(d, split)
        assert len(arr["sample_id"]) == man["counts"][split]
        assert np.isfinite(arr["stress"]).all()
