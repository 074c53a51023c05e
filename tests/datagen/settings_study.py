"""Probe stresses of chosen protocol samples under several variants of the settings (issue 17
evidence; not a test).

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python tests/datagen/settings_study.py 2,32 \\
        ref="data.mesh.poro_indentation_cells=[6,6,18] data.solver.poro_linear_solver=mumps \\
             data.solver.poro_error_estimate=false" \\
        v6="data.mesh.poro_indentation_cells=[2,2,6]" v7=""

Each variant NAME="overrides" is the protocol config plus those Hydra overrides; the FIRST variant is
the reference. Every sample id is drawn from the protocol config and solved through
`datagen.worker.SampleRunner` under each variant; prints, per sample and variant, the CPU seconds of
the solve and the error against the reference: max over probes and Voigt components of
|stress - reference| / max |reference| (the sample's stress scale), in %.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import datagen.spec  # noqa: F401  (registers the schemas)
from common.config import compose
from datagen.sampling import draw_sample

PROTOCOL = ["data=protocol"]


def main(argv: list[str]) -> int:
    if len(argv) < 2 or any("=" not in a for a in argv[1:]):
        print(
            "usage: settings_study.py SID[,SID...] NAME='overrides' [NAME='overrides' ...]", file=sys.stderr
        )
        return 2
    from datagen.worker import SampleRunner  # FEniCSx: heavy, only when the study runs

    sids = [int(a) for a in argv[0].split(",")]
    variants = [a.split("=", 1) for a in argv[1:]]
    base = compose("datagen", PROTOCOL).data
    xs = [draw_sample(base, s) for s in sids]
    stress: dict[tuple[str, int], np.ndarray] = {}
    for name, over in variants:
        runner = SampleRunner(compose("datagen", [*PROTOCOL, *over.split()]).data, eager=False)
        for x in xs:
            t0 = time.process_time()
            stress[name, x.sample_id] = runner.run(x).stress
            cpu = time.process_time() - t0
            ref = stress[variants[0][0], x.sample_id]
            err = float(np.max(np.abs(stress[name, x.sample_id] - ref)) / np.max(np.abs(ref)))
            print(
                f"sample {x.sample_id} ({x.behaviour} {x.scenario} {x.material_model}) {name}: "
                f"{100 * err:.3f}% of the stress scale vs {variants[0][0]}; CPU {cpu:.1f} s, "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
