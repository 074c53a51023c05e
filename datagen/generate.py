"""Generate a dataset: plan shards, warm the JIT cache, solve shards in a worker pool, write manifest.

Hazards handled here:
- BLAS threads: every worker must use 1 thread (2 cores shared by workers); the env vars are set
  before the pool spawns its processes (numpy reads them at import).
- Workers are `spawn`ed (fork after MPI/PETSc initialisation is unsafe) and recycled after
  `worker_max_shards` shards: MPICH runs out of communicators after ~2,000 meshes/functions.
- FFCx compiles on first use; compiling in N workers at once would race and waste N x the time,
  so the parent compiles every form first (the on-disk cache is then hit by the workers).
- Resumability: a shard file exists only once complete (atomic rename); re-runs skip it.
  manifest.json is written last, from the shards on disk.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import write_json
from common.ids import file_sha256
from common.provenance import git_state, now_iso, package_versions
from datagen.dataset import (
    GENERATOR_VERSION,
    SAMPLE_FIELDS,
    SCHEMA_VERSION,
    dataset_dir,
    dataset_id,
    normalisation_stats,
    read_shard,
    shard_name,
    write_shard,
)
from datagen.spec import SPLITS, param_names, param_units

log = logging.getLogger("datagen")
BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
UNITS = {
    "length": "mm",
    "stress": "kPa (Cauchy)",
    "strain": "1 (Green-Lagrange)",
    "time": "s",
    "permeability": "mm^2/(kPa s)",
    "angle": "deg",
    "voigt_order": ["xx", "yy", "zz", "yz", "xz", "xy"],
}


@dataclass(frozen=True)
class ShardSpec:
    split: str
    index: int
    first_sample_id: int
    count: int

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index)


def plan_shards(data: Any) -> list[ShardSpec]:
    """Contiguous global sample ids: train first, then val, then test; shard_size per shard."""
    specs, start = [], 0
    for split in SPLITS:
        n = int(data.splits.get(split, 0))
        for k, off in enumerate(range(0, n, int(data.shard_size))):
            specs.append(ShardSpec(split, k, start + off, min(int(data.shard_size), n - off)))
        start += n
    return specs


# ---- worker side -------------------------------------------------------------------------------
_RUNNER: Any = None
_DATA: Any = None


def _init_worker(data_container: dict[str, Any], runner: Any = None) -> None:
    global _RUNNER, _DATA
    for k in BLAS_ENV:
        os.environ[k] = "1"
    from omegaconf import OmegaConf

    _DATA = OmegaConf.create(data_container)
    if runner is None:
        from datagen.worker import SampleRunner  # imports mpi4py/dolfinx: only in workers

        runner = SampleRunner(_DATA)
    _RUNNER = runner


def solve_shard(spec: ShardSpec, out_dir: str) -> dict[str, Any]:
    """Solve the samples of one shard and write it atomically; returns counts for progress."""
    from datagen.sampling import draw_sample
    from datagen.solid import SampleRejected

    t0 = time.perf_counter()
    data, runner = _DATA, _RUNNER
    names = param_names(data)
    col = {n: i for i, n in enumerate(names)}
    rows: dict[str, list[Any]] = {k: [] for k in SAMPLE_FIELDS}
    rejected_ids, rejected_reasons = [], []
    for sid in range(spec.first_sample_id, spec.first_sample_id + spec.count):
        x = draw_sample(data, sid)
        try:
            res = runner.run(x)
        except SampleRejected as e:
            rejected_ids.append(sid)
            rejected_reasons.append(e.reason)
            continue
        except Exception as e:  # a PETSc/linear-algebra error is a rejection with its type, not a crash
            rejected_ids.append(sid)
            rejected_reasons.append(f"error_{type(e).__name__}")
            log.warning("sample %d: %s: %s", sid, type(e).__name__, e)
            continue
        prm = np.full(len(names), np.nan)
        for k, v in x.params.items():
            prm[col[k]] = v
        for k, v in (
            ("sample_id", sid),
            ("tissue", x.tissue),
            ("material_model", x.material_model),
            ("scenario", x.scenario),
            ("behaviour", x.behaviour),
            ("params", prm),
            ("stress", res.stress),
            ("strain", res.strain),
            ("converged", res.converged),
            ("newton_iterations", res.newton_iterations),
            ("load_steps", res.load_steps),
        ):
            rows[k].append(v)
    P = len(runner.specimen.probe_xyz)
    n = len(rows["sample_id"])
    arrays = {
        "sample_id": np.asarray(rows["sample_id"], dtype=np.int64),
        "tissue": np.asarray(rows["tissue"], dtype="<U32"),
        "material_model": np.asarray(rows["material_model"], dtype="<U32"),
        "scenario": np.asarray(rows["scenario"], dtype="<U32"),
        "behaviour": np.asarray(rows["behaviour"], dtype="<U32"),
        "params": np.asarray(rows["params"], dtype=np.float64).reshape(n, len(names)),
        "stress": np.asarray(rows["stress"], dtype=np.float64).reshape(n, P, 6),
        "strain": np.asarray(rows["strain"], dtype=np.float64).reshape(n, P, 6),
        "converged": np.asarray(rows["converged"], dtype=bool),
        "newton_iterations": np.asarray(rows["newton_iterations"], dtype=np.int64),
        "load_steps": np.asarray(rows["load_steps"], dtype=np.int64),
        "probe_points": np.asarray(runner.specimen.probe_xyz, dtype=np.float64),
        "rejected_sample_id": np.asarray(rejected_ids, dtype=np.int64),
        "rejected_reason": np.asarray(rejected_reasons, dtype="<U64"),
    }
    write_shard(Path(out_dir) / spec.name, arrays)
    return {
        "name": spec.name,
        "accepted": n,
        "rejected": dict(Counter(rejected_reasons)),
        "seconds": time.perf_counter() - t0,
        "pid": os.getpid(),
    }


# ---- parent side -------------------------------------------------------------------------------
def _solver_versions() -> dict[str, Any]:
    import dolfinx
    import petsc4py
    from petsc4py import PETSc

    v = PETSc.Sys.getVersion()
    return {
        "dolfinx": dolfinx.__version__,
        "petsc": ".".join(map(str, v)),
        "petsc4py": petsc4py.__version__,
        **{
            k: package_versions((k,))[k]
            for k in ("fenics-basix", "fenics-ffcx", "fenics-ufl", "dolfinx-solver-real")
        },
    }


def warm_jit(data: Any) -> tuple[Any, float]:
    """Compile every form/expression the config can need, in this process; (runner, seconds)."""
    t0 = time.perf_counter()
    from datagen.worker import SampleRunner

    runner = SampleRunner(data, eager=True)
    return runner, time.perf_counter() - t0


def generate(cfg: Any, *, shard_filter: Any = None) -> Path:
    """Create (or resume, or find complete) the dataset of `cfg.data`; returns its directory."""
    from omegaconf import OmegaConf

    data = cfg.data
    out = dataset_dir(data, cfg.results_root)
    if (out / "manifest.json").exists():
        log.info("dataset %s is complete (manifest.json present): nothing to do", out)
        return out
    shards_dir = out / "shards"
    shards_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_shards(data)
    todo = [s for s in plan if not (shards_dir / s.name).exists()]
    if cfg.shard_groups > 1:  # one cluster job of several: every shard_groups-th shard of the plan
        mine = {s.name for i, s in enumerate(plan) if i % cfg.shard_groups == cfg.shard_group}
        todo = [s for s in todo if s.name in mine]
    if shard_filter is not None:
        todo = [s for s in todo if shard_filter(s)]
    total = sum(s.count for s in todo)
    log.info(
        "dataset %s: %d shards planned, %d done, %d to solve (%d samples), workers=%d",
        dataset_id(data),
        len(plan),
        len(plan) - len([s for s in plan if not (shards_dir / s.name).exists()]),
        len(todo),
        total,
        cfg.workers,
    )
    t_start = time.perf_counter()
    if todo:
        for k in BLAS_ENV:
            os.environ[k] = "1"
        container = OmegaConf.to_container(data, resolve=True)
        # Warm from the same container the workers get, so Constants/Functions are created in the
        # same order with the same values (see SampleRunner.__init__ on expression cache keys).
        runner, t_warm = warm_jit(OmegaConf.create(container))
        log.info("JIT cache warm (%.1f s)", t_warm)
        _run_pool(todo, container, str(shards_dir), cfg, total, runner)
    if all((shards_dir / s.name).exists() for s in plan):
        write_manifest(cfg, out, plan, time.perf_counter() - t_start)
        log.info("wrote %s", out / "manifest.json")
    else:
        log.info("shards still missing (another job may be solving them); manifest not written yet")
    return out


def _run_pool(
    todo: list[ShardSpec], container: dict[str, Any], shards_dir: str, cfg: Any, total: int, runner: Any
) -> None:
    t0 = time.perf_counter()
    done = acc = 0
    rejects: Counter[str] = Counter()
    last = 0.0

    def report(r: dict[str, Any], force: bool = False) -> None:
        nonlocal done, acc, last
        done += r["accepted"] + sum(r["rejected"].values())
        acc += r["accepted"]
        rejects.update(r["rejected"])
        now = time.perf_counter()
        if force or now - last >= cfg.progress_interval_s or done == total:
            el = now - t0
            log.info(
                "%d/%d samples (%.0f%%), %.1f samples/s, %d rejected %s, last %s %.1fs",
                done,
                total,
                100 * done / max(total, 1),
                done / max(el, 1e-9),
                sum(rejects.values()),
                dict(rejects) if rejects else "",
                r["name"],
                r["seconds"],
            )
            last = now

    if cfg.workers == 1:
        _init_worker(container, runner)
        for s in todo:
            report(solve_shard(s, shards_dir))
        return
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(
        processes=min(cfg.workers, len(todo)),
        initializer=_init_worker,
        initargs=(container,),
        maxtasksperchild=cfg.worker_max_shards,
    )
    try:
        results = [pool.apply_async(solve_shard, (s, shards_dir)) for s in todo]
        for res in results:
            report(res.get())
        pool.close()  # let workers exit normally: terminate() sends SIGTERM, which PETSc reports as a crash
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def write_manifest(cfg: Any, out: Path, plan: list[ShardSpec], wall_s: float) -> None:
    from omegaconf import OmegaConf

    data = cfg.data
    names = param_names(data)
    counts = dict.fromkeys(SPLITS, 0)
    requested = dict.fromkeys(SPLITS, 0)
    rejected: Counter[str] = Counter()
    rejected_by_split: dict[str, dict[str, int]] = {}
    hashes: dict[str, str] = {}
    train_parts = []
    probe_points = None
    for s in plan:
        path = out / "shards" / s.name
        sh = read_shard(path)
        hashes[s.name] = file_sha256(str(path))
        counts[s.split] += len(sh["sample_id"])
        requested[s.split] += s.count
        rs = Counter(str(r) for r in sh["rejected_reason"])
        rejected.update(rs)
        rejected_by_split.setdefault(s.split, {})
        for k, v in rs.items():
            rejected_by_split[s.split][k] = rejected_by_split[s.split].get(k, 0) + v
        if s.split == "train":
            train_parts.append(sh)
        probe_points = sh["probe_points"]
    train = {
        f: np.concatenate([p[f] for p in train_parts]) if train_parts else np.zeros((0, 1, 6))
        for f in ("stress", "strain")
    }
    train["params"] = (
        np.concatenate([p["params"] for p in train_parts]) if train_parts else np.zeros((0, len(names)))
    )
    train["param_names"] = names
    total_done = sum(counts.values()) + sum(rejected.values())
    manifest = {
        "dataset_id": dataset_id(data),
        "schema_version": SCHEMA_VERSION,
        "generator_version": GENERATOR_VERSION,
        "name": data.name,
        "created": now_iso(),
        "generator_config": OmegaConf.to_container(data, resolve=True),
        "code_version": git_state(),
        "solver_versions": _solver_versions(),
        "counts": counts,
        "requested": requested,
        "rejected": dict(rejected),
        "rejected_by_split": rejected_by_split,
        "normalisation": normalisation_stats(train),
        "normalisation_split": "train",
        "shard_hashes": hashes,
        "units": {**UNITS, "params": param_units(data)},
        "param_names": names,
        "probe_points": probe_points.tolist() if probe_points is not None else [],
        "generation_wall_s_last_run": wall_s,
        "samples_total": total_done,
    }
    write_json(out / "manifest.json", manifest)
