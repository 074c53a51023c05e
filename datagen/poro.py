"""Poroelastic specimen: small-strain Biot consolidation, mixed displacement-pressure (Taylor-Hood).

Incompressible constituents (Biot coefficient 1, storage 1/M = 0), drained isotropic skeleton
(Lame mu, lambda from mu, nu), Darcy flow with hydraulic permeability k (mm^2/(kPa s)):

    div(sigma' - p I) = 0,                sigma' = 2 mu eps(u) + lambda tr(eps) I,
    d/dt div u - div(k grad p) = 0,       backward Euler in time.

Weak form per step (u_n the previous displacement, dt > 0):

    int (sigma'(u) - p I) : eps(v) - int t0 . v ds = 0,
    int (div u - div u_n) q + dt int k grad p . grad q = 0.

The load is applied in a first increment with dt -> 0 (undrained response: div u = 0, so the
pore pressure carries the load), then held while it drains through the top face (p = 0 on z=L).
Taylor-Hood (Q2/Q1) satisfies inf-sup, so the undrained pressure does not oscillate.
Reported stress is the total stress sigma' - p I (kPa); strain is the Green-Lagrange strain of
the same u (equal to eps up to O(|grad u|^2): the Biot model here is geometrically linear).

Consolidation coefficient c_v = k (lambda + 2 mu); T_v = c_v t / H^2 (H = drainage length).
"""

from __future__ import annotations

from typing import Any

import basix.ufl
import dolfinx_solver  # noqa: F401  (must precede dolfinx/petsc4py)
import numpy as np
import ufl
from dolfinx import default_scalar_type, fem
from mpi4py import MPI  # noqa: F401  (first: MPI before PETSc)

from datagen.compiled import CompiledModel, SampleRejected, SolveStats, expression, reason_name
from datagen.materials import green_lagrange
from datagen.specimen import FACE_TAGS, Specimen, voigt

UNDRAINED_DT = 0.0  # the first increment: dt = 0 enforces div u = div u_n exactly


class Biot(CompiledModel):
    _counter = 0

    def __init__(
        self,
        specimen: Specimen,
        *,
        degree: int,
        pressure_degree: int,
        quadrature_degree: int,
        surface_quadrature_degree: int,
        solver_cfg: Any,
    ) -> None:
        Biot._counter += 1
        self.tag = f"biot{Biot._counter}_"
        self.sp = specimen
        self.solver_cfg = solver_cfg
        dom = specimen.domain
        cell = dom.topology.cell_name()
        Ue = basix.ufl.element("Lagrange", cell, degree, shape=(3,))
        Pe = basix.ufl.element("Lagrange", cell, pressure_degree)
        self.W = fem.functionspace(dom, basix.ufl.mixed_element([Ue, Pe]))
        self.w = self.state = fem.Function(self.W)
        self.w_n = fem.Function(self.W)
        self.Vu = self.W.sub(0)
        self.mixed = True
        self.saddle_point = True  # zero pressure block at dt = 0 (undrained step)
        u, p = ufl.split(self.w)
        u_n, _ = ufl.split(self.w_n)
        v, q = ufl.TestFunctions(self.W)
        const = lambda val=0.0: fem.Constant(dom, default_scalar_type(val))  # noqa: E731
        self.c = {"mu": const(1.0), "nu": const(0.3), "permeability": const(1e-3)}
        self.dt = const(0.0)
        t0 = self.indentation_traction(dom)
        mu, nu = self.c["mu"], self.c["nu"]
        lam = 2.0 * mu * nu / (1.0 - 2.0 * nu)
        eps = ufl.sym(ufl.grad(u))
        sigma_eff = 2.0 * mu * eps + lam * ufl.tr(eps) * ufl.Identity(3)
        sigma = sigma_eff - p * ufl.Identity(3)
        dx = ufl.Measure("dx", domain=dom, metadata={"quadrature_degree": quadrature_degree})
        ds = ufl.Measure(
            "ds",
            domain=dom,
            subdomain_data=specimen.facet_tags,
            metadata={"quadrature_degree": surface_quadrature_degree},
        )
        self.residual = (
            ufl.inner(sigma, ufl.sym(ufl.grad(v))) * dx
            - ufl.dot(t0, v) * ds(FACE_TAGS["z1"])
            + (ufl.div(u) - ufl.div(u_n)) * q * dx
            + self.dt * self.c["permeability"] * ufl.dot(ufl.grad(p), ufl.grad(q)) * dx
        )
        self.jacobian = ufl.derivative(self.residual, self.w)
        F = ufl.Identity(3) + ufl.grad(u)
        self.cauchy = sigma  # UFL total Cauchy stress (kPa), for datagen.show
        self._probe_sigma = expression(voigt(sigma), specimen.probe_ref)
        self._probe_E = expression(voigt(green_lagrange(F)), specimen.probe_ref)
        self._probe_p = expression(p, specimen.probe_ref)

    def bcs_for(self, scenario: str) -> tuple[list[Any], dict[str, Any]]:
        """The displacement BCs of CompiledModel.bcs_for plus drainage p = 0 on the top face z = L."""
        bcs, vals = super().bcs_for(scenario)
        Wp = self.W.sub(1)
        pdofs = fem.locate_dofs_topological(Wp, 2, self.sp.facets("z1"))
        bcs.append(fem.dirichletbc(default_scalar_type(0.0), pdofs, Wp))
        return bcs, vals

    def reset(self) -> None:
        self.w.x.array[:] = 0.0
        self.w_n.x.array[:] = 0.0
        self.pressure.value = 0.0

    def run_path(self, scenario: str, set_load: Any, times: list[float]) -> SolveStats:
        """Apply the full load undrained (dt = 0), then step through `times` (s) holding it.

        The problem is linear: one Newton iteration converges; a failure (singular factorisation,
        NaN) is not cured by cutting the step back, so it rejects the sample at once.
        """
        prob, _ = self.problem(scenario)
        stats = SolveStats()
        set_load(1.0)
        t_prev = 0.0
        for t in [0.0, *times]:
            self.dt.value = t - t_prev if t > 0 else UNDRAINED_DT
            prob.solve()
            reason = prob.solver.getConvergedReason()
            stats.newton_iterations += prob.solver.getIterationNumber()
            if reason <= 0:
                raise SampleRejected(f"newton_{reason_name(reason)}")
            if not np.all(np.isfinite(self.w.x.array)):
                raise SampleRejected("nan_solution")
            self.w_n.x.array[:] = self.w.x.array
            stats.load_steps += 1
            t_prev = t
        return stats

    def probe_outputs(self) -> tuple[np.ndarray, np.ndarray]:
        return self.sp.eval_at_probes(self._probe_sigma, 6), self.sp.eval_at_probes(self._probe_E, 6)

    def probe_pressure(self) -> np.ndarray:
        return self.sp.eval_at_probes(self._probe_p, 1)[:, 0]
