"""Run identity: a content hash of the settings that change a run's result.

``run_id`` hashes the resolved optimizer, model, train settings, the dataset id and the seed; not
the sweep id, W&B, harness (how the run is watched) or paths. The same experiment therefore gets
the same id in every sweep and on every machine, and a re-run finds it finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from common.config import compose
from common.ids import content_id
from datagen.dataset import dataset_id
from experiments import config as run_config


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True)


def _model_settings(model: Any) -> dict[str, Any]:
    """The model's settings less where weights are cached, the protocol's random-init consent and the
    kind of activation checkpointing (none changes a result); the pretrained-weights keys only when
    set, so that presets without weights keep the ids they had before those keys existed."""
    plain = _plain(model)
    for key in ("cache_dir", "allow_random_init", "checkpoint_reentrant"):
        plain.pop(key, None)
    for key in ("weights", "random_weights"):
        if not plain.get(key):
            plain.pop(key, None)
    return plain


def _optimizer_settings(optimizer: Any) -> dict[str, Any]:
    """The arm's settings; ``seed_offset`` only when set (arms that are not replicates keep the ids
    they had before the key existed)."""
    plain = _plain(optimizer)
    if not plain.get("seed_offset"):
        plain.pop("seed_offset", None)
    return plain


def _train_settings(train: Any, optimizer: Any) -> dict[str, Any]:
    """The train settings; ``cpu_fp32_compute`` only where it changes a result: set, for an arm with
    16-bit parameters (fp32 arms, and runs that keep CPU autocast, keep the ids they had before the
    key existed; a 16-bit arm's CPU run computes differently, so it gets a new id)."""
    plain = _plain(train)
    if not plain.get("cpu_fp32_compute") or optimizer.param_dtype == "float32":
        plain.pop("cpu_fp32_compute", None)
    # keys added later enter the id only when they differ from the behaviour before them
    if plain.get("packing", True):
        plain.pop("packing", None)
    if not plain.get("compile", False):
        plain.pop("compile", None)
    if plain.get("text", {}).get("number_format", "sci") == "sci":
        plain.get("text", {}).pop("number_format", None)
    return plain


def run_settings(cfg: Any) -> dict[str, Any]:
    settings = {
        "optimizer": _optimizer_settings(cfg.optimizer),
        "model": _model_settings(cfg.model),
        "dataset_id": dataset_id(cfg.data),
        "train": _train_settings(cfg.train, cfg.optimizer),
        "seed": int(cfg.seed),
    }
    # A sharded run follows the one-process trajectory (float tolerance) but measures per-GPU memory
    # at its world size: a different result, so a different run (a completed one-GPU run must not be
    # taken for a two-GPU one). Unsharded runs keep the ids they had before sharding existed.
    dist = cfg.get("dist")
    if dist is not None and dist.strategy != "none":
        settings["dist"] = {"strategy": str(dist.strategy), "nproc": int(dist.nproc)}
    return settings


def run_id(cfg: Any) -> str:
    return content_id(run_settings(cfg))


def run_dir(cfg: Any) -> Path:
    return Path(cfg.results_root) / "sweeps" / cfg.sweep_id / "runs" / run_id(cfg)


def arm_config(arm: str) -> Any:
    """The resolved ``optimizer`` node of ``conf/optimizer/<arm>.yaml`` (its defaults list followed, on
    the schema), composed the one way every config is (:func:`common.config.compose`)."""
    run_config.register()
    return compose("run", [f"optimizer={arm}"]).optimizer


def reference_run_dir(cfg: Any, arm: str) -> Path:
    """The run dir of the same config with ``optimizer=<arm>`` (a gate's reference run)."""
    ref = OmegaConf.create(_plain(cfg))
    ref.optimizer = arm_config(arm)
    return run_dir(ref)
