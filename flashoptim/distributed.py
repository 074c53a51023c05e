"""FlashOptim under FSDP2 (``torch.distributed.fsdp.fully_shard``): sharded state as DTensors.

FSDP2 turns every parameter into a ``DTensor`` sharded on dim 0 of a device mesh; each rank owns a
plain local shard (``p._local_tensor``) and, after backward, a sharded gradient of the same local
shape. The Flash update is elementwise per parameter, so stepping the local shard with the local
gradient is the sharded update. :class:`ShardedOptimizer` does exactly that for any per-parameter
optimizer (a Flash optimizer, or one that does not know DTensor at all, such as bitsandbytes'
``AdamW8bit``): the inner optimizer is built on *shard proxies*, plain leaf tensors that alias the
local shards' storage, so it allocates state for the shard only and writes its updates straight
into the sharded parameters. No copy of parameters or gradients is made.

Savings: the optimizer state (corrections, 8-bit codes, scales) is ``1/world_size`` per rank, like
the parameters. Caveats:

* Quantisation groups (32 values for Flash states, 256 for bitsandbytes blocks) are formed over a
  rank's local shard. When every shard holds whole groups (rows whose width is a multiple of 32,
  e.g. hidden sizes that are multiples of 32, and dim-0 chunks that split between rows) the
  sharded state equals the unsharded one element for element; otherwise groups near a shard edge
  differ from an unsharded run's (the update is still exact per shard, only the rounding differs).
* ``state_dict()`` exposes the state as DTensors on the parameter's mesh, all ``Shard(0)``:
  tensors of the shard's size (``correction``, ``*_codes``, bitsandbytes ``state1/2``) take the
  parameter's own global shape, so a checkpoint reshards to another world size; Flash ``*_scales``
  take a row layout ``(rows, width/32)`` when that is exact, also reshardable; any other state
  tensor (bitsandbytes ``absmax``/``qmap``, a learned compander) is kept per rank as a
  ``(world_size, max_len)`` padded stack: loadable only at the same world size, and a different
  one fails loudly on the shape.
* ``load_state_dict`` needs the state to exist (:func:`materialise_state`): DCP loads into a template.
* Hazard: the proxies alias the shards' storage as it is when the optimizer is built (after
  ``fully_shard``). Anything that gives a sharded parameter new storage afterwards
  (``module.to(...)``, ``load_state_dict(assign=True)``) silently detaches the optimizer from the
  model; in-place loads (DCP, ``load_state_dict``) are fine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from flashoptim.master_weights import reconstruct_master
from flashoptim.quantization import GROUP_SIZE

__all__ = ["ShardedOptimizer", "enable_sharded_gradient_release", "full_fp32_master", "materialise_state"]

_SIXTEEN_BIT = (torch.bfloat16, torch.float16)


def _is_dtensor(t: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def _dt(t: torch.Tensor) -> Any:
    """``t`` typed as a DTensor (mesh, placements) for the type checker; callers checked it is one."""
    return t


def local_shard(t: torch.Tensor) -> torch.Tensor:
    """The plain local tensor of a DTensor (its storage, not a copy); a plain tensor itself."""
    return t._local_tensor if _is_dtensor(t) else t  # type: ignore[attr-defined]


def _chunk_sizes(n: int, world: int) -> list[int]:
    """Dim-0 sizes of ``torch.chunk(n, world)`` per rank (the split FSDP2 and DTensor use)."""
    size = -(-n // world) if n else 0
    return [max(0, min(size, n - i * size)) for i in range(world)]


def _walk(d: dict[str, Any], prefix: tuple[str, ...] = (), dtensors: bool = False) -> Any:
    """(key path, tensor) of every tensor (or only DTensors) in a nested dict of optimizer state."""
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _walk(v, (*prefix, k), dtensors)
        elif torch.is_tensor(v) and (not dtensors or _is_dtensor(v)):
            yield (*prefix, k), v


def _copy_dicts(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy_dicts(v) if isinstance(v, dict) else v for k, v in d.items()}


def _get(d: dict[str, Any], path: tuple[str, ...]) -> Any:
    for k in path:
        d = d[k]
    return d


def _set(d: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


class ShardedOptimizer:
    """Steps an optimizer built on the local shards of (DTensor) parameters.

    ``build(groups)`` receives the param groups with every parameter replaced by its shard proxy and
    returns the optimizer (``lambda g: FlashAdamW(g, lr=...)``). Plain (unsharded) parameters are
    passed through unchanged. ``param_groups`` and ``state`` are the inner optimizer's (so a
    learning-rate schedule and a state audit see the shard proxies, i.e. per-rank figures).
    """

    def __init__(self, param_groups: Iterable[dict[str, Any]], build: Callable[[list[dict[str, Any]]], Any]):
        groups = [dict(g) for g in param_groups]
        self.params: list[torch.Tensor] = []
        self._proxy: dict[int, torch.Tensor] = {}
        inner_groups = []
        for g in groups:
            proxies = []
            for p in g["params"]:
                proxy = p
                if _is_dtensor(p):
                    # A new leaf on the local shard's storage: the inner optimizer's in-place updates
                    # land in the sharded parameter (FSDP2 keeps that storage for the run).
                    proxy = local_shard(p).detach().requires_grad_(p.requires_grad)
                self.params.append(p)
                self._proxy[id(p)] = proxy
                proxies.append(proxy)
            inner_groups.append({**g, "params": proxies})
        self.inner = build(inner_groups)
        self.mesh: Any = next((_dt(p).device_mesh for p in self.params if _is_dtensor(p)), None)

    # ------------------------------------------------------------------ the torch.optim surface
    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.inner.param_groups  # type: ignore[no-any-return]

    @property
    def state(self) -> Any:
        return self.inner.state

    def proxy(self, p: torch.Tensor) -> torch.Tensor:
        return self._proxy[id(p)]

    def _attach_grad(self, p: torch.Tensor) -> torch.Tensor:
        proxy = self._proxy[id(p)]
        if proxy is not p:
            proxy.grad = None if p.grad is None else local_shard(p.grad)
        return proxy

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:
        if closure is not None:
            raise ValueError(
                "ShardedOptimizer.step: a closure is not supported (FSDP2 runs backward outside)"
            )
        for p in self.params:
            self._attach_grad(p)
        try:
            return self.inner.step()
        finally:
            for p in self.params:
                proxy = self._proxy[id(p)]
                if proxy is not p:
                    proxy.grad = None  # the sharded param keeps its own grad until zero_grad

    @torch.no_grad()
    def step_param(self, p: torch.Tensor) -> None:
        """Step one parameter now (gradient release, from FSDP2's post-reduce hook)."""
        proxy = self._attach_grad(p)
        try:
            self.inner.step_param(proxy)
        finally:
            if proxy is not p:
                proxy.grad = None

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()
            proxy = self._proxy[id(p)]
            if proxy is not p:
                proxy.grad = None

    # ------------------------------------------------------------------ sharded state_dict
    def _state_sizes(self, state: dict[int, Any]) -> list[dict[tuple[int, tuple[str, ...]], tuple[int, int]]]:
        """Per rank: (param index, key path) -> (state numel, local param numel), from every rank."""
        import torch.distributed as dist

        mine = {
            (i, path): (v.numel(), self._proxy[id(self.params[i])].numel())
            for i, st in state.items()
            for path, v in _walk(st)
        }
        group = self.mesh.get_group()
        out: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(out, mine, group=group)  # collective: every rank calls state_dict
        return out

    def _layout(self, p: torch.Tensor, key: str, sizes: list[tuple[int, int]]) -> tuple[str, tuple[int, ...]]:
        """("param" | "rows" | "flat" | "stack", global shape); identical on every rank."""
        numels = [s for s, _ in sizes]
        if all(s == n for s, n in sizes):
            return "param", tuple(p.shape)
        if key.endswith("_scales"):
            width = int(torch.Size(p.shape[1:]).numel()) if p.dim() >= 2 else 1
            shape: tuple[int, ...] = (
                (p.shape[0], width // GROUP_SIZE)
                if p.dim() >= 2 and width % GROUP_SIZE == 0
                else (sum(numels),)
            )
            if p.dim() == 1 or width % GROUP_SIZE == 0:
                per_row = shape[1] if len(shape) == 2 else 1
                if _chunk_sizes(shape[0], len(sizes)) == [s // per_row for s in numels] and all(
                    s % per_row == 0 for s in numels
                ):
                    return ("rows" if len(shape) == 2 else "flat"), shape
        return "stack", (len(sizes), max(numels))

    def _to_dtensor(self, p: torch.Tensor, key: str, v: torch.Tensor, sizes: list[tuple[int, int]]) -> Any:
        from torch.distributed.tensor import DTensor, Shard

        layout, shape = self._layout(p, key, sizes)
        if layout == "param":
            local = v.reshape(self._proxy[id(p)].shape)
            return DTensor.from_local(
                local, self.mesh, _dt(p).placements, run_check=False, shape=p.shape, stride=p.stride()
            )
        if layout == "stack":
            local = v.new_zeros((1, shape[1]))
            local[0, : v.numel()] = v.reshape(-1)
        else:
            local = v.reshape(-1, *shape[1:])
        stride = (shape[1], 1) if len(shape) == 2 else (1,)
        return DTensor.from_local(
            local, self.mesh, (Shard(0),), run_check=False, shape=torch.Size(shape), stride=stride
        )

    def state_dict(self) -> dict[str, Any]:
        """The inner optimizer's state dict with every state tensor (nested dicts included, e.g.
        bitsandbytes' ``__bnb_optimizer_quant_state__``) as a DTensor (module docstring)."""
        sd = self.inner.state_dict()
        if self.mesh is None:
            return sd  # type: ignore[no-any-return]
        # Hazard: torch's state_dict() hands out the live per-parameter dicts; copy, never mutate.
        state = {i: _copy_dicts(st) for i, st in sd["state"].items() if _is_dtensor(self.params[i])}
        sizes = self._state_sizes(state)  # the layout is decided from every rank's sizes: same on all
        for i, st in state.items():
            p = self.params[i]
            for path, v in list(_walk(st)):
                converted = self._to_dtensor(p, path[-1], v, [r[(i, path)] for r in sizes])
                _set(st, path, converted)
        return {**sd, "state": {**sd["state"], **state}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` (its DTensors possibly filled in place by DCP)."""
        merged: dict[int, dict[str, Any]] = {}
        # Hazard: DCP's in-place load fills tensors under the template's int keys but puts loaded
        # non-tensor values (Flash's int ``step``) under *string* keys ("0": {"step": 12}) and
        # leaves the template's stale value under the int key. Merge, the loaded value winning.
        for i, st in sorted(state_dict["state"].items(), key=lambda kv: isinstance(kv[0], str)):
            _merge(merged.setdefault(int(i), {}), st)
        template = self.inner.state_dict()["state"]  # the live state's shapes (materialise_state)
        for i, st in merged.items():
            for path, v in list(_walk(st, dtensors=True)):
                try:
                    target = _get(template[i], path)
                except KeyError:
                    raise RuntimeError(
                        "ShardedOptimizer.load_state_dict: no live state to load into; call "
                        "materialise_state() first (DCP loads sharded state into a template)"
                    ) from None
                _set(st, path, v.to_local().reshape(-1)[: target.numel()].reshape(target.shape))
        self.inner.load_state_dict({"state": merged, "param_groups": state_dict["param_groups"]})

    # ------------------------------------------------------------------ accounting helpers
    def state_nbytes(self) -> int:
        return sum(
            v.numel() * v.element_size()
            for s in self.inner.state.values()
            for v in s.values()
            if torch.is_tensor(v)
        )


@torch.no_grad()
def materialise_state(optimizer: Any, params: Iterable[torch.Tensor]) -> None:
    """Create the optimizer state by one step with zero gradients at learning rate 0.

    With lr 0 an Adam-type step leaves every parameter unchanged (decoupled decay multiplies by
    ``1 - 0``, the update is scaled by 0) and sets the moments to 0; the values are then overwritten
    by the checkpoint being loaded. ``torch.distributed.checkpoint.state_dict`` does the same.
    """
    params = list(params)
    saved = [g["lr"] for g in optimizer.param_groups]
    for p in params:
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    for g in optimizer.param_groups:
        g["lr"] = 0.0
    try:
        optimizer.step()
    finally:
        for g, lr in zip(optimizer.param_groups, saved):
            g["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        for p in params:
            p.grad = None


class _ReleaseHandle:
    def __init__(self, hooks: list[Any]) -> None:
        self._hooks = hooks

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []


def enable_sharded_gradient_release(model: nn.Module, optimizer: ShardedOptimizer) -> _ReleaseHandle:
    """Step each sharded parameter as soon as FSDP2 has written its reduce-scattered gradient.

    FSDP2 (torch 2.11, ``_fsdp_collectives.foreach_reduce``) assigns ``sharded_param.grad`` itself
    (not through autograd) and then calls the sharded parameter's post-accumulate-grad hooks, once
    per reduce-scatter, i.e. per FSDP unit in backward order. So the hook here fires with the full
    reduced shard gradient; it steps that shard and frees the gradient. On CUDA it runs on FSDP2's
    reduce-scatter stream, after the reduce.
    """
    owned = {id(p) for p in optimizer.params}

    def hook(p: torch.Tensor) -> None:
        optimizer.step_param(p)
        p.grad = None

    hooks = [
        p.register_post_accumulate_grad_hook(hook)  # type: ignore[no-untyped-call]
        for p in model.parameters()
        if p.requires_grad and id(p) in owned
    ]
    if not hooks:
        raise ValueError(
            "enable_sharded_gradient_release: no parameter of the model is held by the optimizer"
        )
    return _ReleaseHandle(hooks)


@torch.no_grad()
def full_fp32_master(model: nn.Module, optimizer: ShardedOptimizer) -> dict[str, torch.Tensor]:
    """Every parameter's fp32 master value, gathered to a full tensor on every rank (a collective).

    16-bit shards are reconstructed from the shard and its correction
    (:func:`flashoptim.master_weights.reconstruct_master`); fp32 shards are their own master.
    """
    from torch.distributed.tensor import DTensor

    out = {}
    for name, p in model.named_parameters():
        proxy = optimizer.proxy(p) if id(p) in optimizer._proxy else local_shard(p)
        code = optimizer.state.get(proxy, {}).get("correction")
        shard = proxy.detach()
        local = reconstruct_master(shard, code) if shard.dtype in _SIXTEEN_BIT else shard.float()
        if _is_dtensor(p):
            full = DTensor.from_local(
                local,
                _dt(p).device_mesh,
                _dt(p).placements,
                run_check=False,
                shape=p.shape,
                stride=p.stride(),
            ).full_tensor()
        else:
            full = local
        out[name] = full
    return out
