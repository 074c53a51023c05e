"""Generate a dataset: plan shards, warm the JIT cache, solve shards in a worker pool, write manifest.

Hazards handled here:
- BLAS threads: every worker must use 1 thread (2 cores shared by workers); the env vars are set
  before the pool spawns its processes (numpy reads them at import).
- Workers are `spawn`ed (fork after MPI/PETSc initialisation is unsafe) and recycled after
  `worker_max_shards` shards: MPICH runs out of communicators after ~2,000 meshes/functions.
- FFCx compiles on first use; compiling in N workers at once would race and waste N x the time,
  so the parent compiles every form first (the on-disk cache is then hit by the workers).
- Resumability: a shard file exists only once complete (atomic rename), followed by its digest
  record `<shard>.sha256`. A re-run trusts no shard it did not write itself: each one present is
  verified (`verify_shard`: digest record, readable, the planned sample ids, every sample's inputs
  equal to what `draw_sample` draws, the probe points, and one sample re-solved) before it is
  skipped, and again before a manifest is built from it; one that fails is moved to
  `shards/quarantine/` (never deleted) and solved again. manifest.json is written last; a manifest
  whose shards no longer match its hashes is moved to quarantine the same way.
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

from common.atomic import read_json, write_json
from common.ids import file_sha256
from common.provenance import git_state, now_iso, package_versions
from datagen.dataset import (
    GENERATOR_VERSION,
    SAMPLE_FIELDS,
    SCHEMA_VERSION,
    DatasetError,
    dataset_dir,
    dataset_id,
    digest_path,
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
            ("error_estimate", res.error_estimate),
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
        "error_estimate": np.asarray(rows["error_estimate"], dtype=np.float64),
        "probe_points": np.asarray(runner.specimen.probe_xyz, dtype=np.float64),
        "rejected_sample_id": np.asarray(rejected_ids, dtype=np.int64),
        "rejected_reason": np.asarray(rejected_reasons, dtype="<U64"),
    }
    digest = write_shard(Path(out_dir) / spec.name, arrays)
    return {
        "name": spec.name,
        "sha256": digest,
        "accepted": n,
        "rejected": dict(Counter(rejected_reasons)),
        "seconds": time.perf_counter() - t0,
        "pid": os.getpid(),
    }


# ---- parent side -------------------------------------------------------------------------------
def _solver_versions() -> dict[str, Any]:
    # Hazard: import order (mpi4py, dolfinx_solver, then dolfinx/petsc4py), or dolfinx fails on
    # `libmpi.so.12` when no solve happened in this process (a manifest rebuilt from shards on disk).
    import dolfinx
    import dolfinx_solver  # noqa: F401
    import petsc4py
    from mpi4py import MPI  # noqa: F401
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


SHARD_KEYS = frozenset((*SAMPLE_FIELDS, "probe_points", "rejected_sample_id", "rejected_reason"))


def quarantine(path: Path, reason: str) -> Path:
    """Move a file the generator will not use to <dataset>/shards/quarantine/ (never deleted)."""
    root = path.parent if path.parent.name == "shards" else path.parent / "shards"
    qdir = root / "quarantine"
    qdir.mkdir(parents=True, exist_ok=True)
    dest = qdir / f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}"
    k = 0
    while dest.exists():
        k += 1
        dest = qdir / f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}.{k}"
    os.replace(path, dest)
    rec = digest_path(path)
    if rec.exists():
        os.replace(rec, Path(f"{dest}.sha256"))
    log.warning("%s: %s; moved to %s, it will be solved again", path, reason, dest)
    return dest


def verify_shard(path: Path, spec: ShardSpec, data: Any, runner: Any) -> str | None:
    """None if the shard on disk is what the generator writes for `spec`, else the reason.

    Checks: the digest record written with it matches its bytes; it reads (zip CRCs); its arrays
    are the shard fields; accepted + rejected ids are exactly the planned range; every sample's
    inputs equal `draw_sample`'s; the probe points are the specimen's; the first accepted sample,
    solved again, gives the stored stress and strain (to 1e-9 of its scale).
    """
    from datagen.sampling import draw_sample

    rec = digest_path(path)
    if not rec.is_file():
        return "no digest record (written by an interrupted or older run)"
    digest = file_sha256(str(path))
    if rec.read_text().strip() != digest:
        return f"sha256 {digest[:12]} differs from its digest record (modified or truncated)"
    try:
        sh = read_shard(path)
    except DatasetError as e:
        return e.message.split(": ", 1)[-1].split(";")[0]
    if set(sh) != SHARD_KEYS:
        return f"arrays {sorted(set(sh) ^ SHARD_KEYS)} differ from the shard format"
    ids = np.sort(np.concatenate([sh["sample_id"], sh["rejected_sample_id"]]))
    if not np.array_equal(ids, np.arange(spec.first_sample_id, spec.first_sample_id + spec.count)):
        return "its sample ids are not the planned ones"
    names = param_names(data)
    for i, sid in enumerate(sh["sample_id"]):
        x = draw_sample(data, int(sid))
        prm = np.full(len(names), np.nan)
        for k, v in x.params.items():
            prm[names.index(k)] = v
        same = (
            str(sh["tissue"][i]) == x.tissue
            and str(sh["material_model"][i]) == x.material_model
            and str(sh["scenario"][i]) == x.scenario
            and str(sh["behaviour"][i]) == x.behaviour
            and sh["params"].shape[1] == len(names)
            and np.array_equal(sh["params"][i], prm, equal_nan=True)
        )
        if not same:
            return f"inputs of sample {int(sid)} differ from what the config draws"
    if not np.array_equal(sh["probe_points"], runner.specimen.probe_xyz):
        return "probe points differ from the specimen's"
    if len(sh["sample_id"]):
        sid = int(sh["sample_id"][0])
        try:
            res = runner.run(draw_sample(data, sid))
        except Exception as e:  # a rejection now is a mismatch, with its reason
            return f"sample {sid} is stored but its re-solve fails ({e})"
        for f, val in (("stress", res.stress), ("strain", res.strain)):
            scale = max(float(np.max(np.abs(val))), 1e-30)
            if not np.allclose(sh[f][0], val, rtol=0.0, atol=1e-9 * scale):
                return f"sample {sid}: stored {f} differs from its re-solve"
    return None


def generate(cfg: Any, *, shard_filter: Any = None) -> Path:
    """Create, resume, repair or find complete the dataset of `cfg.data`; returns its directory.

    Works from any interrupted state: shards on disk are verified before they are used
    (`verify_shard`), bad ones quarantined and solved again; the manifest is written once every
    planned shard is present and verified.
    """
    from omegaconf import OmegaConf

    data = cfg.data
    out = dataset_dir(data, cfg.results_root)
    shards_dir = out / "shards"
    plan = plan_shards(data)
    man_path = out / "manifest.json"
    if man_path.exists():
        why = _manifest_problem(man_path, plan, data)
        if why is None:
            log.info("dataset %s is complete (manifest.json present, shard hashes match): nothing to do", out)
            return out
        quarantine(man_path, why)
    shards_dir.mkdir(parents=True, exist_ok=True)
    mine = plan
    if cfg.shard_groups > 1:  # one cluster job of several: every shard_groups-th shard of the plan
        mine = [s for i, s in enumerate(plan) if i % cfg.shard_groups == cfg.shard_group]
    if shard_filter is not None:
        mine = [s for s in mine if shard_filter(s)]
    for k in BLAS_ENV:
        os.environ[k] = "1"
    container = OmegaConf.to_container(data, resolve=True)
    state: dict[str, Any] = {"runner": None, "verified": {}}

    def runner() -> Any:
        if state["runner"] is None:
            # Warm from the same container the workers get, so Constants/Functions are created in
            # the same order with the same values (see SampleRunner.__init__ on expression cache keys).
            state["runner"], t_warm = warm_jit(OmegaConf.create(container))
            log.info("JIT cache warm (%.1f s)", t_warm)
        return state["runner"]

    def check(specs: list[ShardSpec]) -> None:
        for s in specs:
            path = shards_dir / s.name
            if s.name in state["verified"] or not path.exists():
                continue
            why = verify_shard(path, s, data, runner())
            if why is None:
                state["verified"][s.name] = file_sha256(str(path))
            else:
                quarantine(path, why)

    t_start = time.perf_counter()
    check(mine)
    todo = [s for s in mine if not (shards_dir / s.name).exists()]
    log.info(
        "dataset %s: %d shards planned, %d verified present, %d to solve (%d samples), workers=%d",
        dataset_id(data),
        len(plan),
        len(state["verified"]),
        len(todo),
        sum(s.count for s in todo),
        cfg.workers,
    )
    for _ in range(2):  # solve, then verify shards other jobs wrote; solve again what failed
        if todo:
            done = _run_pool(todo, container, str(shards_dir), cfg, sum(s.count for s in todo), runner())
            state["verified"].update(done)
        if not all((shards_dir / s.name).exists() for s in plan):
            log.info("shards still missing (another job may be solving them); manifest not written yet")
            return out
        check(plan)
        todo = [s for s in plan if not (shards_dir / s.name).exists()]
        if not todo:
            write_manifest(cfg, out, plan, time.perf_counter() - t_start, state["verified"])
            log.info("wrote %s", man_path)
            return out
    raise DatasetError(
        f"{shards_dir}: shards {[s.name for s in todo]} failed verification after being solved again "
        "(the generator is not deterministic here); report it with the quarantine/ files"
    )


def _manifest_problem(man_path: Path, plan: list[ShardSpec], data: Any) -> str | None:
    """Why an existing manifest cannot be trusted (None: every planned shard matches its hash)."""
    try:
        man = read_json(man_path)
        hashes = man["shard_hashes"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable manifest ({type(e).__name__})"
    if man.get("dataset_id") != dataset_id(data) or set(hashes) != {s.name for s in plan}:
        return "manifest does not describe this config's shards"
    for s in plan:
        path = man_path.parent / "shards" / s.name
        if not path.is_file():
            return f"shard {s.name} is missing"
        if file_sha256(str(path)) != hashes[s.name]:
            return f"shard {s.name} does not match the manifest's sha256"
    return None


def _run_pool(
    todo: list[ShardSpec], container: dict[str, Any], shards_dir: str, cfg: Any, total: int, runner: Any
) -> dict[str, str]:
    """Solve `todo`; returns {shard name: sha256} of the shards written."""
    t0 = time.perf_counter()
    written: dict[str, str] = {}
    done = acc = 0
    rejects: Counter[str] = Counter()
    last = 0.0

    def report(r: dict[str, Any], force: bool = False) -> None:
        nonlocal done, acc, last
        written[r["name"]] = r["sha256"]
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
        return written
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
    return written


def write_manifest(
    cfg: Any, out: Path, plan: list[ShardSpec], wall_s: float, verified: dict[str, str]
) -> None:
    """Build manifest.json from the planned shards, each verified (`verified`: name -> sha256)."""
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
        digest = file_sha256(str(path))
        if verified.get(s.name) != digest:
            raise DatasetError(f"{path}: changed since it was verified; " + "rerun `python -m datagen`")
        sh = read_shard(path)
        hashes[s.name] = digest
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
        "accuracy": {
            "tolerance": float(data.solver.error_tolerance),
            "measure": "max |stress - reference| at the probes / max |stress| of the sample",
            "estimated": "poroelastic: time step doubling (BDF2)"
            if data.solver.poro_error_estimate
            else "none",
            "rejected_above_tolerance": int(rejected.get("discretisation_error_above_tolerance", 0)),
            "verification": "datagen/README.md, 'Verification at the generator's settings'",
        },
        "generation_wall_s_last_run": wall_s,
        "samples_total": total_done,
    }
    write_json(out / "manifest.json", manifest)
