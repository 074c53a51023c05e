"""Issue 15 probe: gradient release vs the plain step at 7B, in one process, under the settings the
harness and the e2e bench differ in (bf16 autocast on/off, reentrant / non-reentrant activation
checkpointing). One model (bf16, cast_model), a fresh FlashAdamW per configuration; per-step wall
times with a device sync around each step, and the host time spent inside the release hooks.

    python3 scripts/probes/gr_probe.py OUT.json [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import flashoptim


def timed_hook(opt: Any, acc: list[float]) -> Any:
    def hook(p: torch.Tensor) -> None:
        t = time.perf_counter()
        opt.step_param(p)
        p.grad = None
        acc[0] += time.perf_counter() - t

    return hook


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--layers", type=int, default=32)
    args = ap.parse_args()
    cfg = LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=args.layers,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
        max_position_embeddings=4096,
    )
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    model.config.use_cache = False
    flashoptim.cast_model(model, dtype=torch.bfloat16)
    ids = torch.randint(0, cfg.vocab_size, (1, 2048), device="cuda")
    rows: list[dict[str, Any]] = []
    configs = [
        (ac, reent, gr)
        for ac in (True, False)
        for reent in (False, True)
        for gr in (False, True, False, True)
    ]
    for autocast, reentrant, release in configs:
        model.gradient_checkpointing_disable()
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
        opt = flashoptim.FlashAdamW(model.parameters(), lr=1e-5, master_weight_bits=24)
        hook_s = [0.0]
        handle = None
        if release:
            hook = timed_hook(opt, hook_s)
            handle = [
                p.register_post_accumulate_grad_hook(hook) for p in model.parameters() if p.requires_grad
            ]
        times, hooks = [], []
        for _ in range(args.steps):
            torch.cuda.synchronize()
            hook_s[0] = 0.0
            t0 = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            if not release:
                opt.step()
                opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            hooks.append(hook_s[0])
        row = {
            "autocast": autocast,
            "reentrant": reentrant,
            "release": release,
            "step_s_median": statistics.median(times[2:]),
            "step_s": times,
            "hook_host_s_median": statistics.median(hooks[2:]),
        }
        print(json.dumps({k: v for k, v in row.items() if k != "step_s"}), flush=True)
        rows.append(row)
        if handle:
            for h in handle:
                h.remove()
        for p in model.parameters():
            p.grad = None
        del opt
        torch.cuda.empty_cache()
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
