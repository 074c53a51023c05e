"""Device memory: peaks, NVML process memory, the breakdown, an optional allocator snapshot.

On CPU nothing here is measurable: every figure is ``None`` (never CUDA zeros) and
``measurable`` is False. On CUDA the peak is ``torch.cuda.max_memory_allocated`` since the
counters were reset after model build (the model's own memory is still allocated, so it counts);
the breakdown is taken on one step after the optimizer state exists (``harness.measure_step``):

* params_bytes: sum of parameter tensors (the arm's dtype);
* optimizer_state_bytes: sum of the tensors in ``optimizer.state`` (see optim_arms.audit_state);
* grads_bytes: gradients alive when backward ends (about 0 with gradient release);
* activations_bytes: peak during that step's forward+backward minus what was allocated before
  the forward, minus grads_bytes (so it includes autograd temporaries and recomputation buffers);
* other_bytes: peak - the four above (allocator slack, optimizer step temporaries, CUDA context
  is not in "allocated" at all).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

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
                import pynvml

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
        import os

        import pynvml

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
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def breakdown(
    *,
    measurable: bool,
    params_bytes: int,
    grads_bytes: int | None,
    state_bytes: int,
    before_fwd_bytes: int | None,
    fwd_bwd_peak_bytes: int | None,
    peak_bytes: int | None,
) -> dict[str, int | None]:
    keys = ("params_bytes", "grads_bytes", "optimizer_state_bytes", "activations_bytes", "other_bytes")
    if not measurable or before_fwd_bytes is None or fwd_bwd_peak_bytes is None or peak_bytes is None:
        return dict.fromkeys(keys)
    grads = grads_bytes or 0
    activations = max(fwd_bwd_peak_bytes - before_fwd_bytes - grads, 0)
    other = peak_bytes - params_bytes - grads - state_bytes - activations
    return dict(zip(keys, (params_bytes, grads, state_bytes, activations, other)))


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
            from torch.cuda._memory_viz import trace_plot

            snap = torch.cuda.memory._snapshot()
            html = trace_plot(snap)
            from common.atomic import write_text

            return write_text(out, html)
        except Exception as exc:  # a diagnostics extra must never fail the run
            log.warning("memory snapshot not written: %s", exc)
            return None
        finally:
            torch.cuda.memory._record_memory_history(enabled=None)
