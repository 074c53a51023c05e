"""The fused Triton kernel's logic on CPU under TRITON_INTERPRET=1, against the torch reference.

Runs in subprocesses because the interpreter flag must be set before triton is imported.  The
kernel does its own round-to-nearest-even bf16 cast (fp16: numpy's cast is already RNE), so params
agree exactly here; corrections and codes may differ by a few units where fp32 operation order
differs (numpy vs torch), so tolerances.  Both backends see the same gradients for a few steps
(trajectories, not resynchronised), on odd sizes, sizes not a multiple of 32, empty, 0-dim and
non-contiguous params and an fp32 (norm-like) param.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import triton  # noqa: F401  (a locked dependency: its absence is a broken install, not a skip)

COMMON = r"""
import json, warnings
import torch
import flashoptim as fo
from flashoptim.companders import learned_candidates
from flashoptim.master_weights import ulp16
warnings.simplefilter("ignore")
SHAPES = [(37, 19), (), (0,), (64,), (5, 7, 3), (33,)]
ADAMW = (fo.FlashAdamW, dict(lr=1e-3, weight_decay=0.1))
SGD = (fo.FlashSGD, dict(lr=1e-2, momentum=0.9))
LION = (fo.FlashLion, dict(lr=1e-4, weight_decay=0.1))


def make_params(dtype):
    torch.manual_seed(0)
    ps = [torch.nn.Parameter((torch.randn(s) * 0.1).to(dtype)) for s in SHAPES]
    ps.append(torch.nn.Parameter(torch.randn(40)))
    ps.append(torch.nn.Parameter((torch.randn(12, 10) * 0.1).to(dtype).t()))
    qs = []
    for p in ps:
        q = torch.empty_strided(p.shape, p.stride(), dtype=p.dtype)
        q.copy_(p.detach())
        qs.append(torch.nn.Parameter(q))
    return ps, qs


def feed(ps, qs, o1, o2, steps):
    for _ in range(steps):
        for p, q in zip(ps, qs):
            g = (torch.randn(p.shape) * 1e-2).to(p.dtype)
            p.grad, q.grad = g.clone(), g.clone()
        o1.step()
        o2.step()


def worst(ps, qs, o1, o2):
    w = {"param_ulps": 0.0, "codes": 0.0, "fp32_rel": 0.0, "state_rel": 0.0, "companders_differ": 0,
         "families": []}
    for p, q in zip(ps, qs):
        if p.numel() == 0:
            continue
        if p.dtype != torch.float32:
            dp = (p.double() - q.double()).abs() / ulp16(q.detach()).double()
            w["param_ulps"] = max(w["param_ulps"], float(dp.max()))
        else:
            w["fp32_rel"] = max(w["fp32_rel"], float(((p - q).abs() / q.abs().clamp_min(1e-6)).max()))
        for k, v in o1.state[p].items():
            if not torch.is_tensor(v):
                continue
            r = o2.state[q][k]
            if k.endswith("_compander"):
                w["companders_differ"] += int(not torch.equal(v, r))
                w["families"].append(str(fo.Compander.from_tensor(r)))
            elif v.dtype in (torch.int8, torch.uint8, torch.int16):
                lim = 1.0 if v.dtype != torch.int16 else 1 / 256
                w["codes"] = max(w["codes"], float((v.int() - r.int()).abs().max()) * lim)
            elif v.dtype == torch.float32 and v.shape == p.shape:  # fp32 states
                rel = (v - r).abs().max() / r.abs().max().clamp_min(1e-30)
                w["state_rel"] = max(w["state_rel"], float(rel))
    return w


def compare(cls, kw, dtype, bits, steps=3, maker=None, **opt_kw):
    ps, qs = (maker or make_params)(dtype)
    o1 = cls(ps, backend="triton", master_weight_bits=bits, **kw, **opt_kw)
    o2 = cls(qs, backend="torch", master_weight_bits=bits, **kw, **opt_kw)
    feed(ps, qs, o1, o2, steps)
    return worst(ps, qs, o1, o2)
"""

SUITES = {
    # what `make test` runs (seconds, not minutes): each algorithm once on the default path, bf16
    # params with the 24-bit master, the paper compander, two steps; the suites below (slow-marked,
    # `make test-slow`; on a GPU, tests/flashoptim/test_gpu_*.py) cover every variant
    "quick": r"""
for cls, kw in (ADAMW, SGD, LION):
    out[f"{cls.__name__}-24"] = compare(cls, kw, torch.bfloat16, 24, steps=2)
""",
    # session 1's scope: bf16/fp32 params, the paper compander, 24/32/no correction
    "base": r"""
for cls, kw in (ADAMW, SGD, LION):
    for bits in (24, 32, None):
        out[f"{cls.__name__}-{bits}"] = compare(cls, kw, torch.bfloat16, bits, steps=4)
""",
    # every compander the optimizers offer (learned refitted every 2 steps, so the refit path of
    # the fused step runs twice), fp16 params, and fp32 states
    "companders_fp16_fp32states": r"""
for cls, kw in (ADAMW, SGD, LION):
    for comp in ("log", "learned"):
        out[f"{cls.__name__}-{comp}"] = compare(cls, kw, torch.bfloat16, 24, compander=comp, learned_refit_every=2)
    for bits in (24, 32, None):
        out[f"{cls.__name__}-fp16-{bits}"] = compare(cls, kw, torch.float16, bits)
    out[f"{cls.__name__}-fp32states"] = compare(cls, kw, torch.bfloat16, 24, quantize_states=False)
out["FlashAdamW-linear"] = compare(*ADAMW, torch.bfloat16, 24, compander="linear")
out["FlashAdamW-fp16-learned"] = compare(*ADAMW, torch.float16, 24, compander="learned", learned_refit_every=3, steps=7)
out["FlashAdamW-fp16-fp32states"] = compare(*ADAMW, torch.float16, 32, quantize_states=False)
""",
    # the unmasked path (EVEN: the size is a multiple of the 64 x 32 tile), on its own params so the
    # other suites' random streams are unchanged
    "even_tile": r"""
def even_params(dtype):
    torch.manual_seed(1)
    ps = [torch.nn.Parameter((torch.randn(s) * 0.1).to(dtype)) for s in [(64, 32), (2, 64, 32)]]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    return ps, qs
for cls, kw in (ADAMW, SGD, LION):
    for bits in (24, 32, None):
        out[f"{cls.__name__}-even-{bits}"] = compare(cls, kw, torch.bfloat16, bits, maker=even_params)
out["FlashAdamW-even-fp16-24"] = compare(*ADAMW, torch.float16, 24, maker=even_params)
""",
    # every candidate of the learned compander, forced on both backends after a first step (so the
    # kernel decodes and encodes each family at each parameter the refit may pick)
    "learned_candidates": r"""
for signed_cands, unsigned_cands in [(learned_candidates(signed=True), learned_candidates(signed=False))]:
    for i, (cs, cu) in enumerate(zip(signed_cands, unsigned_cands)):
        ps, qs = make_params(torch.bfloat16)
        o1 = fo.FlashAdamW(ps, backend="triton", lr=1e-3, compander="learned", learned_refit_every=10**6)
        o2 = fo.FlashAdamW(qs, backend="torch", lr=1e-3, compander="learned", learned_refit_every=10**6)
        feed(ps, qs, o1, o2, 1)
        for o in (o1, o2):
            for st in o.state.values():
                st["exp_avg_compander"] = cs.as_tensor()
                st["exp_avg_sq_compander"] = cu.as_tensor()
        feed(ps, qs, o1, o2, 2)
        out[f"candidates-{cs}-{cu}"] = worst(ps, qs, o1, o2)
""",
}


def _run_suite(name: str) -> dict[str, dict]:
    script = COMMON + "out = {}\n" + SUITES[name] + 'print("RESULT" + json.dumps(out))\n'
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


EXPECTED_CASES = {
    "quick": 3,
    "base": 9,
    "companders_fp16_fp32states": 21,
    "even_tile": 10,
    "learned_candidates": 15,
}


@pytest.mark.parametrize(
    "suite",
    # the full suites took 2.5-10 min each under the interpreter on the 2-core machine (issue 18 item 9)
    [s if s == "quick" else pytest.param(s, marks=pytest.mark.slow) for s in SUITES],
)
def test_triton_kernel_logic_matches_reference_under_interpreter(suite) -> None:
    results = _run_suite(suite)
    assert len(results) == EXPECTED_CASES[suite]
    for name, w in results.items():
        # params: exact here (one bf16/fp16 ULP is the GPU spec)
        assert w["param_ulps"] <= 1.0, (name, w)
        # state codes and int8 corrections: a few units where numpy and torch order fp32 ops
        # differently (worst seen over 4 steps: 2 levels for states, 2 codes for corrections;
        # in session 1, 26 int16 codes = 0.1 in int8 units after a state level moved)
        assert w["codes"] <= 3, (name, w)
        assert w["fp32_rel"] <= 1e-5, (name, w)  # fp32 params
        assert w["state_rel"] <= 1e-5, (name, w)  # fp32 states, relative to the tensor's max
        # the learned refit picks the same compander from the kernel's fp32 states
        assert w["companders_differ"] == 0, (name, w)
    if suite == "learned_candidates":
        # every family ran in the kernel, each at its parameter
        picked = {f for w in results.values() for f in w["families"]}
        assert {"linear", "softsign(16)", "power(0.25)", "power(0.75)", "mulaw(1023)"} <= picked
    if suite == "companders_fp16_fp32states":
        assert any(f.startswith("mulaw") for f in results["FlashAdamW-log"]["families"])
