"""Optimizer arms built from config: parameter dtype policy, optimizer class, gradient release, and
the audit of what the optimizer state really holds.

Every arm receives the same hyper-parameters from ``train`` (lr, betas, eps, weight_decay; weight
decay on matrices only) plus its own ``optimizer.kwargs``. The state audit sums the bytes of the
tensors actually present in ``optimizer.state`` after a step, so an optimizer that allocates lazily
or keeps a hidden fp32 copy cannot look cheaper than it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import get_class

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def optimizer_class(opt_cfg: Any) -> Any:
    """The arm's optimizer class, ``optimizer.target`` resolved by Hydra (``hydra.utils.get_class``).

    The class is named in config, not imported here, because the arms' packages are optional
    (bitsandbytes, torchao: ``optimizer.requires`` is checked at validation) and adding an arm is a
    config file. The key stays ``target`` rather than Hydra's ``_target_``: the optimizer node is part
    of every run id (experiments/identity.py), and the node is not instantiated as a whole (the
    parameter groups and shared hyper-parameters come from ``train``)."""
    return get_class(str(opt_cfg.target))


def apply_param_dtype(model: torch.nn.Module, opt_cfg: Any) -> None:
    """fp32 master weights stay as built; bf16 arms cast (FlashOptim's cast_model keeps norms fp32)."""
    if opt_cfg.cast_model:
        import flashoptim  # imports triton and its kernels: only FlashOptim arms load it

        flashoptim.cast_model(model, dtype=DTYPES[opt_cfg.param_dtype])
    elif opt_cfg.param_dtype != "float32":
        model.to(DTYPES[opt_cfg.param_dtype])


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def optimizer_kwargs(opt_cfg: Any, train_cfg: Any, device: torch.device) -> dict[str, Any]:
    """The shared hyper-parameters plus the arm's own kwargs (weight decay goes per param group)."""
    kwargs: dict[str, Any] = {"lr": train_cfg.lr, "betas": tuple(train_cfg.betas), "eps": train_cfg.eps}
    kwargs.update(dict(opt_cfg.kwargs))
    if opt_cfg.fused_on_cuda and device.type == "cuda":
        kwargs["fused"] = True
    return kwargs


def build_optimizer(model: torch.nn.Module, opt_cfg: Any, train_cfg: Any, device: torch.device) -> Any:
    cls = optimizer_class(opt_cfg)
    return cls(param_groups(model, train_cfg.weight_decay), **optimizer_kwargs(opt_cfg, train_cfg, device))


def enable_gradient_release(model: torch.nn.Module, optimizer: Any) -> Any:
    import flashoptim  # imports triton and its kernels: only FlashOptim arms load it

    return flashoptim.enable_gradient_release(model, optimizer)


@dataclass(frozen=True)
class Compute:
    """How an arm's forward/backward computes on a device (recorded in the summary)."""

    autocast: torch.dtype | None  # torch.autocast dtype around forward/backward, or None
    fp32_upcast: bool  # 16-bit weights computed on in fp32 (models.compute_in_fp32)
    dtype: str  # the dtype the matmuls compute in: "float32" | "bfloat16" | "float16"
    path: str  # "autocast" | "param_dtype" | "fp32_upcast"


def compute(opt_cfg: Any, device: torch.device, train_cfg: Any) -> Compute:
    """The arm's compute path on ``device``.

    GPU: under ``optimizer.autocast_dtype`` (or in the parameters' dtype when it is null). CPU:
    fp32-parameter arms compute in fp32 unless ``train.cpu_autocast``; 16-bit-parameter arms compute
    in fp32 on their 16-bit values when ``train.cpu_fp32_compute`` (bf16 matmuls are emulated on a
    CPU without native bf16), else under autocast as on a GPU (their fp32 norm weights would
    otherwise hand fp32 activations to bf16 matmuls)."""
    sixteen_bit = opt_cfg.param_dtype != "float32"
    if device.type == "cpu" and sixteen_bit and train_cfg.cpu_fp32_compute:
        return Compute(None, True, "float32", "fp32_upcast")
    if opt_cfg.autocast_dtype is None or (
        device.type == "cpu" and not train_cfg.cpu_autocast and not sixteen_bit
    ):
        return Compute(None, False, str(opt_cfg.param_dtype), "param_dtype")
    return Compute(DTYPES[opt_cfg.autocast_dtype], False, str(opt_cfg.autocast_dtype), "autocast")


@dataclass
class StateAudit:
    state_bytes: int  # bytes of every tensor in optimizer.state
    bytes_per_param: float  # state_bytes / trainable parameters
    dtypes: list[str]  # dtypes of state tensors with more than one element, sorted
    params_with_state: int
    trainable_params: int  # tensors
    materialised: bool  # every trainable tensor has state, dtypes as the arm promises
    problem: str | None  # why not materialised


def _local(t: torch.Tensor) -> torch.Tensor:
    return getattr(t, "_local_tensor", t)


def audit_state(optimizer: Any, opt_cfg: Any) -> StateAudit:
    """Bytes and dtypes of the state this process holds (per rank under FSDP2: the local shards)."""
    params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
    n_elems = sum(_local(p).numel() for p in params)
    total = 0
    dtypes: set[str] = set()
    with_state = 0
    for p in params:
        st = optimizer.state.get(p, {})
        if st:
            with_state += 1
        for v in st.values():
            if torch.is_tensor(v):
                v = _local(v)  # FSDP2: what this rank holds (DTensor states of torch AdamW)
                total += v.numel() * v.element_size()
                if v.numel() > 1:
                    dtypes.add(str(v.dtype).removeprefix("torch."))
    problem = None
    if with_state < len(params):
        problem = f"{len(params) - with_state} of {len(params)} trainable tensors have no optimizer state"
    missing = set(opt_cfg.state_dtypes_required) - dtypes
    extra = dtypes - set(opt_cfg.state_dtypes_allowed) if opt_cfg.state_dtypes_allowed else set()
    if missing:
        problem = f"state dtypes {sorted(dtypes)} lack the arm's required {sorted(missing)}"
    elif extra:
        problem = f"state dtypes {sorted(extra)} are not among the arm's allowed {list(opt_cfg.state_dtypes_allowed)}"
    return StateAudit(
        state_bytes=total,
        bytes_per_param=total / max(n_elems, 1),
        dtypes=sorted(dtypes),
        params_with_state=with_state,
        trainable_params=len(params),
        materialised=problem is None,
        problem=problem,
    )
