"""Mesh convergence of the probe stresses of one behaviour x scenario (issue 17 evidence; not a test).

    PYTHONPATH=. .venv/bin/python tests/datagen/convergence_study.py hyperelastic simple_shear 2 2,4,6,8

Solves the first N samples of that behaviour x scenario (neo-Hookean, Mooney-Rivlin or Biot) drawn by
the protocol config at each cells-per-axis level (Biot mesh [c, c, max(6, c + 2)]) and prints the
CPU time per sample and the error of each level against the finest, as % of the stress scale.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import datagen.spec  # noqa: F401  (registers the schemas)
from common.config import compose
from datagen.sampling import draw_sample


def main(argv: list[str]) -> int:
    beh, scen, n = argv[0], argv[1], int(argv[2])
    levels = [int(a) for a in argv[3].split(",")]
    from datagen.worker import SampleRunner

    base = compose("datagen", ["data=protocol"]).data
    xs, sid = [], 0
    while len(xs) < n:
        x = draw_sample(base, sid)
        sid += 1
        if (
            x.behaviour == beh
            and x.scenario == scen
            and x.material_model in ("neo_hookean", "linear_biot", "mooney_rivlin")
        ):
            xs.append(x)
    res = {}
    for c in levels:
        over = [f"data.mesh.cells_per_axis={c}", f"data.mesh.poro_cells=[{c},{c},{max(6, c + 2)}]", *argv[4:]]
        r = SampleRunner(compose("datagen", ["data=protocol", *over]).data, eager=False)
        out = []
        for x in xs:
            t = time.process_time()
            out.append(r.run(x).stress)
            t = time.process_time() - t
        res[c] = out
        print(beh, scen, "cells", c, f"cpu/sample {t:.2f}s", flush=True)
    for c in levels[:-1]:
        errs = [
            np.max(np.abs(a - b)) / np.max(np.abs(b)) for a, b in zip(res[c], res[levels[-1]], strict=True)
        ]
        print(beh, scen, c, "vs", levels[-1], " ".join(f"{100 * e:.2f}%" for e in errs), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
