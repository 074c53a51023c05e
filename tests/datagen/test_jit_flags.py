"""data.solver.jit_opt_level: the gcc -O level of the compiled forms reaches the compiler, solves the
same problem, makes its own dataset_id unless it is the default, and a bad value is one line (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from common.config import compose
from datagen.dataset import dataset_id
from datagen.solid import Solid
from datagen.specimen import build_specimen


def with_level(solver_cfg: Any, level: int) -> Any:
    cfg = OmegaConf.create(OmegaConf.to_container(solver_cfg, resolve=True))
    cfg.jit_opt_level = level
    return cfg


def gcc_line(form: Any) -> str:
    """The gcc compile command FFCx ran for `form` (cffi's log, kept beside the module)."""
    mod = form.module
    log = Path(mod.__file__).parent / f"{mod.__name__}.c.cached"
    return next(line for line in log.read_text().splitlines() if line.startswith("gcc") and " -c " in line)


def uniaxial_neo_hookean(solver_cfg: Any) -> tuple[np.ndarray, Any]:
    solid = Solid(
        build_specimen(10.0, 1, 2),
        "neo_hookean",
        degree=2,
        quadrature_degree=4,
        surface_quadrature_degree=4,
        solver_cfg=solver_cfg,
        pressure_degree=1,
    )
    solid.c["mu"].value, solid.c["nu"].value = 1.7, 0.47
    solid.reset()
    prob, vals = solid.problem("uniaxial")
    solid.run_path("uniaxial", lambda s: setattr(vals["top_uz"], "value", s * -1.5), [(0.0, 0.5), (0.0, 1.0)])
    sigma, strain = solid.probe_outputs()
    return np.concatenate([sigma, strain], axis=1), prob


def test_opt_level_reaches_gcc_and_solves_the_same_problem(solver_cfg: Any) -> None:
    out = {}
    for level in (0, 2):
        out[level], prob = uniaxial_neo_hookean(with_level(solver_cfg, level))
        for form in (prob.F, prob.J):
            line = gcc_line(form)
            # the last -O wins: ours comes after Python's own CFLAGS (-O3)
            assert line.rstrip().endswith(f"-O{level} -g0"), line
    assert np.isfinite(out[0]).all() and np.abs(out[0]).max() > 0.1
    # Not bit for bit in general (a Holzapfel-Ogden sample differs in its last bits): rounding only.
    np.testing.assert_allclose(out[0], out[2], rtol=1e-12, atol=1e-14)


# dataset ids of the code before the knob existed (e9c6d21): -O2 datasets keep them.
IDS_BEFORE = {"smoke": "77f6e6a5f490", "pilot": "be4e162aaad2", "protocol": "39a35791fc1c"}


def test_smoke_compiles_at_o0_production_at_o2_and_only_o2_keeps_the_old_ids() -> None:
    data = {n: compose("datagen", [f"data={n}"]).data for n in IDS_BEFORE}
    assert data["smoke"].solver.jit_opt_level == 0
    assert data["pilot"].solver.jit_opt_level == data["protocol"].solver.jit_opt_level == 2
    # the pilot at 4,000 training and 500 test samples, as it was then (conf/data/pilot.yaml now has
    # 12,000 and 2,500)
    pilot_4k = compose("datagen", ["data=pilot", "data.splits.train=4000", "data.splits.test=500"]).data
    assert dataset_id(pilot_4k) == IDS_BEFORE["pilot"]
    # 12,000 training and 500 test samples: the v2/v3 pilots' data, whose samples the 2,500-test
    # dataset repeats (contiguous sample ids: train, val, then test)
    pilot_500 = compose("datagen", ["data=pilot", "data.splits.test=500"]).data
    assert dataset_id(pilot_500) == "e44fd99ef17b"
    assert dataset_id(data["protocol"]) == IDS_BEFORE["protocol"]
    smoke_o2 = compose("datagen", ["data=smoke", "data.solver.jit_opt_level=2"]).data
    assert dataset_id(smoke_o2) == IDS_BEFORE["smoke"]
    ids = {
        dataset_id(compose("datagen", ["data=smoke", f"data.solver.jit_opt_level={n}"]).data)
        for n in range(4)
    }
    assert len(ids) == 4  # every level its own dataset


def test_bad_opt_level_is_one_line_exit_2_before_work(tmp_path: Path) -> None:
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "datagen",
            "data=smoke",
            "data.solver.jit_opt_level=5",
            f"results_root={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2
    err = p.stderr.strip()
    assert "\n" not in err and "data.solver.jit_opt_level=5" in err and "[0, 1, 2, 3]" in err
    assert list(tmp_path.iterdir()) == []
