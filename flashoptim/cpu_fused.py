"""The FlashAdamW CPU step as one compiled loop per parameter (``cpu_adam.c``), built with the system C compiler.

The torch path (:mod:`flashoptim.cpu_step`) runs ~75 elementwise passes over every value; torch
AdamW runs ~8. A loop that reconstructs, decodes, updates, splits and encodes each value while it is
in registers reads and writes each byte of state once (flashoptim/BENCHMARKS.md, "CPU path").

Built on first use with ``cc -O3 -march=native -ffp-contract=off`` into
``$XDG_CACHE_HOME/flashoptim/`` (default ``~/.cache``), named by a hash of the source, the flags,
the compiler and the CPU's feature flags, so a cache shared by machines of different CPUs never
loads a build that would not run; written to a temporary name and renamed, so concurrent first
runs do not read a half-written library. Without a compiler (or with ``FLASHOPTIM_CPU_FUSED=0``)
the torch path runs, with the same bits.

Covers what the study's FlashOptim arm uses: FlashAdamW (decoupled decay), 8-bit states with the
``paper`` or ``linear`` companders, bf16 params with an int8 or int16 correction or none, and fp32
params; contiguous CPU tensors. Everything else takes the torch path.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

from flashoptim.companders import Compander

log = logging.getLogger(__name__)

__all__ = ["eligible", "fused_adamw_step", "library", "supported"]

_SOURCE = Path(__file__).with_name("cpu_adam.c")
_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC"]
_CORR = {None: 0, torch.int8: 1, torch.int16: 2}
_LEVELS = {torch.int8: 127.0, torch.int16: 32767.0}
_VML_MODE = 0x2 | 0x140000 | 0x100  # VML_HA | VML_FTZDAZ_OFF | VML_ERRMODE_IGNORE (cpu_adam.c: VML_MODE)


class _Args(ctypes.Structure):
    _fields_ = [
        ("n", ctypes.c_int64),
        ("param_bf16", ctypes.c_int),
        ("corr", ctypes.c_int),
        ("m_softsign", ctypes.c_int),
        ("m_a", ctypes.c_float),
        ("v_sqrt", ctypes.c_int),
        ("decay", ctypes.c_float),
        ("w1", ctypes.c_float),
        ("beta2", ctypes.c_float),
        ("c2", ctypes.c_float),
        ("bc2", ctypes.c_float),
        ("eps", ctypes.c_float),
        ("step_size", ctypes.c_float),
        ("k_rec", ctypes.c_float),
    ]


_lib: Any = None
_sqrt: int | None = None
_tried = False


def _cpu_flags() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    return ""


def _build() -> Any:
    if os.environ.get("FLASHOPTIM_CPU_FUSED", "1") == "0":
        return None
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        log.info("flashoptim: no C compiler found; the CPU step takes the torch path")
        return None
    source = _SOURCE.read_bytes()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256(
        b"\0".join([source, " ".join(_FLAGS).encode(), version.encode(), _cpu_flags().encode()])
    )
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flashoptim"
    lib_path = cache / f"cpu_adam_{key.hexdigest()[:16]}.so"
    if not lib_path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".so.tmp")
        os.close(fd)
        proc = subprocess.run(
            [cc, *_FLAGS, "-o", tmp, str(_SOURCE), "-lm"], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            Path(tmp).unlink(missing_ok=True)
            log.warning(
                "flashoptim: building %s failed (the torch path runs): %s", _SOURCE.name, proc.stderr[-500:]
            )
            return None
        os.replace(tmp, lib_path)
    lib = ctypes.CDLL(str(lib_path))
    lib.flash_adamw_step.restype = None
    lib.flash_adamw_step.argtypes = [ctypes.POINTER(_Args)] + [ctypes.c_void_p] * 8
    return lib


def _torch_sqrt() -> int | None:
    """Address of the square root torch's CPU kernels use (MKL's vmsSqrt in libtorch_cpu), or None
    when this build has none or it does not give torch.sqrt's bits on a sample (then the torch path runs)."""
    try:
        torch_lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        fn = torch_lib.vmsSqrt
    except (OSError, AttributeError):
        return None
    fn.restype = None
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    g = torch.Generator().manual_seed(0)
    x = torch.cat(
        [
            torch.rand(4093, generator=g) * 10.0 ** torch.randint(-40, 30, (4093,), generator=g),
            torch.tensor([0.0, 1e-45, 4.0]),
        ]
    )
    out = torch.empty_like(x)
    fn(x.numel(), x.data_ptr(), out.data_ptr(), _VML_MODE)
    if not torch.equal(out, x.sqrt()):
        log.info("flashoptim: vmsSqrt does not reproduce torch.sqrt here; the CPU step takes the torch path")
        return None
    return ctypes.cast(fn, ctypes.c_void_p).value


def library() -> Any:
    """The loaded library, or None (no compiler, build failed, FLASHOPTIM_CPU_FUSED=0, or no
    usable copy of torch's square root)."""
    global _lib, _sqrt, _tried
    if not _tried:
        _tried = True
        try:
            _sqrt = _torch_sqrt()
            _lib = _build() if _sqrt is not None else None
        except OSError as exc:
            log.warning("flashoptim: the compiled CPU step is unavailable (%s); the torch path runs", exc)
            _lib = None
    return _lib


def supported(
    opt: Any, params: list[torch.Tensor], states: list[dict[str, Any]], comps: dict[str, Compander]
) -> bool:
    """Whether :func:`fused_adamw_step` covers this batch's optimizer, dtypes and companders (equal
    ``batch_key``) with the reference's bits; :func:`eligible` then says which of its params."""
    if getattr(opt, "_fused_kind", None) != "adam" or not getattr(opt, "_decoupled", False):
        return False
    if not opt.quantize_states or set(comps) != {"exp_avg", "exp_avg_sq"}:
        return False
    m, v = comps["exp_avg"], comps["exp_avg_sq"]
    paper = m.family == "softsign" and v.family == "power" and v.param == 0.5
    if not (paper or (m.family == "linear" and v.family == "linear")):  # the pairs cpu_adam.c compiles
        return False
    p0, code = params[0], states[0].get("correction")
    if p0.device.type != "cpu" or p0.dtype not in (torch.bfloat16, torch.float32):
        return False
    if p0.dtype == torch.float32 and code is not None:
        return False
    return library() is not None


def eligible(p: torch.Tensor, state: dict[str, Any]) -> bool:
    """A param of a :func:`supported` batch that the loop can step: contiguous, with a dense
    gradient of its own dtype."""
    if p.grad is None or p.grad.dtype != p.dtype or p.grad.is_sparse:
        return False
    keys = ("correction", "exp_avg_codes", "exp_avg_scales", "exp_avg_sq_codes", "exp_avg_sq_scales")
    tensors = [p, p.grad, *(state.get(k) for k in keys)]
    return all(t is None or t.is_contiguous() for t in tensors)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


@torch.no_grad()
def fused_adamw_step(
    opt: Any,
    params: list[torch.Tensor],
    states: list[dict[str, Any]],
    group: dict[str, Any],
    comps: dict[str, Compander],
) -> None:
    """One FlashAdamW step of ``params`` (checked by :func:`supported`; steps already incremented)."""
    lib = library()
    step = states[0]["step"]
    lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
    beta1, beta2 = group["betas"]
    code0 = states[0].get("correction")
    m = comps["exp_avg"]
    args = _Args(
        n=0,
        param_bf16=int(params[0].dtype == torch.bfloat16),
        corr=_CORR[None if code0 is None else code0.dtype],
        m_softsign=int(m.family == "softsign"),
        m_a=m.param if m.family == "softsign" else 0.0,
        v_sqrt=int(comps["exp_avg_sq"].family == "power"),
        decay=1 - lr * wd,
        w1=1 - beta1,
        beta2=beta2,
        c2=1 - beta2,
        bc2=math.sqrt(1 - beta2**step),
        eps=eps,
        step_size=-lr / (1 - beta1**step),
        # 2^-7 (bf16's ULP of 1) * 0.5 / Q, as flashoptim.master_weights._ulp16_times folds it
        k_rec=2.0**-7 * (0.5 / _LEVELS[code0.dtype]) if code0 is not None else 0.0,
    )
    for p, st in zip(params, states):
        args.n = p.numel()
        if args.n == 0:
            continue
        assert p.grad is not None
        lib.flash_adamw_step(
            ctypes.byref(args),
            _sqrt,
            _ptr(p.detach()),
            _ptr(p.grad),
            _ptr(st.get("correction")),
            _ptr(st["exp_avg_codes"]),
            _ptr(st["exp_avg_scales"]),
            _ptr(st["exp_avg_sq_codes"]),
            _ptr(st["exp_avg_sq_scales"]),
        )
