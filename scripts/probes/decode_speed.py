"""Greedy decoding cost at the pilot's evaluation shape, per decoder (GPU probe, not a test).

    python scripts/probes/decode_speed.py OUT.json [--rows 640] [--steps 64]

The llama-1b shape (random init, vocab 384 as the pilot's BPE), ``--rows`` left-padded prompts of
51-210 tokens (the pilot validation prompts' range), no early stop. For each setting (fp32 model
under bf16 autocast, as the AdamW and 8-bit Adam arms evaluate; bf16 model, as FlashOptim) it times
prefill alone (1 new token) and ``--steps`` new tokens with: the static-cache decoder with CUDA graphs,
without, and ``model.generate``; ms per decode step = (time(steps) - time(1)) / (steps - 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from transformers import LlamaForCausalLM

from common.config import compose
from experiments.config import register
from experiments.eval import decode
from experiments.run.models import llama_config

VOCAB = 384  # the pilot's BPE vocabulary (train.text.tokenizer_vocab_size)


def build(dtype: torch.dtype, device: str, tiny: bool) -> torch.nn.Module:
    """The conf/model preset (llama-1b, or tiny to check the script) with the pilot's vocabulary."""
    register()
    model_cfg = compose("run", [f"model={'tiny' if tiny else 'llama-1b'}"]).model
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(llama_config(model_cfg, VOCAB))
    return model.to(dtype).eval()


def measure(model, ids, mask, width: int, steps: int, autocast: bool, timed) -> dict:
    dev = ids.device
    dec = decode.StaticCacheDecoder(model)
    runs = {
        "static+graph": lambda n: dec.generate(ids, mask, max_new_tokens=n, eos_id=-1, pad_id=0),
        "static eager": lambda n: dec.generate(
            ids, mask, max_new_tokens=n, eos_id=-1, pad_id=0, cuda_graph=False
        ),
        "hf generate": lambda n: model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=None,
        ),
    }
    row: dict = {}
    outs = {}
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast), torch.no_grad():
        for name, fn in runs.items():
            fn(2)  # warm-up (kernels, cuBLAS handles)
            t1, _ = timed(fn, 1)
            tn, out = timed(fn, steps)
            outs[name] = out[:, width:]
            row[name] = {
                "prefill_s": round(t1, 3),
                "total_s": round(tn, 3),
                "ms_per_step": round(1000 * (tn - t1) / (steps - 1), 2),
            }
    for name in ("static eager", "hf generate"):
        same = (outs["static+graph"] == outs[name]).all(dim=1).float().mean().item()
        first = (outs["static+graph"][:, 0] == outs[name][:, 0]).float().mean().item()
        row[f"rows identical to static+graph: {name}"] = round(same, 4)
        row[f"first token identical: {name}"] = round(first, 4)
    if dev.type == "cuda":
        row["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=640)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model: checks the script itself")
    a = ap.parse_args()
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(51, 211, (a.rows,), generator=g)
    width = int(lengths.max())
    ids = torch.zeros(a.rows, width, dtype=torch.long)
    mask = torch.zeros(a.rows, width, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        ids[i, width - n :] = torch.randint(3, VOCAB, (n,), generator=g)
        mask[i, width - n :] = 1
    ids, mask = ids.to(dev), mask.to(dev)
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    results = {"device": name, "rows": a.rows, "width": width, "steps": a.steps, "tiny": a.tiny}

    def timed(fn, n: int) -> tuple[float, torch.Tensor]:
        sync()
        t0 = time.perf_counter()
        out = fn(n)
        sync()
        return time.perf_counter() - t0, out

    for setting, dtype, autocast in (("fp32+autocast", torch.float32, True), ("bf16", torch.bfloat16, False)):
        results[setting] = measure(build(dtype, a.device, a.tiny), ids, mask, width, a.steps, autocast, timed)
        print(setting, json.dumps(results[setting]), flush=True)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    Path(a.out).write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
