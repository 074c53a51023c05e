"""Helpers for the run-engine tests: a small dataset that follows the dataset contract exactly.

The fixture dataset is written with datagen's own shard writer and a manifest carrying the
contract's fields (counts, shard hashes, param names, probe points, units), at the directory that
``datagen.dataset.dataset_dir`` names for the composed ``data`` config, so the run engine reads it
through ``load_split`` like a generated one. Stresses are a smooth function of the sample's
parameters (a learnable target), not FEM output: these tests check the engine, not the physics.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# pytest puts tests/ on sys.path (rootdir conftest), where tests/flashoptim/ and tests/datagen/ are
# namespace packages that shadow the installed editable packages of the same names. Put the repo
# root first so `import flashoptim` is the library. (Proper fix: `pythonpath = ["."]` in pyproject.)
_REPO = str(Path(__file__).resolve().parents[2])
if sys.path[0] != _REPO:
    sys.path.insert(0, _REPO)
for _name in ("flashoptim", "datagen", "experiments"):
    _mod = sys.modules.get(_name)
    if _mod is not None and getattr(_mod, "__file__", None) is None:  # a namespace shadow: forget it
        del sys.modules[_name]

import numpy as np  # noqa: E402

from common.atomic import write_json  # noqa: E402
from datagen import dataset as ds  # noqa: E402
from datagen import spec  # noqa: E402

TISSUES = ("liver", "brain_grey", "myocardium")
LAWS = {"liver": "neo_hookean", "brain_grey": "ogden", "myocardium": "holzapfel_ogden"}


def _split_arrays(
    rng: np.random.Generator, n: int, names: list[str], start_id: int, n_probes: int
) -> dict[str, Any]:
    k = len(names)
    params = np.full((n, k), np.nan)
    tissue = rng.choice(TISSUES, size=n)
    mu_col = names.index("neo_hookean.mu")
    stretch_col = names.index("load.stretch")
    params[:, mu_col] = rng.uniform(1.5, 3.0, n)
    params[:, stretch_col] = rng.uniform(0.85, 1.15, n)
    probes = np.linspace(0.5, 1.5, n_probes)[:, None] * np.array([1.0, 0.5, 0.5, 0.1, 0.1, 0.2])
    stress = (params[:, mu_col] * (params[:, stretch_col] ** 2 - 1.0))[:, None, None] * probes[None]
    return {
        "sample_id": np.arange(start_id, start_id + n, dtype=np.int64),
        "tissue": tissue.astype("<U16"),
        "material_model": np.array([LAWS[t] for t in tissue], dtype="<U16"),
        "scenario": np.full(n, "uniaxial", dtype="<U24"),
        "behaviour": np.full(n, "hyperelastic", dtype="<U16"),
        "params": params,
        "stress": stress,
        "strain": stress / 10.0,
        "converged": np.ones(n, dtype=bool),
        "newton_iterations": np.full(n, 4, dtype=np.int64),
        "load_steps": np.full(n, 2, dtype=np.int64),
        "error_estimate": np.full(n, np.nan),  # not estimated (datagen contract: NaN)
        "probe_points": np.zeros((n_probes, 3)),
        "rejected_sample_id": np.zeros(0, np.int64),
        "rejected_reason": np.zeros(0, "<U8"),
    }


def write_fixture_dataset(
    data_cfg: Any,
    results_root: Path,
    *,
    counts: dict[str, int] | None = None,
    n_probes: int = 2,
    seed: int = 0,
) -> Path:
    """Write a contract-conforming dataset for ``data_cfg`` under ``results_root``; returns its dir."""
    counts = counts or {"train": 48, "val": 4, "test": 4}
    out = ds.dataset_dir(data_cfg, results_root)
    if (out / "manifest.json").exists():
        return out
    names = spec.param_names(data_cfg)
    rng = np.random.default_rng(seed)
    hashes: dict[str, str] = {}
    start = 0
    for split, n in counts.items():
        arrays = _split_arrays(rng, n, names, start, n_probes)
        start += n
        name = ds.shard_name(split, 0)
        hashes[name] = ds.write_shard(out / "shards" / name, arrays)
    manifest = {
        "dataset_id": ds.dataset_id(data_cfg),
        "schema_version": ds.SCHEMA_VERSION,
        "counts": counts,
        "shard_hashes": hashes,
        "param_names": names,
        "probe_points": np.zeros((n_probes, 3)).tolist(),
        "units": {"stress": "kPa"},
        "rejected": {},
        "generator": "tests/experiments/run_helpers.py (fixture, not FEM)",
    }
    write_json(out / "manifest.json", manifest)
    return out


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


# Short runs: 4 steps of 2 x 256-token sequences, 2 val + 2 test samples, no W&B, no periodic checkpoint.
FAST = [
    "wandb=disabled",
    "train.max_steps=4",
    "train.micro_batch_size=2",
    "train.max_seq_len=256",
    "train.warmup_steps=1",
    "train.eval.val_samples=2",
    "train.eval.test_samples=2",
    "harness.checkpoint_every_steps=0",
]


def compose_run(results_root: Path, overrides: list[str]) -> Any:
    from experiments.config import load_run_config

    return load_run_config([f"results_root={results_root}", *overrides])


def run_in_process(results_root: Path, overrides: list[str]) -> tuple[int, Path]:
    """``python -m experiments.run`` in this process (imports paid once); (exit code, run dir)."""
    from experiments import identity
    from experiments.run.main import main

    code = main([f"results_root={results_root}", *overrides])
    return code, identity.run_dir(compose_run(results_root, overrides))


def fixture_results_root(tmp_path_factory: Any) -> Path:
    from common.config import compose
    from experiments.config import register

    root = tmp_path_factory.mktemp("results")
    register()
    write_fixture_dataset(compose("run", [f"results_root={root}"]).data, root)
    return root
