"""How many llama-11m training steps per second one GPU gives K processes at once, with and without
CUDA MPS (issue 14: the accuracy pilot's budget is set by this aggregate rate).

    python3 scripts/probes/share_probe.py OUT_DIR [--configs 18:off,18:on,30:on] [--seconds 40]

Each process builds the pilot's llama-11m (hidden 384, 6 layers, 6 heads, intermediate 1024, vocab
384, sdpa attention) from its config, trains on random tokens (8 x 2,048 a step, labels = inputs)
with one of the pilot's arms, cycling ``adamw`` (fp32 weights, bf16 autocast, fused torch AdamW),
``adam8bit`` (bitsandbytes AdamW8bit, fp32 weights, autocast) and ``flashoptim`` (FlashAdamW on bf16
weights), warms up, waits for a common start time, and counts the steps it completes (synchronised)
in the next ``--seconds`` seconds. The numbers are the model's and the optimizers' real work; the
harness around a pilot run (data packing, logging every 50 steps) is not in them.
``OUT_DIR/share.json``: per configuration, per process: arm, steps, seconds; aggregate steps/s.
A config ``K:on`` runs under ``scripts.gpu_pilot.mps_session`` (a daemon of its own, quit afterwards);
if a client cannot connect, the config is recorded as failed and the next one runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ARMS = ["adamw", "adam8bit", "flashoptim", "adamw", "adam8bit", "adamw"]  # the pilot's mix, by arm family


def worker(arm: str, start_at: float, seconds: float, seed: int) -> None:
    import torch  # the worker process only: the parent runs no CUDA (MPS clients start after the daemon)
    from transformers import LlamaConfig, LlamaForCausalLM  # same: worker-side only

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=6,
        num_key_value_heads=6,
        intermediate_size=1024,
        vocab_size=384,
        max_position_embeddings=2048,
    )
    cfg._attn_implementation = "sdpa"
    model = LlamaForCausalLM(cfg).cuda()
    autocast = True
    if arm == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    elif arm == "adam8bit":
        import bitsandbytes as bnb  # optional: the adam8bit workers only

        opt = bnb.optim.AdamW8bit(model.parameters(), lr=1e-3)
    else:
        sys.path.insert(0, os.getcwd())
        from flashoptim import FlashAdamW, cast_model  # flashoptim workers only

        cast_model(model)
        opt = FlashAdamW(model.parameters(), lr=1e-3)
        autocast = False
    g = torch.Generator(device="cuda").manual_seed(seed)

    def step() -> None:
        ids = torch.randint(0, 384, (8, 2048), device="cuda", generator=g)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    late = time.time() > start_at
    while time.time() < start_at:
        time.sleep(0.01)
    t0 = time.time()
    n = 0
    while True:
        step()
        n += 1
        if n % 10 == 0:
            torch.cuda.synchronize()
            if time.time() - t0 >= seconds:
                break
    torch.cuda.synchronize()
    print(json.dumps({"arm": arm, "steps": n, "seconds": time.time() - t0, "late": late}), flush=True)


def run_config(k: int, mps: bool, seconds: float) -> dict:
    from scripts.gpu_pilot import mps_session  # the repository is on PYTHONPATH (scripts/gpu_env.sh)

    rec: dict = {"processes": k}
    with mps_session(mps, "not asked") as rec["mps"]:
        if mps and not rec["mps"]["used"]:
            rec["error"] = rec["mps"]["why"]
            return rec
        start_at = time.time() + 50.0  # imports + model build + warm-up of K processes on 16 cores
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    ARMS[i % len(ARMS)],
                    str(start_at),
                    str(seconds),
                    str(i),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(k)
        ]
        outputs = [p.communicate(timeout=300) for p in procs]
    rows, errs = [], []
    for o, e in outputs:
        line = [ln for ln in o.splitlines() if ln.startswith("{")]
        if line:
            rows.append(json.loads(line[-1]))
        else:
            errs.append(e[-600:])
    rec["rows"] = rows
    rec["errors"] = errs
    rec["aggregate_steps_per_s"] = sum(r["steps"] / r["seconds"] for r in rows)
    per_arm: dict[str, list[float]] = {}
    for r in rows:
        per_arm.setdefault(r["arm"], []).append(r["steps"] / r["seconds"])
    rec["per_arm_steps_per_s_mean"] = {a: sum(v) / len(v) for a, v in per_arm.items()}
    rec["any_late"] = any(r["late"] for r in rows)
    return rec


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
        return 0
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--configs", default="18:off,18:on,30:on")
    p.add_argument("--seconds", type=float, default=30.0)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    results = []
    for c in a.configs.split(","):
        k, m = c.split(":")
        t = time.time()
        rec = run_config(int(k), m == "on", a.seconds)
        rec["wall_s"] = time.time() - t
        results.append(rec)
        print(
            json.dumps(
                {
                    key: rec.get(key)
                    for key in (
                        "processes",
                        "mps",
                        "aggregate_steps_per_s",
                        "per_arm_steps_per_s_mean",
                        "error",
                        "any_late",
                        "wall_s",
                    )
                }
            ),
            flush=True,
        )
        (a.out / "share.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
