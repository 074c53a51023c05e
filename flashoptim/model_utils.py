"""Model helpers: ``cast_model`` (bf16 weights, norm layers kept fp32) and gradient release.

Gradient release.  Savings: a parameter is stepped the moment its gradient is complete during
backward and the gradient is freed at once, so at most a few gradients are alive at a time; AdamW
24-bit drops from 7.125 to 5.125 resident bytes/param.  Caveats: no gradient accumulation over
micro-batches (each backward steps the optimizer), no gradient clipping by global norm (the norm is
not known until backward ends), and the closure form of ``step`` does not apply; ``optimizer.step()``
and ``zero_grad()`` stay callable and do nothing to released params.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["GradientReleaseHandle", "cast_model", "enable_gradient_release"]

# Layers whose parameters stay fp32: their weights are few and their statistics are precision-sensitive.
_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


# Hazard (H200, 2026-12-02): casting a model built in fp32 on the GPU frees the fp32 storage into the
# caching allocator, which keeps it reserved (25.35 GiB reserved for 12.55 GiB of bf16 weights at 7B;
# torch.cuda.empty_cache() then returned 12.55 of it).  Later per-tensor allocations (gradients, a
# per-tensor optimizer state) reuse those blocks; one large allocation (the state arena of
# flashoptim.optimizer) cannot, and gradient release then reserved 45.2 GiB at 7B for 33.5
# allocated.  Releasing each large parameter's old storage right after its cast returns it at once,
# and no later cast can carve its copy out of it (which would keep that segment from being released).
# Parameters under 1 MiB live in shared small-block segments; releasing after them would only cost time.
_RELEASE_MIN_BYTES = 1 << 20


def _is_norm(module: nn.Module) -> bool:
    # Model zoos define their own RMSNorm classes (LlamaRMSNorm, ...): match by name as well.
    return isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()


def _output_to_input_dtype(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    """Forward hook of a norm kept in fp32: hand the next (bf16) layer its input dtype back.

    Hazard: without it, ``fp32 weight × bf16 activation`` promotes to fp32 and the next bf16
    ``Linear`` fails with a dtype mismatch (seen with transformers' LlamaRMSNorm).
    """
    if torch.is_tensor(output) and args and torch.is_tensor(args[0]) and args[0].is_floating_point():
        return output.to(args[0].dtype)
    return output


def cast_model(
    model: nn.Module,
    dtype: torch.dtype = torch.bfloat16,
    *,
    keep_norms_fp32: bool = True,
    full_precision_keywords: Iterable[str] = (),
    fp32_buffer_keywords: Iterable[str] = ("inv_freq",),
) -> nn.Module:
    """Cast floating parameters and buffers of ``model`` to ``dtype`` in place and return it.

    Parameters of normalisation layers (any ``nn`` norm, and any module whose class name contains
    "norm") stay fp32 when ``keep_norms_fp32``, and such a layer gets a forward hook that casts its
    output back to its input's dtype (it computes in fp32, the next layer receives bf16); so do parameters whose qualified name contains one
    of ``full_precision_keywords``.  Floating buffers follow their module, except those whose name
    contains one of ``fp32_buffer_keywords``: rotary-embedding frequencies (``inv_freq``) rounded to
    bf16 are off by up to 0.4%, which at position 2048 shifts a rotation angle by radians.  Integer
    buffers are left alone.  On CUDA, after casting each parameter of 1 MiB or more the function calls
    ``torch.cuda.empty_cache()``, so the old storage goes back to the driver instead of staying
    reserved in the allocator's cache (``_RELEASE_MIN_BYTES`` says why).
    """
    if dtype not in (torch.bfloat16, torch.float16, torch.float32):
        raise ValueError(f"cast_model: dtype={dtype} is invalid; allowed: bfloat16, float16, float32")
    keywords = tuple(full_precision_keywords)
    buffer_keywords = tuple(fp32_buffer_keywords)
    for mod_name, module in model.named_modules():
        keep = keep_norms_fp32 and _is_norm(module)
        has_params = any(True for _ in module.parameters(recurse=False))
        if (
            keep
            and has_params
            and dtype != torch.float32
            and not getattr(module, "_flashoptim_cast_hook", False)
        ):
            module.register_forward_hook(_output_to_input_dtype)
            module._flashoptim_cast_hook = True
        for name, param in module.named_parameters(recurse=False):
            qual = f"{mod_name}.{name}" if mod_name else name
            target = torch.float32 if keep or any(k in qual for k in keywords) else dtype
            if param.is_floating_point() and param.dtype != target:
                old_bytes = param.numel() * param.element_size()
                param.data = param.data.to(target)
                if param.is_cuda and old_bytes >= _RELEASE_MIN_BYTES:
                    # Return the old storage's segment to the driver before the next cast can
                    # carve its copy out of it (see _RELEASE_MIN_BYTES).
                    torch.cuda.empty_cache()
        for name, buf in module.named_buffers(recurse=False):
            if buf.is_floating_point() and not keep and not any(k in name for k in buffer_keywords):
                module._buffers[name] = buf.to(dtype)  # keeps the buffer's persistence flag
    return model


class GradientReleaseHandle:
    """Returned by :func:`enable_gradient_release`; ``remove()`` restores ordinary stepping."""

    def __init__(self, hooks: list[Any]) -> None:
        self._hooks = hooks

    @property
    def active(self) -> bool:
        return bool(self._hooks)

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def __enter__(self) -> GradientReleaseHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def enable_gradient_release(model: nn.Module, optimizer: Any) -> GradientReleaseHandle:
    """Step each parameter of ``optimizer`` in a post-accumulate-grad hook, then free its gradient.

    ``optimizer`` must offer ``step_param(p)`` (every Flash optimizer does).  Only parameters of
    ``model`` that the optimizer holds and that require grad are hooked.
    """
    if not hasattr(optimizer, "step_param"):
        raise ValueError(f"enable_gradient_release needs a Flash optimizer, got {type(optimizer).__name__}")
    owned = {id(p) for g in optimizer.param_groups for p in g["params"]}

    def hook(p: torch.Tensor) -> None:
        optimizer.step_param(p)
        p.grad = None

    hooks = []
    seen: set[int] = set()
    for p in model.parameters():
        if p.requires_grad and id(p) in owned and id(p) not in seen:
            seen.add(id(p))
            hooks.append(p.register_post_accumulate_grad_hook(hook))  # type: ignore[no-untyped-call]
    if not hooks:
        raise ValueError("enable_gradient_release: no parameter of the model is held by the optimizer")
    return GradientReleaseHandle(hooks)
