"""FSDP2 data parallelism for ``experiments.run``: launch under torchrun, shard, agree, record.

``python -m experiments.run dist=fsdp2 dist.nproc=N ...`` validates its config, then relaunches
itself as ``python -m torch.distributed.run --standalone --nproc_per_node N -m experiments.run ...``
(:func:`launch`); a process started by torchrun (``TORCHELASTIC_RUN_ID`` set) runs the training
as one rank. After torchrun returns, the launcher makes sure the run dir holds a terminal summary
(a rank that died unrecorded becomes status ``failed``), so a sweep sees one command and one status.

Semantics (the run's result does not depend on the world size, float rounding aside):

* Each micro-batch of ``train.micro_batch_size`` sequences is split into ``nproc`` equal row blocks.
  Rank r's loss is the sum of its token losses divided by the target-token count of the *whole*
  micro-batch (``num_items_in_batch``), times ``nproc`` because FSDP2 averages gradients over ranks:
  the reduced gradient is exactly the one-process gradient of the mean token loss.
* Sharding (:meth:`DistContext.shard`): ``fully_shard`` on every decoder layer and at the root of a
  1-D mesh. fp32-parameter arms use ``MixedPrecisionPolicy(param_dtype=<autocast dtype>,
  reduce_dtype=float32)`` where the one-process run would autocast (on CPU only with
  ``train.cpu_autocast``); FlashOptim arms are cast to bf16 by ``cast_model`` first, and their fp32
  norm weights get FSDP units of their own (FSDP2 needs one dtype per unit).
* Optimizers: ``dist.native_dtensor_optimizers`` (torch AdamW) step DTensors themselves; every
  other arm (FlashOptim, bitsandbytes AdamW8bit, which does not know DTensor) is stepped on the
  local shards through :class:`flashoptim.distributed.ShardedOptimizer`, whose state_dict is DTensors.
* Agreement: losses, stop requests (signals) and memory figures are exchanged in one collective per
  logged interval; rank 0 decides divergence and gates and broadcasts the verdict, so every rank
  stops at the same step. Only rank 0 writes files. An exception on one rank alone (rare: shapes
  are identical on all ranks) cannot be agreed on; the others then fail at ``dist.timeout_s``.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import torch

log = logging.getLogger(__name__)

TORCHRUN_ENV = "TORCHELASTIC_RUN_ID"


def under_torchrun() -> bool:
    return TORCHRUN_ENV in os.environ and "RANK" in os.environ


def torchrun_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "experiments.run",
        *args,
    ]


@dataclass
class DistContext:
    """Rank, world and mesh of this process; inactive (rank 0 of 1) without sharding."""

    active: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    strategy: str = "none"
    mesh: Any = None
    backend: str | None = None
    reshard_after_forward: bool = True
    native_optimizers: tuple[str, ...] = ("torch.optim.AdamW",)  # step DTensor params themselves
    mem_per_rank: list[list[int | None]] = field(default_factory=list)  # last exchange's figures
    peaks_per_rank: list[Any] = field(default_factory=list)  # (alloc, reserved, nvml) per rank at the end
    state_bytes_per_rank: list[int | None] = field(default_factory=list)  # optimizer state held per rank

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, cfg: Any) -> DistContext:
        """Join the process group torchrun set up (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
        d = cfg.dist
        if d.strategy == "none":
            return cls()
        if not under_torchrun():
            raise RuntimeError(
                "dist.strategy=fsdp2 runs under torchrun (experiments.run.dist.launch starts it)"
            )
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh

        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = cfg.harness.device != "cpu" and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local_rank)  # before any CUDA work: pick_device reads it
        backend = d.backend if d.backend != "auto" else ("nccl" if cuda else "gloo")
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=float(d.timeout_s)))
        world = dist.get_world_size()
        if world != d.nproc:
            raise RuntimeError(f"torchrun started {world} processes, dist.nproc={d.nproc}")
        mesh = init_device_mesh("cuda" if cuda else "cpu", (world,), mesh_dim_names=("dp",))
        return cls(
            True,
            dist.get_rank(),
            world,
            local_rank,
            d.strategy,
            mesh,
            backend,
            bool(d.reshard_after_forward),
            tuple(d.native_dtensor_optimizers),
        )

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def describe(self) -> dict[str, Any]:
        """What the run dir records (manifest and summary ``dist``)."""
        return {
            "strategy": self.strategy,
            "world_size": self.world_size,
            "backend": self.backend,
            "mesh": [self.world_size] if self.active else None,
            "sharding": (
                "fully_shard per decoder layer + root (+ fp32 norms as own units for bf16 arms), "
                "Shard(0) on a 1-D mesh"
                if self.active
                else None
            ),
        }

    # -- model and optimizer ------------------------------------------------------------------
    def shard(self, model: Any, opt_cfg: Any, autocast: torch.dtype | None, reduce_dtype: str) -> None:
        """fully_shard the decoder layers and the root (see the module docstring)."""
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        from experiments.run.arms import DTYPES

        param_dtype = autocast if opt_cfg.param_dtype == "float32" else None
        mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=DTYPES[reduce_dtype])
        kw = {"mesh": self.mesh, "mp_policy": mp, "reshard_after_forward": self.reshard_after_forward}
        dtypes = {p.dtype for p in model.parameters()}
        if len(dtypes) > 1 and param_dtype is None:
            for module in model.modules():  # cast_model's fp32 norms: one dtype per FSDP unit
                own = list(module.parameters(recurse=False))
                if own and any(p.dtype != torch.bfloat16 for p in own):
                    fully_shard(module, **kw)
        for layer in model.model.layers:
            fully_shard(layer, **kw)
        fully_shard(model, **kw)
        # transformers' generate() then keeps every rank stepping until all are done (synced_gpus)
        model._is_fsdp_managed_module = True

    def build_optimizer(self, model: Any, opt_cfg: Any, train_cfg: Any, device: torch.device) -> Any:
        from experiments.run import arms as optim_arms

        if opt_cfg.target in self.native_optimizers:
            return optim_arms.build_optimizer(model, opt_cfg, train_cfg, device)
        from flashoptim.distributed import ShardedOptimizer

        groups = optim_arms.param_groups(model, train_cfg.weight_decay)
        cls = optim_arms.import_target(opt_cfg.target)
        kwargs = optim_arms.optimizer_kwargs(opt_cfg, train_cfg, device)
        return ShardedOptimizer(groups, lambda g: cls(g, **kwargs))

    def enable_gradient_release(self, model: Any, optimizer: Any) -> Any:
        from flashoptim.distributed import enable_sharded_gradient_release

        return enable_sharded_gradient_release(model, optimizer)

    # -- data ---------------------------------------------------------------------------------
    def rank_rows(self, ids: Any, labels: Any) -> tuple[Any, Any, int]:
        """This rank's row block of a micro-batch and the target-token count of the whole micro-batch
        (the labels are shifted by one inside the loss, so position 0 never counts)."""
        from experiments.eval.textdata import IGNORE_INDEX

        n_items = int((labels[:, 1:] != IGNORE_INDEX).sum())
        per = ids.shape[0] // self.world_size
        rows = slice(self.rank * per, (self.rank + 1) * per)
        return ids[rows], labels[rows], n_items

    # -- agreement ----------------------------------------------------------------------------
    def exchange(
        self, losses: torch.Tensor, stop_requested: bool, mem: tuple[int | None, ...]
    ) -> tuple[list[float], bool]:
        """One collective per logged interval: the global losses (sum of the ranks' shares), whether
        any rank was asked to stop, and every rank's memory figures (kept in ``mem_per_rank``)."""
        import torch.distributed as dist

        vec = torch.cat(
            [
                losses.detach().double().reshape(-1),
                torch.tensor(
                    [float(stop_requested), *(-1.0 if m is None else float(m) for m in mem)],
                    dtype=torch.float64,
                    device=losses.device,
                ),
            ]
        )
        parts = [torch.empty_like(vec) for _ in range(self.world_size)]
        dist.all_gather(parts, vec)
        table = torch.stack(parts).cpu()  # the loop's one host sync (as in one process)
        n = losses.numel()
        self.mem_per_rank = [[None if v < 0 else int(v) for v in row[n + 1 :].tolist()] for row in table]
        return table[:, :n].sum(0).tolist(), bool(table[:, n].max() > 0)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on any (e.g. a signal seen by one rank during evaluation)."""
        if not self.active:
            return flag
        import torch.distributed as dist

        t = torch.tensor([float(flag)], device=self.device_for_collectives)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    @property
    def device_for_collectives(self) -> torch.device:
        return (
            torch.device("cuda", torch.cuda.current_device())
            if self.backend == "nccl"
            else torch.device("cpu")
        )

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()


def memory_summary(per_rank: list[tuple[int | None, int | None, int | None]]) -> dict[str, Any]:
    """Per-rank peaks (bytes) and their sums; None where not measurable (CPU)."""
    out: dict[str, Any] = {}
    for i, key in enumerate(("allocated", "reserved", "nvml_process")):
        values = [r[i] for r in per_rank]
        out[f"peak_mem_{key}_bytes_per_rank"] = values
        out[f"peak_mem_{key}_bytes_sum"] = (
            sum(v for v in values if v is not None) if all(v is not None for v in values) else None
        )
    return out


def amend_summary(run_dir: Any, ctx: DistContext, per_rank_peaks: list[Any]) -> None:
    """Add world size, sharding and the per-rank memory lists to rank 0's summary.json (atomically).

    The summary's own ``peak_mem_*_bytes`` are the per-GPU figure (the largest rank's), the one that
    decides whether a run fits a device; ``dist.peak_mem_*_bytes_sum`` is the whole job's."""
    from common.atomic import read_json, write_json

    path = run_dir / "summary.json"
    summary = dict(read_json(path))
    info = {**ctx.describe(), **memory_summary(per_rank_peaks)}
    if not summary.get("mem_measurable"):
        info = {k: (None if k.startswith("peak_mem_") else v) for k, v in info.items()}
    # counted from the state tensors (device-independent, so also on CPU): the sharding of the state
    state = ctx.state_bytes_per_rank
    info["optimizer_state_bytes_per_rank"] = state or None
    info["optimizer_state_bytes_sum"] = sum(state) if state and None not in state else None
    summary["dist"] = info
    summary["world_size"] = ctx.world_size
    write_json(path, summary)


# -- the launcher (the process the user or the sweep started) -----------------------------------
def launch(cfg: Any, args: list[str]) -> int:
    """Run ``experiments.run`` under torchrun; make sure a terminal summary exists afterwards."""
    from common.config import ConfigError, exit_on_config_error
    from experiments import identity
    from experiments.run.session import TERMINAL, existing_status

    n = int(cfg.dist.nproc)
    with exit_on_config_error():
        if cfg.harness.device != "cpu" and torch.cuda.is_available() and n > torch.cuda.device_count():
            raise ConfigError("dist.nproc", n, f"<= {torch.cuda.device_count()} (CUDA devices visible)")
    run_dir = identity.run_dir(cfg)
    if existing_status(run_dir) == "completed":
        log.info("run %s already completed (%s): nothing to do", run_dir.name, run_dir)
        return 0
    cmd = torchrun_command(n, args)
    log.info("launching %d ranks: %s", n, " ".join(cmd))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    rc = _run_forwarding_signals(cmd, env)
    if existing_status(run_dir) in TERMINAL:
        return 0
    return _record_unrecorded_failure(cfg, run_dir, rc)


def _run_forwarding_signals(cmd: list[str], env: dict[str, str]) -> int:
    """Run torchrun; SIGINT/SIGTERM sent to this launcher go to torchrun, which passes them to every
    rank (each checkpoints and stops at the same step); if this launcher is killed outright, the
    kernel sends torchrun SIGTERM (PR_SET_PDEATHSIG), so no rank trains on unobserved."""
    import ctypes
    import signal

    def die_with_parent() -> None:
        # not Linux: no death signal, the parent's handlers below still forward signals
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    proc = subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent)
    previous = {}

    def forward(signum: int, _frame: Any) -> None:
        proc.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: signals stay as they were
            previous[sig] = signal.signal(sig, forward)
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _record_unrecorded_failure(cfg: Any, run_dir: Any, rc: int) -> int:
    """torchrun ended without a terminal summary: reproduce a config error (exit 2) or record failed."""
    from common.atomic import read_json
    from common.config import exit_on_config_error
    from experiments.run.main import _Empty
    from experiments.run.session import RunSession, prepare_data

    with exit_on_config_error():  # e.g. train.max_seq_len too short for the data: one line, exit 2
        data = prepare_data(cfg, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    session = RunSession(cfg, run_dir, run_dir.name)
    try:
        session.manifest = dict(read_json(run_dir / "manifest.json"))
    except (OSError, ValueError):
        session.manifest = {"run_id": run_dir.name, "sweep_id": cfg.sweep_id, "seed": cfg.seed}
    session.status = "failed"
    session.status_reason = (
        f"torchrun exited with code {rc} before rank 0 recorded a status "
        "(a rank crashed or was killed; its traceback is in the launcher's output)"
    )
    log.error("%s", session.status_reason)
    return 0 if session.close(_Empty(cfg), data) else 1


__all__ = ["DistContext", "amend_summary", "launch", "memory_summary", "torchrun_command", "under_torchrun"]
