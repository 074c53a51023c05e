"""``FlashOptimizer``: the base class every Flash optimizer derives from.

It owns everything the algorithms share: master weight splitting (:mod:`flashoptim.master_weights`),
companded 8-bit states (:mod:`flashoptim.quantization`), the choice of backend, per-parameter
stepping (used by gradient release), compressed and uncompressed ``state_dict`` and fp32 master
export/import.  An algorithm subclass declares its states and writes one fp32 update rule; the fused
Triton kernels (:mod:`flashoptim.kernels`) implement the same rule in one pass on CUDA.

Per-parameter state (compressed form, also the ``state_dict`` form by default):

* ``step`` (int);
* ``correction``: int8 (``master_weight_bits=24``) or int16 (``32``) of the param's shape, only for
  bf16/fp16 params; fp32 params are their own master and need none;
* for each moment ``name``: ``{name}_codes`` (int8/uint8, flat), ``{name}_scales`` (fp16, one per 32)
  and ``{name}_compander`` (fp32 ``(family_id, param)``, 8 bytes per tensor) when states are
  quantised, else ``name`` as an fp32 tensor of the param's shape.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch

from flashoptim import cpu_step
from flashoptim.companders import Compander, default_compander, learned_candidates, resolve_compander
from flashoptim.cpu_step import batch_key, reference_step_many
from flashoptim.kernels import fused_step, fused_step_many, triton_unsupported_reason
from flashoptim.master_weights import CORRECTION_DTYPES, reconstruct_master, split_master
from flashoptim.quantization import dequantize_groups, num_groups, quantize_groups, rel_l2_error

__all__ = ["BACKENDS", "FlashOptimizer", "StateSpec"]

BACKENDS = ("auto", "torch", "triton")
StateSpec = tuple[str, bool, int]  # (state name, signed, scale_root)
_SIXTEEN_BIT = (torch.bfloat16, torch.float16)
# The learned compander scores candidates on at most this many values (a strided sample of whole
# groups), so a refit of a 100M-value state costs a few ms, not seconds.
_REFIT_SAMPLE = 1 << 20
# Alignment (bytes) of each state view inside the arena: keeps Triton's 16-byte pointer
# specialisation (vectorised loads) for every state tensor.
_ARENA_ALIGN = 256


def _plain_tensor(p: torch.Tensor) -> bool:
    """True for ordinary (non-subclass) tensors and Parameters: the only ones that take arena views."""
    return type(p) in (torch.Tensor, torch.nn.Parameter)


def _check_range(name: str, value: float, lo: float, hi: float, *, hi_open: bool = False) -> None:
    ok = lo <= value < hi if hi_open else lo <= value <= hi
    if not (ok and math.isfinite(value)):
        bracket = ")" if hi_open else "]"
        raise ValueError(f"{name}={value!r} is invalid; allowed: [{lo}, {hi}{bracket}")


class FlashOptimizer(torch.optim.Optimizer):
    """Base class.  Subclasses set ``_fused_kind`` and implement ``_state_specs``/``_reference_update``."""

    _fused_kind: ClassVar[str | None] = None  # name of the fused kernel family, None if none

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        *,
        master_weight_bits: int | None = 24,
        quantize_states: bool = True,
        compander: str = "paper",
        learned_refit_every: int = 100,
        backend: str = "auto",
        compress_state_dict: bool = True,
    ) -> None:
        _check_range("lr", float(defaults["lr"]), 0.0, math.inf, hi_open=True)
        _check_range("weight_decay", float(defaults.get("weight_decay", 0.0)), 0.0, math.inf, hi_open=True)
        if master_weight_bits not in (None, 24, 32):
            raise ValueError(f"master_weight_bits={master_weight_bits!r} is invalid; allowed: 24, 32 or None")
        resolve_compander(compander)
        if not quantize_states and compander != "paper":
            raise ValueError(
                f"compander={compander!r} needs quantize_states=True (a compander only shapes 8-bit states)"
            )
        if not (isinstance(learned_refit_every, int) and learned_refit_every >= 1):
            raise ValueError(f"learned_refit_every={learned_refit_every!r} is invalid; allowed: an int >= 1")
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is invalid; allowed: {list(BACKENDS)}")
        self.master_weight_bits = master_weight_bits
        self.quantize_states = quantize_states
        self.compander = compander
        self.learned_refit_every = learned_refit_every
        self.backend = backend
        self.compress_state_dict = compress_state_dict
        super().__init__(params, defaults)
        self._group_index: dict[int, int] = {}
        self._arena_views: dict[int, dict[str, torch.Tensor]] = {}
        all_params = [p for g in self.param_groups for p in g["params"]]
        for p in all_params:
            if p.is_complex() or not p.is_floating_point():
                raise ValueError(f"{type(self).__name__} supports real floating-point params, got {p.dtype}")
        if backend == "triton":
            for p in all_params:
                why = triton_unsupported_reason(self, p)
                if why:
                    raise ValueError(f"backend='triton' cannot step a {p.dtype} param on {p.device}: {why}")
        if master_weight_bits is None and any(p.dtype in _SIXTEEN_BIT for p in all_params):
            warnings.warn(
                "master_weight_bits=None: 16-bit params are updated by rounding to nearest, so updates "
                "smaller than half a bf16 ULP (~0.4% of the weight) are lost; use 24 unless measuring this",
                stacklevel=3,
            )
        if compander == "linear" and quantize_states:
            warnings.warn(
                "compander='linear' is the ablation: small moments in a group round to zero; "
                "expect worse convergence than 'paper'",
                stacklevel=3,
            )

    # ----------------------------------------------------------------- algorithm interface
    def _state_specs(self, group: dict[str, Any]) -> tuple[StateSpec, ...]:
        raise NotImplementedError

    def _reference_update(
        self,
        master: torch.Tensor,
        grad: torch.Tensor,
        states: dict[str, torch.Tensor],
        group: dict[str, Any],
        step: int,
    ) -> None:
        """Update ``master`` and ``states`` (fp32, in place) for one step; ``grad`` must not be modified."""
        raise NotImplementedError

    # ----------------------------------------------------------------- state
    def _correction_dtype(self, p: torch.Tensor) -> torch.dtype | None:
        if p.dtype not in _SIXTEEN_BIT or self.master_weight_bits is None:
            return None
        return CORRECTION_DTYPES[self.master_weight_bits]

    def _fixed_compander(self, signed: bool) -> Compander:
        return default_compander(self.compander, signed=signed)

    def _state_layout(
        self, p: torch.Tensor, group: dict[str, Any]
    ) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
        """``(key, dtype, shape)`` of each tensor state of ``p`` except the compander parameters."""
        out: list[tuple[str, torch.dtype, tuple[int, ...]]] = []
        corr = self._correction_dtype(p)
        if corr is not None:
            out.append(("correction", corr, tuple(p.shape)))
        for name, signed, _root in self._state_specs(group):
            if self.quantize_states:
                out.append((f"{name}_codes", torch.int8 if signed else torch.uint8, (p.numel(),)))
                out.append((f"{name}_scales", torch.float16, (num_groups(p.numel()),)))
            else:
                out.append((name, torch.float32, tuple(p.shape)))
        return out

    @torch.no_grad()
    def _allocate_states(self, params: list[tuple[torch.Tensor, dict[str, Any]]]) -> None:
        """One zeroed allocation per (device, dtype) holding the states of all ``params`` without any.

        Why: the CUDA caching allocator rounds each block up (a block is not split when less than
        1 MiB would remain), and with five state tensors per param this rounding cost 0.29 GiB at 7B
        (measured; flashoptim/BENCHMARKS.md). One arena per dtype costs at most one rounding each;
        each state is a view aligned to ``_ARENA_ALIGN`` bytes, handed out by ``_init_state``.  One
        dtype per arena because ``torch.save`` refuses views of one storage as different dtypes;
        like any view, a state saved alone serialises its whole arena (save the state_dict, or
        ``.clone()``).  DTensor params (FSDP2) keep per-tensor allocations.

        On CUDA the allocator's cache is emptied first: an arena is one block as large as the
        states of the whole model, which no cached free block can hold, so whatever the caching
        allocator kept (the blocks backward freed at the first step, a model built in fp32 and
        cast) would otherwise stay reserved beside it: 47.0 GiB reserved for 44.8 GiB allocated at
        7B on the H200, where the published package's per-tensor states reuse those blocks (46.7).
        """
        by_device: dict[torch.device, list[tuple[torch.Tensor, dict[str, Any]]]] = {}
        for p, group in params:
            if self.state.get(p) or id(p) in self._arena_views or not _plain_tensor(p):
                continue
            by_device.setdefault(p.device, []).append((p, group))
        for device, items in by_device.items():
            plans: dict[torch.dtype, list[tuple[torch.Tensor, str, tuple[int, ...], int, int]]] = {}
            ends: dict[torch.dtype, int] = {}
            align: dict[torch.dtype, int] = {}  # in elements
            for p, group in items:
                for key, dtype, shape in self._state_layout(p, group):
                    numel, start = math.prod(shape), ends.get(dtype, 0)
                    plans.setdefault(dtype, []).append((p, key, shape, start, numel))
                    align[dtype] = _ARENA_ALIGN // dtype.itemsize
                    ends[dtype] = start + -(-numel // align[dtype]) * align[dtype]
            if device.type == "cuda":
                torch.cuda.empty_cache()  # when states are allocated (the first step): see the docstring
            for dtype, plan in plans.items():
                arena = torch.zeros(ends[dtype], dtype=dtype, device=device)
                for p, key, shape, start, numel in plan:
                    self._arena_views.setdefault(id(p), {})[key] = arena[start : start + numel].view(shape)

    def _init_state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = {"step": 0}
        views = self._arena_views.pop(id(p), None)
        for key, dtype, shape in self._state_layout(p, group):
            if views is not None:
                state[key] = views[key]
            else:
                state[key] = torch.zeros(shape, dtype=dtype, device=p.device)
        if self.quantize_states:
            for name, signed, _root in self._state_specs(group):
                state[f"{name}_compander"] = self._fixed_compander(signed).as_tensor()
        self.state[p] = state
        return state

    def _state_of(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = self.state[p]
        return state if state else self._init_state(p, group)

    def _load_states(
        self, p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        out = {}
        for name, signed, root in self._state_specs(group):
            if self.quantize_states:
                comp = Compander.from_tensor(state[f"{name}_compander"])
                out[name] = dequantize_groups(
                    state[f"{name}_codes"],
                    state[f"{name}_scales"],
                    comp,
                    signed=signed,
                    scale_root=root,
                    shape=p.shape,
                )
            else:
                out[name] = state[name]
        return out

    def _store_states(
        self, state: dict[str, Any], states: dict[str, torch.Tensor], group: dict[str, Any], step: int
    ) -> None:
        if not self.quantize_states:
            return  # fp32 states were updated in place
        for name, signed, root in self._state_specs(group):
            value = states[name]
            if self.compander == "learned" and (step - 1) % self.learned_refit_every == 0:
                state[f"{name}_compander"] = fit_compander(value, signed=signed, scale_root=root).as_tensor()
            comp = Compander.from_tensor(state[f"{name}_compander"])
            codes, scales = quantize_groups(value, comp, signed=signed, scale_root=root)
            state[f"{name}_codes"].copy_(codes)
            state[f"{name}_scales"].copy_(scales)

    # ----------------------------------------------------------------- stepping
    def _use_triton(self, p: torch.Tensor) -> bool:
        """Whether ``p`` takes the fused kernel; decided once per (param, dtype, device), since
        gradient release asks for every param inside backward."""
        cache: dict[int, tuple[torch.Tensor, torch.dtype, torch.device, bool]] = self.__dict__.setdefault(
            "_triton_ok", {}
        )
        hit = cache.get(id(p))
        if hit is not None and hit[0] is p and hit[1] is p.dtype and hit[2] == p.device:
            return hit[3]
        if self.backend == "torch" or not (p.is_cuda or self.backend == "triton"):
            ok = False  # auto: CUDA only; forced triton on CPU means TRITON_INTERPRET=1 (checked at init)
        else:
            ok = triton_unsupported_reason(self, p) is None
        cache[id(p)] = (p, p.dtype, p.device, ok)
        return ok

    def _step_param(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        if p.grad is None:
            return
        if p.grad.is_sparse:
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        state = self._state_of(p, group)
        state["step"] += 1
        if self._use_triton(p):
            fused_step(self, p, state, group)
            return
        self._reference_step(p, state, group)

    def _reference_step(self, p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        """The readable path: reconstruct fp32 master and states, update, split and quantise back."""
        step = state["step"]
        code = state.get("correction")
        master = reconstruct_master(p.detach(), code) if p.dtype in _SIXTEEN_BIT else p.detach()
        assert p.grad is not None
        grad = p.grad.detach()
        grad = grad.float() if grad.dtype != torch.float32 else grad
        states = self._load_states(p, state, group)
        self._reference_update(master, grad, states, group, step)
        if p.dtype in _SIXTEEN_BIT:
            new_p, new_code = split_master(master, p.dtype, code.dtype if code is not None else None)
            p.detach().copy_(new_p)
            if code is not None and new_code is not None:
                code.copy_(new_code)
        self._store_states(state, states, group, step)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One optimizer step over every param that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._allocate_states(
            [
                (p, g)
                for g in self.param_groups
                for p in g["params"]
                if p.grad is not None and not self.state.get(p)
            ]
        )
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            triton_params = [p for p in params if self._use_triton(p)]
            if len(triton_params) > 1:
                states = []
                for p in triton_params:
                    state = self._state_of(p, group)
                    state["step"] += 1
                    states.append(state)
                fused_step_many(self, triton_params, states, group)
                done = {id(p) for p in triton_params}
                params = [p for p in params if id(p) not in done]
            self._step_params(params, group)
        return loss

    def _step_params(self, params: list[torch.Tensor], group: dict[str, Any]) -> None:
        """Step ``params`` of one group: Triton ones one by one, the rest through the batched
        reference path (:mod:`flashoptim.cpu_step`, bit-identical to :meth:`_reference_step`)."""
        batches: dict[Any, list[tuple[torch.Tensor, dict[str, Any]]]] = {}
        for p in params:
            assert p.grad is not None
            if p.grad.is_sparse or self._use_triton(p):
                self._step_param(p, group)
                continue
            state = self._state_of(p, group)
            state["step"] += 1
            key = batch_key(self, p, state, group)
            if key is None:
                self._reference_step(p, state, group)
            else:
                batches.setdefault(key, []).append((p, state))
        for batch in batches.values():
            if len(batch) == 1 and batch[0][0].numel() <= cpu_step.CHUNK_NUMEL:  # else: in chunks
                self._reference_step(*batch[0], group)
            else:
                reference_step_many(self, [p for p, _ in batch], [s for _, s in batch], group)

    @torch.no_grad()
    def step_param(self, p: torch.Tensor) -> None:
        """Step one parameter now (gradient release calls this from a backward hook)."""
        if id(p) not in self._group_index:
            self._group_index = {id(q): i for i, g in enumerate(self.param_groups) for q in g["params"]}
        if id(p) not in self._group_index:
            raise KeyError("step_param: this tensor is not a parameter of this optimizer")
        if not self.state.get(p) and id(p) not in self._arena_views:
            # gradient release: the first hook allocates the states of every trainable param at once
            self._allocate_states(
                [
                    (q, g)
                    for g in self.param_groups
                    for q in g["params"]
                    if q.requires_grad and not self.state.get(q)
                ]
            )
        self._step_param(p, self.param_groups[self._group_index[id(p)]])

    # ----------------------------------------------------------------- accounting
    def state_nbytes(self) -> int:
        """Bytes held by optimizer state tensors (corrections, codes, scales, compander params)."""
        return sum(
            v.numel() * v.element_size()
            for s in self.state.values()
            for v in s.values()
            if torch.is_tensor(v)
        )

    def state_dtypes(self) -> list[str]:
        """Sorted dtypes of the state tensors, e.g. ``['torch.float16', 'torch.int8', 'torch.uint8']``."""
        return sorted({str(v.dtype) for s in self.state.values() for v in s.values() if torch.is_tensor(v)})

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Compressed (as stored) when ``compress_state_dict``, else :meth:`uncompressed_state_dict`."""
        sd = super().state_dict()
        if self.compress_state_dict:
            return sd
        return self._uncompress(sd)

    def uncompressed_state_dict(self) -> dict[str, Any]:
        """fp32 moments under torch's names (``exp_avg``, ...) and the fp32 master as ``master_param``."""
        return self._uncompress(super().state_dict())

    def _params_by_saved_id(
        self, saved_groups: list[dict[str, Any]]
    ) -> dict[int, tuple[torch.Tensor, dict[str, Any]]]:
        out = {}
        for saved, group in zip(saved_groups, self.param_groups):
            for saved_id, p in zip(saved["params"], group["params"]):
                out[saved_id] = (p, group)
        return out

    def _uncompress(self, sd: dict[str, Any]) -> dict[str, Any]:
        by_id = self._params_by_saved_id(sd["param_groups"])
        new_state = {}
        for saved_id, state in sd["state"].items():
            p, group = by_id[saved_id]
            full: dict[str, Any] = {"step": torch.tensor(float(state["step"]))}
            for name, tensor in self._load_states(p, state, group).items():
                full[name] = tensor.detach().clone()
            if "correction" in state:
                full["master_param"] = reconstruct_master(p.detach(), state["correction"])
            new_state[saved_id] = full
        return {"state": new_state, "param_groups": sd["param_groups"]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a compressed or uncompressed state dict (also a ``torch.optim`` one of the same algorithm).

        Hazard: ``torch.optim.Optimizer.load_state_dict`` casts floating state to the param dtype,
        which would turn fp16 scales and fp32 moments into bf16; the states are re-imported here
        from the original tensors with their own dtypes.
        """
        saved_state = state_dict["state"]
        super().load_state_dict(state_dict)
        by_id = self._params_by_saved_id(state_dict["param_groups"])
        for saved_id in saved_state:
            self.state[by_id[saved_id][0]] = {}  # the torch-cast copies; replaced by _import_state
        self._allocate_states([by_id[saved_id] for saved_id in saved_state])
        for saved_id, saved in saved_state.items():
            p, group = by_id[saved_id]
            self.state[p] = self._import_state(p, group, saved)

    @torch.no_grad()
    def _import_state(self, p: torch.Tensor, group: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
        state = self._init_state(p, group)
        step = saved.get("step", 0)
        state["step"] = int(step.item() if isinstance(step, torch.Tensor) else step)
        if "correction" in state:
            if "correction" in saved and saved["correction"].dtype == state["correction"].dtype:
                # same format: copy the codes; re-splitting would move codes of ±Q (the reconstruction
                # of ±ULP/2 can round across the midpoint) and change the trajectory
                state["correction"].copy_(saved["correction"].reshape(p.shape))
                master = None
            elif "correction" in saved:
                master = reconstruct_master(p.detach(), saved["correction"].to(p.device))
            elif "master_param" in saved:
                master = saved["master_param"].to(p.device, torch.float32)
            else:
                master = p.detach().float()
            if master is not None:
                new_p, code = split_master(master, p.dtype, state["correction"].dtype)
                p.detach().copy_(new_p)
                assert code is not None
                state["correction"].copy_(code)
        for name, signed, root in self._state_specs(group):
            if f"{name}_codes" in saved:
                comp = Compander.from_tensor(saved[f"{name}_compander"])
                value = dequantize_groups(
                    saved[f"{name}_codes"].to(p.device),
                    saved[f"{name}_scales"].to(p.device),
                    comp,
                    signed=signed,
                    scale_root=root,
                    shape=p.shape,
                )
                if self.quantize_states and comp == Compander.from_tensor(state[f"{name}_compander"]):
                    state[f"{name}_codes"].copy_(saved[f"{name}_codes"])
                    state[f"{name}_scales"].copy_(saved[f"{name}_scales"])
                    continue
            elif name in saved:
                value = saved[name].to(p.device, torch.float32).reshape(p.shape)
            else:
                raise KeyError(
                    f"load_state_dict: state {name!r} missing for a param of shape {tuple(p.shape)}"
                )
            if self.quantize_states:
                if self.compander == "learned":
                    state[f"{name}_compander"] = fit_compander(
                        value, signed=signed, scale_root=root
                    ).as_tensor()
                comp = Compander.from_tensor(state[f"{name}_compander"])
                codes, scales = quantize_groups(value, comp, signed=signed, scale_root=root)
                state[f"{name}_codes"].copy_(codes)
                state[f"{name}_scales"].copy_(scales)
            else:
                state[name].copy_(value)
        return state

    # ----------------------------------------------------------------- fp32 master weights
    @torch.no_grad()
    def get_fp32_model_state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """``model.state_dict()`` with every floating parameter as its fp32 master value."""
        sd = model.state_dict()
        for name, p in model.named_parameters():
            if name not in sd or not p.is_floating_point():
                continue
            code = self.state[p].get("correction") if p in self.state else None
            sd[name] = reconstruct_master(p.detach(), code) if p.dtype in _SIXTEEN_BIT else p.detach().float()
        return sd

    @torch.no_grad()
    def set_fp32_model_state_dict(self, model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
        """Load fp32 master values: each param gets ``rne16(x)`` and its correction the remainder."""
        rest = dict(state_dict)
        index = {id(q): g for g in self.param_groups for q in g["params"]}
        for name, p in model.named_parameters():
            if name not in rest:
                raise KeyError(f"set_fp32_model_state_dict: {name!r} missing")
            x = rest.pop(name).to(p.device, torch.float32)
            if p.dtype not in _SIXTEEN_BIT:
                p.copy_(x)
                continue
            group = index.get(id(p))
            code_dtype = self._correction_dtype(p)
            new_p, code = split_master(x, p.dtype, code_dtype)
            p.copy_(new_p)
            if group is not None and code is not None:
                self._state_of(p, group)["correction"].copy_(code)
        model.load_state_dict(rest, strict=False)


def fit_compander(value: torch.Tensor, *, signed: bool, scale_root: int) -> Compander:
    """The candidate compander of least relative L2 reconstruction error on ``value`` (the live state).

    Candidates (:func:`flashoptim.companders.learned_candidates`) include every fixed compander, so
    the result is never worse than the best fixed one on the values it was scored on.  Values above
    ``_REFIT_SAMPLE`` are scored on a strided sample of whole groups.
    """
    flat = value.detach().reshape(-1).float()
    if flat.numel() > _REFIT_SAMPLE:
        groups = flat[: flat.numel() // 32 * 32].view(-1, 32)
        stride = max(1, groups.shape[0] // (_REFIT_SAMPLE // 32))
        flat = groups[::stride].reshape(-1)
    best, best_err = None, math.inf
    for cand in learned_candidates(signed=signed):
        codes, scales = quantize_groups(flat, cand, signed=signed, scale_root=scale_root)
        err = rel_l2_error(dequantize_groups(codes, scales, cand, signed=signed, scale_root=scale_root), flat)
        if err < best_err:
            best, best_err = cand, err
    assert best is not None
    return best
