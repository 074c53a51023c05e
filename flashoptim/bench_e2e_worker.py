"""One end-to-end training arm in its own process: ``python bench_e2e_worker.py MODEL ARM OUT [STEPS MB SEQ [CACHE]]``.

A random-init Llama (transformers, SDPA attention, activation checkpointing) trained for ``STEPS``
steps of ``MB x SEQ`` random tokens with one optimizer arm; records the peak allocated/reserved
memory over the steps (after model and optimizer creation), the median step time over steps 2..N
(step 1 compiles kernels and allocates states) and tokens/s.  Like ``bench_worker.py`` it imports
no ``flashoptim`` at module level: arms ``published*`` run with the published package first on
``sys.path`` (the parent, ``python -m flashoptim.bench e2e``, arranges that), arms ``ours*`` with
this repository's.  Both packages offer ``FlashAdamW(..., master_weight_bits=24)``,
``cast_model`` and ``enable_gradient_release``; with gradient release ``step()``/``zero_grad()``
are still called every step (both packages make them no-ops for released params), as a user's
loop would.

Memory: the model is built in fp32 on the GPU and the flash arms cast it, which frees the fp32
storage into the caching allocator.  ``CACHE`` = ``release`` (the default) calls
``torch.cuda.empty_cache()`` after model, optimizer and input are set up and before the peaks are
reset, in every arm, as the harness does (``experiments/run/memory.py``), so an arm's reserved peak
counts what its training needs, not what the build left cached; ``keep`` leaves the cache as the
build left it (the condition of the 2026-12-01 runs).  Both record the allocated and reserved bytes
after setup (``setup_*``) and at the start of the measured steps (``start_*``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import traceback
from typing import Any

import torch

# Model shapes (public architecture facts): TinyLlama-1.1B, Llama-2-7B, Llama-2-13B.
MODELS: dict[str, dict[str, Any]] = {
    "llama1b": dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        vocab_size=32000,
    ),
    "llama7b": dict(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
    ),
    "llama13b": dict(
        hidden_size=5120,
        intermediate_size=13824,
        num_hidden_layers=40,
        num_attention_heads=40,
        num_key_value_heads=40,
        vocab_size=32000,
    ),
}
# arm -> (optimizer family, gradient release); "ours"/"published" are FlashAdamW 24-bit with bf16
# params (norms fp32, cast_model); torch and bitsandbytes keep fp32 params under bf16 autocast
ARMS: dict[str, tuple[str, bool]] = {
    "ours24": ("flash", False),
    "ours24_gr": ("flash", True),
    "published24": ("flash", False),
    "published24_gr": ("flash", True),
    "torch_adamw_fused": ("torch", False),
    "bnb_adamw8bit": ("bnb", False),
}
LR = 1e-5
CACHE_MODES = (
    "release",
    "keep",
)  # the allocator cache after setup: emptied (default) or as the build left it


def _build(model_name: str) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM  # heavy; only the worker needs it

    kwargs: dict[str, Any] = dict(MODELS[model_name], max_position_embeddings=4096)
    cfg = LlamaConfig(**kwargs)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)  # type: ignore[no-untyped-call]
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    return model, cfg


def run(
    model_name: str, arm: str, steps: int, micro_batch: int, seq: int, cache: str = "release"
) -> dict[str, Any]:
    family, release = ARMS[arm]
    out: dict[str, Any] = {
        "model": model_name,
        "arm": arm,
        "micro_batch": micro_batch,
        "seq": seq,
        "steps": steps,
        "build_cache": cache,
    }
    model, cfg = _build(model_name)
    out["params"] = sum(p.numel() for p in model.parameters())
    if family == "flash":
        import flashoptim  # ours, or the published package when the parent put it first on the path

        _check_origin(flashoptim)

        out["flashoptim_module"] = flashoptim.__file__
        flashoptim.cast_model(model, dtype=torch.bfloat16)
        opt: Any = flashoptim.FlashAdamW(model.parameters(), lr=LR, master_weight_bits=24)
        if release:
            flashoptim.enable_gradient_release(model, opt)
        autocast = False
    elif family == "torch":
        opt = torch.optim.AdamW(model.parameters(), lr=LR, fused=True)
        autocast = True
    else:
        import bitsandbytes as bnb

        opt = bnb.optim.AdamW8bit(model.parameters(), lr=LR)  # type: ignore[attr-defined,no-untyped-call]
        autocast = True
    ids = torch.randint(0, cfg.vocab_size, (micro_batch, seq), device="cuda", generator=None)
    torch.cuda.synchronize()
    out["setup_alloc_GiB"] = torch.cuda.memory_allocated() / 2**30
    out["setup_reserved_GiB"] = torch.cuda.memory_reserved() / 2**30
    if cache == "release":
        torch.cuda.empty_cache()
    out["start_alloc_GiB"] = torch.cuda.memory_allocated() / 2**30
    out["start_reserved_GiB"] = torch.cuda.memory_reserved() / 2**30
    torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for _ in range(steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        losses.append(float(loss))
    step_s = statistics.median(times[1:]) if len(times) > 1 else times[0]
    out.update(
        status="ok",
        losses=losses,
        step_s=times,
        step_s_median=step_s,
        tokens_per_s=micro_batch * seq / step_s,
        peak_alloc_GiB=torch.cuda.max_memory_allocated() / 2**30,
        peak_reserved_GiB=torch.cuda.max_memory_reserved() / 2**30,
    )
    return out


def _check_origin(module: Any) -> None:
    """A published arm must run the published package: the parent names its directory."""
    root = os.environ.get("FLASHOPTIM_BENCH_PUBLISHED_ROOT")
    if root and not os.path.abspath(module.__file__).startswith(os.path.abspath(root) + os.sep):
        raise RuntimeError(f"published arm imported flashoptim from {module.__file__}, not from {root}")


def _drop_own_directory() -> None:
    """Take this script's directory (``flashoptim/``) off ``sys.path``, where Python put it first.

    Hazard: it holds a package named ``kernels``.  transformers probes for the hub's ``kernels``
    package with ``importlib.import_module("kernels")``; in a published arm that imported our
    ``flashoptim/kernels``, whose ``from flashoptim.companders import ...`` then failed against
    the published ``flashoptim``, and ``from transformers import LlamaConfig`` raised "Could not
    import module 'LlamaConfig'" (H200, 2026-12-01, every published e2e arm; traceback in
    benchmarks/flashoptim/h200-2026-12-01-session5/).  Nothing here imports a sibling module."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]


def main(argv: list[str]) -> int:
    _drop_own_directory()
    model_name, arm, path = argv[0], argv[1], argv[2]
    steps, micro_batch, seq = (int(a) for a in (argv[3:6] if len(argv) >= 6 else ("6", "1", "2048")))
    cache = argv[6] if len(argv) >= 7 else "release"
    if cache not in CACHE_MODES:
        print(f"CACHE={cache!r} is not allowed; allowed: {', '.join(CACHE_MODES)}", file=sys.stderr)
        return 2
    result: dict[str, Any]
    try:
        result = run(model_name, arm, steps, micro_batch, seq, cache)
    except torch.OutOfMemoryError as exc:  # recorded: an arm that does not fit is a result
        result = {
            "model": model_name,
            "arm": arm,
            "status": "oom",
            "error": str(exc)[:300],
            "peak_alloc_GiB": torch.cuda.max_memory_allocated() / 2**30,
            "peak_reserved_GiB": torch.cuda.max_memory_reserved() / 2**30,
        }
    except Exception as exc:  # recorded, so one failing arm does not hide the others
        # the whole chain: transformers' lazy import hides the ImportError that caused it
        result = {
            "model": model_name,
            "arm": arm,
            "status": "error",
            "error": repr(exc)[:500],
            "traceback": traceback.format_exc()[-4000:],
        }
    result["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)
    print("E2E", json.dumps({k: v for k, v in result.items() if k not in ("losses", "step_s")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
