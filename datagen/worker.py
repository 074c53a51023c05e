"""Solve samples inside one worker process: models are built (forms compiled) once and reused.

`SampleRunner.run(inputs)` sets the Constants of the cached model for the sample's law, resets its
state, follows the load path and returns probe outputs, or raises SampleRejected with a reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import dolfinx_solver  # noqa: F401  (must precede dolfinx/petsc4py)
import numpy as np
from mpi4py import MPI  # noqa: F401  (first: MPI before PETSc)

from datagen.poro import Biot
from datagen.sampling import SampleInputs
from datagen.solid import SampleRejected, Solid
from datagen.spec import FIBRE_LAWS, OGDEN_LAWS
from datagen.specimen import build_specimen


@dataclass
class SampleResult:
    stress: np.ndarray  # (P, 6) kPa, Cauchy
    strain: np.ndarray  # (P, 6) Green-Lagrange
    converged: bool
    newton_iterations: int
    load_steps: int


class SampleRunner:
    def __init__(self, data: Any, *, eager: bool = True) -> None:
        """Build the specimen and (eager) every model the config can draw, in a fixed order.

        Hazard: FFCx's cache key for `fem.Expression` depends on the creation counters of the
        Constants/Functions it uses, so a process that builds models in a different order than the
        process that warmed the cache recompiles every expression (seconds each). Building all
        models eagerly in the order of `all_model_combos` makes the counters, hence the keys, agree.
        """
        self.data = data
        m = data.mesh
        self.specimen = build_specimen(
            float(m.specimen_size_mm), int(m.cells_per_axis), int(m.probes_per_axis)
        )
        self._models: dict[tuple[str, str, int | None], Any] = {}
        if eager:
            self.warm(all_model_combos(data), list(data.scenarios))

    def model(self, behaviour: str, law: str, alpha: int | None) -> Any:
        key = (behaviour, law, alpha)
        if key not in self._models:
            m = self.data.mesh
            if behaviour == "poroelastic":
                self._models[key] = Biot(
                    self.specimen,
                    degree=m.displacement_degree,
                    pressure_degree=m.pressure_degree,
                    quadrature_degree=m.quadrature_degree,
                    surface_quadrature_degree=m.surface_quadrature_degree,
                    solver_cfg=self.data.solver,
                )
            else:
                self._models[key] = Solid(
                    self.specimen,
                    law,
                    degree=m.displacement_degree,
                    quadrature_degree=m.quadrature_degree,
                    surface_quadrature_degree=m.surface_quadrature_degree,
                    solver_cfg=self.data.solver,
                    viscoelastic=behaviour == "viscoelastic",
                    ogden_alpha=alpha,
                    # Mixed u-p (Taylor-Hood) on Q2: pure-displacement Q2 locks at nu ~ 0.49 on
                    # these coarse meshes (tests/datagen/test_cook.py); Q1/Q1 would be unstable.
                    pressure_degree=m.pressure_degree if m.displacement_degree >= 2 else None,
                )
        return self._models[key]

    def warm(self, combos: list[tuple[str, str, int | None]], scenarios: list[str]) -> None:
        """Compile every form a dataset needs (fills the on-disk JIT cache before workers start)."""
        for combo in combos:
            model = self.model(*combo)
            for s in scenarios:
                model.problem(s)

    def run(self, x: SampleInputs) -> SampleResult:
        model = self.model(x.behaviour, x.material_model, x.ogden_alpha)
        model.reset()
        p = x.params
        L = float(self.data.mesh.specimen_size_mm)
        if x.behaviour == "poroelastic":
            for name in ("mu", "nu", "permeability"):
                model.c[name].value = p[f"biot.{name}"]
        else:
            for name, const in model.c.items():
                const.value = p[f"{x.material_model}.{name}"]
            if x.material_model in FIBRE_LAWS:
                th = math.radians(p["load.fibre_angle_deg"])
                model.fibre.value[:] = (math.cos(th), math.sin(th), 0.0)
                model.sheet.value[:] = (-math.sin(th), math.cos(th), 0.0)
            if x.behaviour == "viscoelastic":
                model.g[0].value, model.g[1].value = p["prony.g1"], p["prony.g2"]
                model.tau[0].value, model.tau[1].value = p["prony.tau1"], p["prony.tau2"]
        _, vals = model.problem(x.scenario)
        set_load = self._load_setter(model, x, vals, L)
        sv = self.data.solver
        if x.behaviour == "poroelastic":
            t_end = p["load.time_s"]
            n = int(sv.poro_steps)
            # Geometric time grid: consolidation is fastest just after loading.
            times = list(t_end * np.geomspace(1e-3, 1.0, n)) if n > 1 else [t_end]
            stats = model.run_path(x.scenario, set_load, times)
        elif x.behaviour == "viscoelastic":
            t_ramp, t_end = float(sv.visco_ramp_time_s), p["load.time_s"]
            nr, nh = int(sv.visco_ramp_steps), int(sv.visco_hold_steps)
            path = [(t_ramp * (i + 1) / nr, (i + 1) / nr) for i in range(nr)]
            path += [(t_ramp + (t_end - t_ramp) * (i + 1) / nh, 1.0) for i in range(nh)]
            stats = model.run_path(x.scenario, set_load, path)
        else:
            n = int(sv.initial_load_steps)
            stats = model.run_path(x.scenario, set_load, [(0.0, (i + 1) / n) for i in range(n)])
        stress, strain = model.probe_outputs()
        if not (np.all(np.isfinite(stress)) and np.all(np.isfinite(strain))):
            raise SampleRejected("nan_probe_output")
        return SampleResult(stress, strain, True, stats.newton_iterations, stats.load_steps)

    def _load_setter(self, model: Any, x: SampleInputs, vals: dict[str, Any], L: float) -> Any:
        p = x.params
        ld = self.data.loads
        if x.scenario == "uniaxial":
            target = (p["load.stretch"] - 1.0) * L
            return lambda s: setattr(vals["top_uz"], "value", s * target)
        if x.scenario == "confined_compression":
            target = -p["load.compression_strain"] * L
            return lambda s: setattr(vals["top_uz"], "value", s * target)
        if x.scenario == "simple_shear":
            th = math.radians(p["load.load_angle_deg"])
            gx, gy = p["load.shear_strain"] * L * math.cos(th), p["load.shear_strain"] * L * math.sin(th)

            def set_split(s: float) -> None:
                vals["top_ux"].value = s * gx
                vals["top_uy"].value = s * gy

            return set_split
        if x.scenario == "indentation":
            th = math.radians(p["load.load_angle_deg"])
            f = float(ld.indentation_tangential_fraction)
            model.traction_dir.value[:] = (f * math.cos(th), f * math.sin(th), -1.0)
            model.patch_xy.value[:] = (p["load.patch_x_mm"], p["load.patch_y_mm"])
            model.patch_radius.value = float(ld.patch_radius_mm)
            target = p["load.pressure_kpa"]
            return lambda s: setattr(model.pressure, "value", s * target)
        raise ValueError(f"unknown scenario {x.scenario!r}")


def all_model_combos(data: Any) -> list[tuple[str, str, int | None]]:
    """Every (behaviour, law, alpha) the config can draw: the forms to compile before workers start."""
    combos: list[tuple[str, str, int | None]] = []
    for b in data.behaviours:
        for t in data.tissues:
            tc = data.tissue_library[t]
            if b == "poroelastic":
                laws = ["linear_biot"]
            elif b == "hyperelastic":
                laws = sorted(tc.hyperelastic.keys())
            else:
                laws = [str(tc.viscoelastic_law)]
            for law in laws:
                alphas: list[int | None] = [None]
                if law in OGDEN_LAWS:
                    alphas = [int(a) for a in tc.hyperelastic[law].alpha.choices]
                for a in alphas:
                    if (b, law, a) not in combos:
                        combos.append((b, law, a))
    return combos
