"""Device memory: peaks, NVML process memory, the breakdown, an optional allocator snapshot.

On CPU nothing here is measurable: every figure is ``None`` (never CUDA zeros) and
``measurable`` is False. On CUDA the peak is ``torch.cuda.max_memory_allocated`` since the
counters were reset after model build (the model's own memory is still allocated, so it counts).

The breakdown (:func:`step_breakdown`) splits the peak of one step taken after the optimizer state
exists (``harness.measure_step``) into what was resident *at that peak*. :class:`StepPhases` cuts
the step into phases at every gradient's arrival (a tensor hook, before accumulation) and after its
accumulation (a post-accumulate hook, which runs after gradient release's optimizer step), and
records each phase's allocator peak, the memory allocated when it began and the gradient bytes
alive in it. The peak phase then gives, with ``B`` = allocated when the step began,
``P`` = the phase's peak, ``S`` = allocated when the phase began, ``G`` = gradients alive:

* params_bytes: the parameter tensors (the arm's dtype);
* optimizer_state_bytes: the tensors in ``optimizer.state`` (see optim_arms.audit_state);
* grads_bytes = ``G``: the gradients alive at the peak. Without gradient release, all gradients
  that exist by then; with it, only the one(s) being stepped (each is freed after its step), never
  ``numel x 2`` bytes;
* activations_bytes: in a compute phase ``P - B - G`` (saved tensors, recomputation buffers and
  autograd temporaries); in an optimizer-step phase ``S - B - G`` (what the step found resident);
* other_bytes = ``peak - the four above``: ``B - params - state`` (buffers, the batch, ...) plus,
  in an optimizer-step phase, the step's own temporaries ``P - S``.

The five parts add up to ``step_peak_bytes`` (the measured step's peak, also recorded with
``peak_phase``), which can be below the run's ``peak_mem_allocated_bytes``: that one also covers
step 1 (the state being created) and evaluation. The CUDA context is in none of them (it is not
"allocated"; NVML's process figure includes it).

Hazard: a gradient that arrives inside a compute phase may be allocated after that phase's peak;
``G`` counts it (it is alive at the phase's end), an overcount of at most that one gradient.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from common.atomic import write_text

log = logging.getLogger(__name__)


class MemoryMeter:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.measurable = device.type == "cuda"
        self._peak_alloc = 0
        self._peak_reserved = 0
        self._peak_nvml: int | None = None
        self._nvml_handle: Any = None
        if self.measurable:
            try:
                import pynvml  # optional: NVIDIA's library, present only where there is a driver

                pynvml.nvmlInit()
                self._nvml_handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
            except Exception as exc:  # NVML absent in some containers: process memory then unknown
                log.warning("NVML unavailable (%s): peak_mem_nvml_process_bytes will be null", exc)

    # -- peaks --------------------------------------------------------------------------------
    def reset(self) -> None:
        if self.measurable:
            torch.cuda.synchronize(self.device)
            self._fold_peaks()
            torch.cuda.reset_peak_memory_stats(self.device)

    def reset_all(self) -> None:
        """Forget everything before now (after model build, before the first step)."""
        if self.measurable:
            torch.cuda.synchronize(self.device)
            # Building in fp32 then casting (bf16 arms) leaves freed blocks cached: release them,
            # or peak_reserved would carry the build's footprint into every step.
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._peak_alloc = self._peak_reserved = 0

    def _fold_peaks(self) -> None:
        self._peak_alloc = max(self._peak_alloc, torch.cuda.max_memory_allocated(self.device))
        self._peak_reserved = max(self._peak_reserved, torch.cuda.max_memory_reserved(self.device))

    def current(self) -> tuple[int | None, int | None]:
        """(allocated, reserved) bytes now: host-side counters, no device sync."""
        if not self.measurable:
            return None, None
        return torch.cuda.memory_allocated(self.device), torch.cuda.memory_reserved(self.device)

    def peaks(self) -> tuple[int | None, int | None]:
        if not self.measurable:
            return None, None
        self._fold_peaks()
        return self._peak_alloc, self._peak_reserved

    def sample_nvml(self) -> int | None:
        """Device memory NVML attributes to this process (includes the CUDA context), bytes."""
        if self._nvml_handle is None:
            return None
        import pynvml  # optional: NVIDIA's library, present only where there is a driver

        try:
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(self._nvml_handle)
        except Exception:
            return self._peak_nvml
        mine = [p.usedGpuMemory for p in procs if p.pid == os.getpid() and p.usedGpuMemory is not None]
        if mine:
            self._peak_nvml = max(self._peak_nvml or 0, int(sum(mine)))
        return self._peak_nvml

    def restore_peaks(self, alloc: int | None, reserved: int | None, nvml: int | None) -> None:
        """Carry peaks over a resume (the checkpoint stores them)."""
        self._peak_alloc = max(self._peak_alloc, alloc or 0)
        self._peak_reserved = max(self._peak_reserved, reserved or 0)
        if nvml is not None:
            self._peak_nvml = max(self._peak_nvml or 0, nvml)

    def peak_nvml(self) -> int | None:
        return self._peak_nvml


def tensor_bytes(tensors: Any) -> int:
    """Bytes held by this process: a DTensor (FSDP2 parameter or gradient) counts its local shard."""
    local = (getattr(t, "_local_tensor", t) for t in tensors if t is not None)
    return sum(t.numel() * t.element_size() for t in local)


BREAKDOWN_KEYS = ("params_bytes", "grads_bytes", "optimizer_state_bytes", "activations_bytes", "other_bytes")


@dataclass
class Phase:
    """One stretch of the measured step between gradient hooks (bytes)."""

    kind: str  # "compute" (forward/backward kernels) | "optimizer_step" (release hook or optimizer.step)
    peak_bytes: int  # allocator peak within the phase
    start_bytes: int  # allocated when the phase began
    grads_bytes: int  # gradient bytes alive at the phase's peak (module docstring: the hazard)


def step_breakdown(
    *, params_bytes: int, state_bytes: int, before_bytes: int, phases: list[Phase]
) -> dict[str, Any]:
    """Split the peak of the step into the five parts (module docstring); they sum to
    ``step_peak_bytes``. activations_bytes is floored at 0 (other_bytes takes the remainder)."""
    top = max(phases, key=lambda ph: ph.peak_bytes)
    grads = top.grads_bytes
    resident = top.start_bytes if top.kind == "optimizer_step" else top.peak_bytes
    activations = max(resident - before_bytes - grads, 0)
    other = top.peak_bytes - params_bytes - grads - state_bytes - activations
    parts = dict(zip(BREAKDOWN_KEYS, (params_bytes, grads, state_bytes, activations, other)))
    return {**parts, "step_peak_bytes": top.peak_bytes, "peak_phase": top.kind}


def unmeasured_breakdown() -> dict[str, Any]:
    return dict.fromkeys((*BREAKDOWN_KEYS, "step_peak_bytes", "peak_phase"))


class CudaCounters:
    """The allocator's host-side counters (no device sync): allocated now, peak since reset."""

    def __init__(self, meter: MemoryMeter) -> None:
        self.meter = meter

    def allocated(self) -> int:
        return torch.cuda.memory_allocated(self.meter.device)

    def take_peak(self) -> int:
        """Peak since the last call, then reset (the meter keeps the run's peaks)."""
        peak = torch.cuda.max_memory_allocated(self.meter.device)
        self.meter._fold_peaks()
        torch.cuda.reset_peak_memory_stats(self.meter.device)
        return peak


class StepPhases:
    """Record the phases of one step (module docstring). ``start()`` right after ``meter.reset()``
    at the step's start; ``optimizer_step()`` around clipping + ``optimizer.step()`` (arms without
    gradient release); ``finish()`` after the step returns the phases and removes the hooks.

    ``counters`` needs ``allocated()`` and ``take_peak()`` (CUDA: :class:`CudaCounters`)."""

    def __init__(self, model: torch.nn.Module, counters: Any, *, release: bool) -> None:
        self.model = model
        self.counters = counters
        self.release = release
        self.phases: list[Phase] = []
        self.before_bytes = 0
        self._params: list[torch.Tensor] = []
        self._live: dict[int, int] = {}  # id(param) -> bytes of its .grad
        self._start_bytes = 0
        self._incoming = 0  # bytes of the gradient being accumulated
        self._handles: list[Any] = []

    def _close(self, kind: str, grads_bytes: int) -> None:
        peak = self.counters.take_peak()
        self.phases.append(Phase(kind, peak, self._start_bytes, grads_bytes))
        self._start_bytes = self.counters.allocated()

    def _live_bytes(self) -> int:
        return sum(self._live.values())

    def _refresh_live(self) -> None:
        """Read every .grad (hooks miss gradients set outside autograd, e.g. FSDP2's sharded ones)."""
        self._live = {id(p): tensor_bytes([p.grad]) for p in self._params}

    def start(self) -> None:
        self.counters.take_peak()
        self.before_bytes = self._start_bytes = self.counters.allocated()
        self._params = list({id(p): p for p in self.model.parameters() if p.requires_grad}.values())
        self._refresh_live()
        for p in self._params:
            # Registered after gradient release's hook, so the post hook runs after its step.
            self._handles.append(p.register_hook(self._arrived))
            self._handles.append(p.register_post_accumulate_grad_hook(self._accumulated))

    def _arrived(self, grad: torch.Tensor) -> None:
        # The incoming gradient is alive now, before accumulation (a new .grad or a summand).
        self._incoming = tensor_bytes([grad])
        self._close("compute", self._live_bytes() + self._incoming)

    def _accumulated(self, p: torch.Tensor) -> None:
        # With release, this phase is the optimizer step of p; its gradient was alive throughout.
        kind = "optimizer_step" if self.release else "compute"
        self._close(kind, self._live_bytes() + self._incoming)
        self._live[id(p)] = tensor_bytes([p.grad])

    @contextlib.contextmanager
    def optimizer_step(self) -> Iterator[None]:
        self._refresh_live()
        self._close("compute", self._live_bytes())
        yield
        self._close("optimizer_step", self._live_bytes())
        self._refresh_live()

    def finish(self) -> list[Phase]:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._close("compute", self._live_bytes())
        return self.phases


class Snapshot:
    """One step of allocator history, written as an interactive HTML page (CUDA only)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and torch.cuda.is_available()

    def start(self) -> None:
        if self.enabled:
            torch.cuda.memory._record_memory_history(max_entries=200_000)

    def stop(self, out: Path) -> Path | None:
        if not self.enabled:
            return None
        try:
            from torch.cuda._memory_viz import trace_plot  # private torch module: only for a snapshot

            snap = torch.cuda.memory._snapshot()
            html = trace_plot(snap)

            return write_text(out, html)
        except Exception as exc:  # a diagnostics extra must never fail the run
            log.warning("memory snapshot not written: %s", exc)
            return None
        finally:
            torch.cuda.memory._record_memory_history(enabled=None)


class StepProbe:
    """The memory measurement of one training step, as a context manager around it.

    Inactive (``enabled`` False) it does nothing. Active: on entry the allocator history starts
    (``snapshot``), the peak counters are reset and, where the breakdown can be measured
    (``breakdown``: CUDA, one process; under FSDP2 the gradient hooks never fire on sharded params,
    so the parts would be wrong), the step's phases are recorded (:class:`StepPhases`). The loop
    wraps clipping and ``optimizer.step()`` in :meth:`optimizer_step`. On a normal exit the step's
    :func:`step_breakdown` (or :func:`unmeasured_breakdown`) is in :attr:`breakdown`, the snapshot
    page is written to ``snapshot_path`` and NVML is sampled; an exception passes through untouched.
    ``state_bytes`` is called at exit (the optimizer state exists only after the first step).
    """

    def __init__(
        self,
        meter: MemoryMeter,
        model: torch.nn.Module,
        *,
        enabled: bool,
        snapshot: bool,
        breakdown: bool,
        release: bool,
        state_bytes: Any,
        snapshot_path: Path,
    ) -> None:
        self.meter = meter
        self.model = model
        self.enabled = enabled
        self.snap = Snapshot(enabled and snapshot)
        self.phases: StepPhases | None = None
        self._with_breakdown = enabled and breakdown and meter.measurable
        self.release = release
        self.state_bytes = state_bytes
        self.snapshot_path = snapshot_path
        self.breakdown: dict[str, Any] | None = None

    def __enter__(self) -> StepProbe:
        if self.enabled:
            self.snap.start()
            self.meter.reset()
            if self._with_breakdown:
                counters = CudaCounters(self.meter)
                self.phases = StepPhases(self.model, counters, release=self.release)
                self.phases.start()
        return self

    def optimizer_step(self) -> contextlib.AbstractContextManager[None]:
        return self.phases.optimizer_step() if self.phases is not None else contextlib.nullcontext()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self.enabled or exc_type is not None:
            return
        self.breakdown = (
            step_breakdown(
                params_bytes=tensor_bytes(self.model.parameters()),
                state_bytes=self.state_bytes(),
                before_bytes=self.phases.before_bytes,
                phases=self.phases.finish(),
            )
            if self.phases is not None
            else unmeasured_breakdown()
        )
        self.snap.stop(self.snapshot_path)
        self.meter.sample_nvml()
