"""Where FlashAdamW's memory goes at the Llama-2-7B shape (one H100; not a test, not the harness).

    python scripts/probes/memory_7b.py phases {gr|nogr} [steps]   # peak per phase, per step
    python scripts/probes/memory_7b.py blocks                      # allocated blocks after 2 steps

Runs whichever ``flashoptim`` is first on ``sys.path`` (ours from the repository root; the published
package when its unpacked wheel is put first on PYTHONPATH from a neutral directory), in the same
minimal loop: random-init bf16 Llama, activation checkpointing, micro-batch 1 x 2048, ``labels=x``.
``blocks`` matches every allocated block (``torch.cuda.memory._snapshot()``) against params and
optimizer state tensors and sums what each kind asked for (``requested_size``) against what the
caching allocator gave (``size``): the difference is rounding. Writes JSON to ``$OUT`` (or .).
"""

from __future__ import annotations

import collections
import json
import os
import sys
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import flashoptim

GIB = 2**30


def build() -> tuple[Any, Any, Any]:
    cfg = LlamaConfig(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        intermediate_size=11008,
        vocab_size=32000,
        max_position_embeddings=4096,
    )
    cfg._attn_implementation = "sdpa"
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    flashoptim.cast_model(model, dtype=torch.bfloat16)
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    opt = flashoptim.FlashAdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    return flashoptim, model, opt


def phases(mode: str, steps: int) -> dict[str, Any]:
    flashoptim, model, opt = build()
    if mode == "gr":
        flashoptim.enable_gradient_release(model, opt)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    x = torch.randint(0, 32000, (1, 2048), device="cuda")
    rows = []
    for step in range(1, steps + 1):
        row = {"step": step, "start": torch.cuda.memory_allocated() / GIB}
        torch.cuda.reset_peak_memory_stats()
        loss = model(input_ids=x, labels=x).loss
        torch.cuda.synchronize()
        row["fwd_peak"] = torch.cuda.max_memory_allocated() / GIB
        torch.cuda.reset_peak_memory_stats()
        loss.backward()
        torch.cuda.synchronize()
        row["bwd_peak"] = torch.cuda.max_memory_allocated() / GIB
        torch.cuda.reset_peak_memory_stats()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        row["step_peak"] = torch.cuda.max_memory_allocated() / GIB
        row["end"] = torch.cuda.memory_allocated() / GIB
        rows.append({k: round(v, 4) for k, v in row.items()})
        print(mode, rows[-1], flush=True)
    return {"mode": mode, "steps": rows, "flashoptim": flashoptim.__file__}


def _optimizer_tensors(obj: Any, out: dict[int, str], depth: int = 0, seen: set[int] | None = None) -> None:
    """Every CUDA tensor reachable from the optimizer object (the published package keeps moments
    outside ``opt.state``)."""
    seen = set() if seen is None else seen
    if depth > 3 or id(obj) in seen:
        return
    seen.add(id(obj))
    if torch.is_tensor(obj):
        if obj.is_cuda and obj.numel():
            out.setdefault(obj.data_ptr(), "optimizer")
        return
    children = (
        obj.values()
        if isinstance(obj, dict)
        else obj
        if isinstance(obj, list | tuple)
        else vars(obj).values()
    )
    if isinstance(obj, dict | list | tuple) or hasattr(obj, "__dict__"):
        for child in children:
            _optimizer_tensors(child, out, depth + 1, seen)


def blocks() -> dict[str, Any]:
    flashoptim, model, opt = build()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    x = torch.randint(0, 32000, (1, 2048), device="cuda")
    torch.cuda.memory._record_memory_history(max_entries=200_000, stacks="python")
    for _ in range(2):
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    snap = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    kind = {p.data_ptr(): "param" for p in model.parameters()}
    for state in opt.state.values():
        for v in state.values():
            if torch.is_tensor(v) and v.numel():
                kind[v.data_ptr()] = "state"
    _optimizer_tensors(opt, kind)
    given, asked, unknown = collections.Counter(), collections.Counter(), []
    for seg in snap["segments"]:
        for b in seg["blocks"]:
            if b["state"] != "active_allocated":
                continue
            k = kind.get(b["address"], "unknown")
            given[k] += b["size"]
            asked[k] += b.get("requested_size", b["size"])
            if k == "unknown":
                frames = [f"{f['filename'].split('/')[-1]}:{f['line']}" for f in b.get("frames", [])[:4]]
                unknown.append((b["size"], frames))
    return {
        "flashoptim": flashoptim.__file__,
        "allocated_GiB": torch.cuda.memory_allocated() / GIB,
        "by_kind_GiB": {k: v / GIB for k, v in given.items()},
        "rounding_GiB": {k: (given[k] - asked[k]) / GIB for k in given},
        "unknown_top": sorted(unknown, key=lambda t: -t[0])[:10],
    }


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "phases":
        result = phases(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3)
        name = f"phases-{sys.argv[2]}.json"
    elif what == "blocks":
        result, name = blocks(), "blocks.json"
    else:
        raise SystemExit("usage: memory_7b.py phases {gr|nogr} [steps] | blocks")
    print(json.dumps(result), flush=True)
    with open(os.path.join(os.environ.get("OUT", "."), name), "w") as fh:
        json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
