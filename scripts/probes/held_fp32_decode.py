"""CPU greedy decoding of smollm2-135m on the fp32 compute path: casting the bf16 weights at every
forward vs holding fp32 copies for the evaluation (experiments/run/models.py::fp32_weights_held).
A probe, not a test.

    PYTHONPATH=. python scripts/probes/held_fp32_decode.py [--rows 4] [--prompt 100] [--new 40]

The pretrained weights (fetched/converted into model.cache_dir on first use) cast to bf16 and made to
compute in fp32, as the flashoptim arm runs on a CPU; one thread; random prompt ids; the static-cache
decoder without early stop. Prints wall and process CPU seconds per setting (twice, alternating) and
whether both settings generated identical tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time

import torch

from common.config import compose
from experiments import pretrained
from experiments.config import register
from experiments.eval import decode
from experiments.run import models


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--prompt", type=int, default=100)
    p.add_argument("--new", type=int, default=40)
    a = p.parse_args()
    torch.set_num_threads(1)
    register()
    cfg = compose("run", ["model=smollm2-135m"])
    w = pretrained.resolve(cfg.model)
    assert w is not None
    model = pretrained.load_model(w, cfg.model, torch.device("cpu")).eval().to(torch.bfloat16)
    print("fp32-compute modules:", models.compute_in_fp32(model))
    dec = decode.StaticCacheDecoder(model)
    ids = torch.randint(100, 1000, (a.rows, a.prompt), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    outs: dict[str, torch.Tensor] = {}
    for name in ("cast", "held", "cast", "held"):
        hold = models.fp32_weights_held(model) if name == "held" else contextlib.nullcontext()
        t, c = time.perf_counter(), cpu_s()
        with hold, torch.no_grad():
            out = dec.generate(ids, mask, max_new_tokens=a.new, eos_id=-1, pad_id=0)
        print(f"{name}: wall {time.perf_counter() - t:.1f} s, cpu {cpu_s() - c:.1f} s", flush=True)
        outs.setdefault(name, out)
    print("identical tokens:", torch.equal(outs["cast"], outs["held"]))


if __name__ == "__main__":
    main()
