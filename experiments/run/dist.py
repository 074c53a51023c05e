"""FSDP2 data parallelism for ``experiments.run``: one rank's view (shard, agree, record).

``python -m experiments.run dist=fsdp2 dist.nproc=N ...`` relaunches itself under torchrun
(:mod:`experiments.run.torchrun`); each process torchrun starts (``TORCHELASTIC_RUN_ID`` set) runs the
training as one rank with a :class:`DistContext`.

Semantics (the run's result does not depend on the world size, float rounding aside):

* Each micro-batch of ``train.micro_batch_size`` sequences is split into ``nproc`` equal row blocks.
  Rank r's loss is the sum of its token losses divided by the target-token count of the *whole*
  micro-batch (``num_items_in_batch``), times ``nproc`` because FSDP2 averages gradients over ranks:
  the reduced gradient is exactly the one-process gradient of the mean token loss.
* Sharding (:meth:`DistContext.shard`): ``fully_shard`` on every decoder layer and at the root of a
  1-D mesh. fp32-parameter arms use ``MixedPrecisionPolicy(param_dtype=<autocast dtype>,
  reduce_dtype=float32)`` where the one-process run would autocast (on CPU only with
  ``train.cpu_autocast``); FlashOptim arms are cast to bf16 by ``cast_model`` first, and their fp32
  norm weights get FSDP units of their own (FSDP2 needs one dtype per unit). On CPU, 16-bit arms
  compute in fp32 on their gathered bf16 weights (``train.cpu_fp32_compute``, models.compute_in_fp32).
* Optimizers: ``dist.native_dtensor_optimizers`` (torch AdamW) step DTensors themselves; every
  other arm (FlashOptim, bitsandbytes AdamW8bit, which does not know DTensor) is stepped on the
  local shards through :class:`flashoptim.distributed.ShardedOptimizer`, whose state_dict is DTensors.
* Agreement: losses, stop requests (signals) and memory figures are exchanged in one collective per
  logged interval; rank 0 decides divergence and gates and broadcasts the verdict, so every rank
  stops at the same step. Only rank 0 writes files. An exception on one rank alone (rare: shapes
  are identical on all ranks) cannot be agreed on; the others then fail at ``dist.timeout_s``.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from common.atomic import read_json
from experiments.eval.textdata import IGNORE_INDEX
from experiments.run import arms
from experiments.rundir import SUMMARY, write_summary

log = logging.getLogger(__name__)

TORCHRUN_ENV = "TORCHELASTIC_RUN_ID"


def under_torchrun() -> bool:
    return TORCHRUN_ENV in os.environ and "RANK" in os.environ


def torchrun_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


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
        # DTensor (device mesh, FSDP2) takes seconds to import: only sharded runs load it
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
        if self.active and dist.is_initialized():
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
        # DTensor (device mesh, FSDP2) takes seconds to import: only sharded runs load it
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        param_dtype = autocast if opt_cfg.param_dtype == "float32" else None
        mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=arms.DTYPES[reduce_dtype])
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
        if opt_cfg.target in self.native_optimizers:
            return arms.build_optimizer(model, opt_cfg, train_cfg, device)
        # flashoptim imports triton and its kernels: only an arm that needs it pays for that import
        from flashoptim.distributed import ShardedOptimizer

        groups = arms.param_groups(model, train_cfg.weight_decay)
        cls = arms.optimizer_class(opt_cfg)
        kwargs = arms.optimizer_kwargs(opt_cfg, train_cfg, device)
        return ShardedOptimizer(groups, lambda g: cls(g, **kwargs))

    def enable_gradient_release(self, model: Any, optimizer: Any) -> Any:
        # flashoptim imports triton and its kernels: only an arm that needs it pays for that import
        from flashoptim.distributed import enable_sharded_gradient_release

        return enable_sharded_gradient_release(model, optimizer)

    # -- data ---------------------------------------------------------------------------------
    def rank_rows(self, ids: Any, labels: Any) -> tuple[Any, Any, int]:
        """This rank's row block of a micro-batch and the target-token count of the whole micro-batch
        (the labels are shifted by one inside the loss, so position 0 never counts)."""
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
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on any (e.g. a signal seen by one rank during evaluation)."""
        if not self.active:
            return flag
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
    summary = dict(read_json(Path(run_dir) / SUMMARY))
    info = {**ctx.describe(), **memory_summary(per_rank_peaks)}
    if not summary.get("mem_measurable"):
        info = {k: (None if k.startswith("peak_mem_") else v) for k, v in info.items()}
    # counted from the state tensors (device-independent, so also on CPU): the sharding of the state
    state = ctx.state_bytes_per_rank
    info["optimizer_state_bytes_per_rank"] = state or None
    info["optimizer_state_bytes_sum"] = sum(state) if state and None not in state else None
    summary["dist"] = info
    summary["world_size"] = ctx.world_size
    write_summary(run_dir, summary)


__all__ = ["DistContext", "amend_summary", "memory_summary"]
