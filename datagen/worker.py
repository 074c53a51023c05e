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
    converged: bool  # every increment solved (Newton converged / linear solve finite) and the
    # estimated discretisation error, where estimated, <= data.solver.error_tolerance
    newton_iterations: int
    load_steps: int
    error_estimate: float  # estimated discretisation error / stress scale; NaN where not estimated


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
        n = int(m.cells_per_axis)
        self._specimens: dict[tuple[tuple[int, int, int], float], Any] = {((n, n, n), 1.0): self.specimen}
        self._models: dict[tuple[str, str, int | None, int], Any] = {}
        if eager:
            self.warm(all_model_combos(data), list(data.scenarios))

    def cells_for(self, behaviour: str, scenario: str) -> tuple[int, int, int]:
        """Cells (x, y, z) of the mesh a (behaviour, scenario) is solved on: the solids on
        `mesh.cells_per_axis` (indentation: `mesh.indentation_cells`), Biot on `mesh.poro_cells`
        (indentation: `mesh.poro_indentation_cells`), z-graded towards the drained top face."""
        m = self.data.mesh
        if behaviour == "poroelastic":
            cells = m.poro_indentation_cells if scenario == "indentation" else m.poro_cells
            return (int(cells[0]), int(cells[1]), int(cells[2]))
        n = int(m.indentation_cells if scenario == "indentation" else m.cells_per_axis)
        return (n, n, n)

    def specimen_for(self, behaviour: str, scenario: str) -> Any:
        """The mesh of `cells_for`, same probe points as `self.specimen` (built once per cell count)."""
        m = self.data.mesh
        key = (
            self.cells_for(behaviour, scenario),
            float(m.poro_z_grading) if behaviour == "poroelastic" else 1.0,
        )
        if key not in self._specimens:
            self._specimens[key] = build_specimen(
                float(m.specimen_size_mm),
                int(m.cells_per_axis),
                int(m.probes_per_axis),
                cells=key[0],
                probes=self.specimen.probe_xyz,
                z_grading=key[1],
            )
        return self._specimens[key]

    def model(self, behaviour: str, law: str, alpha: int | None, scenario: str = "uniaxial") -> Any:
        """The compiled model of (behaviour, law, alpha) on the mesh of `scenario` (`cells_for`)."""
        sp = self.specimen_for(behaviour, scenario)
        key = (behaviour, law, alpha, id(sp))
        if key not in self._models:
            m = self.data.mesh
            if behaviour == "poroelastic":
                self._models[key] = Biot(
                    sp,
                    degree=m.displacement_degree,
                    pressure_degree=m.pressure_degree,
                    quadrature_degree=m.quadrature_degree,
                    surface_quadrature_degree=m.surface_quadrature_degree,
                    solver_cfg=self.data.solver,
                )
            else:
                self._models[key] = Solid(
                    sp,
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
            for s in scenarios:
                self.model(*combo, scenario=s).problem(s)

    def run(self, x: SampleInputs) -> SampleResult:
        model = self.model(x.behaviour, x.material_model, x.ogden_alpha, x.scenario)
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
            mu, nu, k = p["biot.mu"], p["biot.nu"], p["biot.permeability"]
            c_v = k * 2 * mu * (1 - nu) / (1 - 2 * nu)  # k (lambda + 2 mu), mm^2/s
            times = poro_times(p["load.time_s"], L**2 / c_v, sv)
            stats = model.run_path(
                x.scenario, set_load, times, scheme=str(sv.poro_scheme), estimate=bool(sv.poro_error_estimate)
            )
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
        if stats.error_estimate > float(sv.error_tolerance):  # NaN (not estimated) compares False
            raise SampleRejected("discretisation_error_above_tolerance")
        return SampleResult(
            stress, strain, True, stats.newton_iterations, stats.load_steps, stats.error_estimate
        )

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
            gx, gy = p["load.shear_strain"] * math.cos(th), p["load.shear_strain"] * math.sin(th)
            g, (bx, by) = vals["shear"], vals["shear_basis"]

            def set_shear(s: float) -> None:
                g.x.array[:] = (s * gx) * bx + (s * gy) * by

            return set_shear
        if x.scenario == "indentation":
            th = math.radians(p["load.load_angle_deg"])
            f = float(ld.indentation_tangential_fraction)
            model.traction_dir.value[:] = (f * math.cos(th), f * math.sin(th), -1.0)
            model.patch_xy.value[:] = (p["load.patch_x_mm"], p["load.patch_y_mm"])
            model.patch_radius.value = float(ld.patch_radius_mm)
            target = p["load.pressure_kpa"]
            return lambda s: setattr(model.pressure, "value", s * target)
        raise ValueError(f"unknown scenario {x.scenario!r}")


def poro_times(t_end: float, time_scale: float, sv: Any) -> list[float]:
    """Time grid (s) from 0 to `t_end` for consolidation after a step load.

    In the dimensionless time T = t / time_scale (time_scale = H^2 / c_v): the first step is
    `poro_first_step`, each next step `poro_step_ratio` times the previous one (the sqrt(T) boundary
    layer right after loading), capped at `poro_max_step` (the slow modes later; the first decays
    like exp(-pi^2 T / 4) or faster). The last step ends exactly at t_end: if it would be shorter
    than 0.3 of the one before, the point before it is dropped (that step is then at most 1.3x
    poro_step_ratio <= 1.5 times the one before: inside BDF2's zero-stability bound 1 + sqrt 2).
    """
    T_end = t_end / time_scale
    dT, T = float(sv.poro_first_step), 0.0
    grid: list[float] = []
    while T_end * (1 - 1e-12) > T:
        T = min(T + dT, T_end)
        grid.append(T)
        dT = min(dT * float(sv.poro_step_ratio), float(sv.poro_max_step))
    if len(grid) >= 3 and grid[-1] - grid[-2] < 0.3 * (grid[-2] - grid[-3]):
        del grid[-2]
    return [T * time_scale for T in grid]


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
