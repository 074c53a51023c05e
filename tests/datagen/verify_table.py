"""Accuracy of the generator at its own settings, per behaviour x scenario (issue 17): the table in
datagen/README.md "Verification at the generator's settings".

    PYTHONPATH=. .venv/bin/python tests/datagen/verify_table.py [data=protocol] [samples=3] [ref_cells=6]

For each behaviour x scenario the config produces, the first `samples` samples it draws are solved
through `datagen.worker.SampleRunner` at the config's settings and compared with a reference:
- poroelastic confined compression: the step-displacement series (datagen_reference.py);
- everything else: the same model on a refined discretisation (`ref_cells` cells per axis, the
  Biot mesh refined to [ref_cells, ref_cells, 2 ref_cells], 4x the load/time steps, Biot steps
  ratio 1.1 capped at T_v 0.01). For the homogeneous scenarios (uniaxial, confined compression of
  the solids) that reference equals the closed forms of tests/datagen/test_patch.py to 1e-8.
Error: max over probes and Voigt components of |stress - reference| / max |reference| (the sample's
stress scale). Not a test (minutes); prints a Markdown table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from datagen_reference import confined_step_displacement

import datagen.spec  # noqa: F401  (registers the schemas)
from common.config import compose
from common.provenance import device_label, now_iso
from datagen.sampling import draw_sample


def main(argv: list[str]) -> int:
    n, rc, rest = 3, 6, []
    for a in argv:
        if a.startswith("samples="):
            n = int(a.split("=", 1)[1])
        elif a.startswith("ref_cells="):
            rc = int(a.split("=", 1)[1])
        else:
            rest.append(a)
    if not any(a.startswith("data=") for a in rest):
        rest.insert(0, "data=protocol")
    from datagen.worker import SampleRunner

    gen = compose("datagen", rest).data
    sv = gen.solver
    ref_over = [
        f"data.mesh.cells_per_axis={rc}",
        f"data.mesh.poro_cells=[{rc},{rc},{2 * rc}]",
        f"data.solver.initial_load_steps={4 * sv.initial_load_steps}",
        f"data.solver.visco_ramp_steps={4 * sv.visco_ramp_steps}",
        f"data.solver.visco_hold_steps={4 * sv.visco_hold_steps}",
        "data.solver.poro_step_ratio=1.1",
        "data.solver.poro_max_step=0.01",
    ]
    ref = compose("datagen", [*rest, *ref_over]).data
    rg, rr = SampleRunner(gen, eager=False), SampleRunner(ref, eager=False)
    L = float(gen.mesh.specimen_size_mm)
    print(
        f"date: {now_iso()}  device: {device_label()}  command: tests/datagen/verify_table.py {' '.join(argv)}"
    )
    print("\n| behaviour | scenario | samples | reference | max error (% of stress scale) | per sample |")
    print("|---|---|---|---|---|---|")
    for b in gen.behaviours:
        for s in gen.scenarios:
            xs, sid = [], 0
            while len(xs) < n and sid < 20000:
                x = draw_sample(gen, sid)
                sid += 1
                if x.behaviour == b and x.scenario == s:
                    xs.append(x)
            errs = []
            for x in xs:
                a = rg.run(x).stress
                if b == "poroelastic" and s == "confined_compression":
                    p = x.params
                    mu, nu, k = p["biot.mu"], p["biot.nu"], p["biot.permeability"]
                    Tv = k * 2 * mu * (1 - nu) / (1 - 2 * nu) * p["load.time_s"] / L**2
                    r = confined_step_displacement(
                        mu, nu, p["load.compression_strain"], L, Tv, rg.specimen.probe_xyz[:, 2]
                    )
                    kind = "series (exact)"
                else:
                    r = rr.run(x).stress
                    kind = f"{rc}-cell FE"
                errs.append(float(np.max(np.abs(a - r)) / np.max(np.abs(r))))
            per = ", ".join(f"{100 * e:.2f}" for e in errs)
            print(f"| {b} | {s} | {len(errs)} | {kind} | {100 * max(errs):.2f} | {per} |", flush=True)
    return 0


if __name__ == "__main__":
    t0 = time.time()
    rc = main(sys.argv[1:])
    print(f"\nwall {time.time() - t0:.0f} s")
    raise SystemExit(rc)
