"""The fused Triton kernel's logic on CPU under TRITON_INTERPRET=1, against the torch reference.

Runs in a subprocess because the interpreter flag must be set before triton is imported.  The
kernel does its own round-to-nearest-even bf16 cast, so params agree exactly here; corrections and
codes may differ by a few units where fp32 operation order differs (numpy vs torch), so tolerances.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import triton  # noqa: F401  (a locked dependency: its absence is a broken install, not a skip)

SCRIPT = r"""
import json, warnings
import torch
import flashoptim as fo
from flashoptim.master_weights import ulp16
warnings.simplefilter("ignore")
torch.manual_seed(0)
shapes = [(37, 19), (), (0,), (64,), (5, 7, 3), (33,)]
out = {}
for cls, kw in [(fo.FlashAdamW, dict(lr=1e-3, weight_decay=0.1)), (fo.FlashSGD, dict(lr=1e-2, momentum=0.9)),
                (fo.FlashLion, dict(lr=1e-4, weight_decay=0.1))]:
    for bits in (24, 32, None):
        ps = [torch.nn.Parameter((torch.randn(s) * 0.1).to(torch.bfloat16)) for s in shapes]
        ps.append(torch.nn.Parameter(torch.randn(40)))
        ps.append(torch.nn.Parameter((torch.randn(12, 10) * 0.1).to(torch.bfloat16).t()))
        qs = []
        for p in ps:
            q = torch.empty_strided(p.shape, p.stride(), dtype=p.dtype); q.copy_(p.detach()); qs.append(torch.nn.Parameter(q))
        o1 = cls(ps, backend="triton", master_weight_bits=bits, **kw)
        o2 = cls(qs, backend="torch", master_weight_bits=bits, **kw)
        for _ in range(4):
            for p, q in zip(ps, qs):
                g = (torch.randn(p.shape) * 1e-2).to(p.dtype); p.grad = g.clone(); q.grad = g.clone()
            o1.step(); o2.step()
        w = {"param_ulps": 0.0, "codes": 0, "correction": 0, "fp32_rel": 0.0}
        for p, q in zip(ps, qs):
            if p.numel() == 0:
                continue
            if p.dtype == torch.bfloat16:
                w["param_ulps"] = max(w["param_ulps"], float(((p.double() - q.double()).abs() / ulp16(q.detach()).double()).max()))
            else:
                w["fp32_rel"] = max(w["fp32_rel"], float(((p - q).abs() / q.abs().clamp_min(1e-6)).max()))
            for k, v in o1.state[p].items():
                if torch.is_tensor(v) and v.dtype in (torch.int8, torch.uint8, torch.int16):
                    key = "correction" if k == "correction" else "codes"
                    lim = 1.0 if v.dtype != torch.int16 else 1 / 256
                    w[key] = max(w[key], float((v.int() - o2.state[q][k].int()).abs().max()) * lim)
        out[f"{cls.__name__}-{bits}"] = w
print("RESULT" + json.dumps(out))
"""


def test_triton_kernel_logic_matches_reference_under_interpreter() -> None:
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    results = json.loads(line[len("RESULT") :])
    assert len(results) == 9
    for name, w in results.items():
        assert w["param_ulps"] <= 1.0, (name, w)
        # codes and int8 corrections: a few units where numpy and torch order fp32 ops differently
        # (worst seen over 4 steps: 2 levels for states, 26 int8 codes after a state level moved)
        assert w["codes"] <= 3, (name, w)
        assert w["fp32_rel"] <= 1e-5, (name, w)
