"""Finite-strain solid on the specimen: hyperelastic or quasi-linear viscoelastic (QLV), one
compiled form per (law, alpha, behaviour), reused for every sample through `fem.Constant`s.

Weak form (total Lagrangian, dead nominal traction t0 on the top face z = L):

    R(u; v) = int_Omega P(F) : grad v dX - int_{z=L} t0 . v dA = 0,   F = I + grad u.

Hyperelastic: P = d psi / dF (datagen/materials.py).

Mixed displacement-pressure (Taylor-Hood Q2/Q1, `pressure_degree` given; the production
formulation): with psi = psi_rest + K/2 (ln J)^2 (materials.strain_energy_parts), the energy is
written psi_rest + p ln J - p^2/(2K), whose stationarity in p gives p = K ln J pointwise, i.e. the
same continuum law, but the discrete volumetric constraint is only imposed against the Q1
pressures, which removes volumetric locking (pure-displacement Q2 loses 19% of the Cook's membrane
tip deflection at nu = 0.49 on a 2 x 2 mesh: tests/datagen/test_cook.py). Residuals:

    int P : grad v dX - int t0 . v dA = 0,   P = d(psi_rest + p ln J)/dF,
    int (ln J - p/K) q dX = 0                 (ln J = 0, i.e. J = 1, for incompressible laws).

p/J is the mean Cauchy stress (tension positive); sigma = J^-1 P F^T includes it.

QLV with a two-term Prony series, G(t) = g_inf + sum_i g_i exp(-t/tau_i), g_inf = 1 - sum_i g_i,
acting on the second Piola-Kirchhoff stress of psi_rest, S_e = F^-1 dpsi_rest/dF; the volumetric
stress S_vol = F^-1 d(vol)/dF = (p or K ln J) C^-1 is elastic (does not relax), as in the usual
finite-strain viscoelasticity of nearly incompressible tissue (relaxation in shear, not in bulk):

    S(t) = g_inf S_e(t) + sum_i H_i(t) + S_vol(t),
    H_i^{n+1} = exp(-dt/tau_i) H_i^n + g_i beta_i (S_e^{n+1} - S_e^n),
    beta_i = (1 - exp(-dt/tau_i)) tau_i/dt,

the exact update for S_e piecewise linear in time; for a strain step applied in one increment
(beta_i -> 1 as dt -> 0) it gives S(t) = G(t) S_e + S_vol, the closed form tested in
test_viscoelastic.py. Hazard (why the volumetric part is elastic): relaxing p C^-1 as well makes the
mixed problem drift in volume during the hold and Newton diverge (seen: Ogden alpha = -24, simple
shear 0.24, nu 0.48); relaxing K ln J C^-1 in the pure-displacement form relaxes the bulk modulus
with the shear modulus, which a near-incompressible tissue does not do.
H_i and S_e^n live in a discontinuous tensor space of the displacement degree with Legendre dofs
(per-cell L2 projection from interior points after each converged increment).

Robust stepping (`Solid.run`): the load factor s in [0, 1] (and time) advance in increments; each
increment is a Newton (PETSc SNES) solve whose converged reason is checked, together with NaNs and
det F <= min_jacobian at the quadrature points. A failed increment restores the last converged
state (u and the history) and is bisected, at most `max_cutbacks` levels deep; then the sample is
rejected with the reason.
"""

from __future__ import annotations

from typing import Any

import basix.ufl
import dolfinx_solver  # noqa: F401  (must precede dolfinx/petsc4py)
import numpy as np
import ufl
from dolfinx import default_scalar_type, fem
from dolfinx.fem.petsc import NonlinearProblem
from mpi4py import MPI  # noqa: F401  (first: MPI before PETSc)

from datagen.compiled import (
    SNES_REASON_OK,
    CompiledModel,
    SampleRejected,
    SolveStats,
)
from datagen.compiled import expression as _expression
from datagen.compiled import reason_name as _reason_name
from datagen.materials import INCOMPRESSIBLE_LAWS, cauchy_from_pk1, green_lagrange, strain_energy_parts
from datagen.spec import LAW_PARAMS
from datagen.specimen import FACE_TAGS, Specimen, voigt

__all__ = ["SampleRejected", "Solid", "SolveStats"]


class Solid(CompiledModel):
    """One compiled finite-strain model; scenarios are sets of Dirichlet BCs with Constant values."""

    _counter = 0

    def __init__(
        self,
        specimen: Specimen,
        law: str,
        *,
        degree: int,
        quadrature_degree: int,
        surface_quadrature_degree: int,
        solver_cfg: Any,
        viscoelastic: bool = False,
        ogden_alpha: int | None = None,
        pressure_degree: int | None = None,
        traction_face: str = "z1",
    ) -> None:
        """`pressure_degree` None: pure-displacement formulation (locks near incompressibility:
        kept for the locking demonstration and degree-1 meshes); an int: mixed u-p (production).
        `traction_face`: the face carrying the dead traction t0 (the indentation patch)."""
        Solid._counter += 1
        self.tag = f"solid{Solid._counter}_"
        self.sp = specimen
        self.law = law
        self.viscoelastic = viscoelastic
        self.solver_cfg = solver_cfg
        self.incompressible = law in INCOMPRESSIBLE_LAWS
        if self.incompressible and pressure_degree is None:
            raise ValueError(f"{law} needs the mixed formulation (pressure_degree)")
        self.mixed = self.saddle_point = pressure_degree is not None
        dom = specimen.domain
        cell = dom.topology.cell_name()
        if self.mixed:
            Ue = basix.ufl.element("Lagrange", cell, degree, shape=(3,))
            Pe = basix.ufl.element("Lagrange", cell, pressure_degree)
            self.W = fem.functionspace(dom, basix.ufl.mixed_element([Ue, Pe]))
            self.state = fem.Function(self.W, name="u_p")
            u, p = ufl.split(self.state)
            v, q_test = ufl.TestFunctions(self.W)
            self.Vu = self.W.sub(0)
        else:
            self.W = fem.functionspace(dom, ("Lagrange", degree, (3,)))
            self.state = fem.Function(self.W, name="u")
            u, v = self.state, ufl.TestFunction(self.W)
            self.Vu = self.W
        self.u = self.state  # the solved-for Function (u, or (u, p) when mixed)
        const = lambda val=0.0: fem.Constant(dom, default_scalar_type(val))  # noqa: E731
        self.c = {name: const(1.0) for name in LAW_PARAMS[law] if name != "alpha"}
        self.fibre = fem.Constant(dom, np.array([1.0, 0.0, 0.0], dtype=default_scalar_type))
        self.sheet = fem.Constant(dom, np.array([0.0, 1.0, 0.0], dtype=default_scalar_type))
        t0 = self.indentation_traction(dom)  # indentation: Gaussian pressure patch

        Fv = ufl.variable(ufl.Identity(3) + ufl.grad(u))
        psi_rest, K = strain_energy_parts(
            law, Fv, self.c, ogden_alpha=ogden_alpha, fibre=self.fibre, sheet=self.sheet
        )
        lnJ = ufl.ln(ufl.det(Fv))
        vol = p * lnJ if self.mixed else K / 2 * lnJ**2
        P_rest, P_vol = ufl.diff(psi_rest, Fv), ufl.diff(vol, Fv)
        P_e = P_rest + P_vol
        F = Fv
        self.q = quadrature_degree
        if viscoelastic:
            # History in a discontinuous space of the displacement degree with Legendre (integral
            # moment) dofs, i.e. the per-cell L2 projection computed from interior quadrature
            # points; not a quadrature space, because the probes need the stress at arbitrary
            # points. Hazard: nodal (point-evaluation) DG dofs sample S_e at the cell corners,
            # which on these coarse meshes lie on the singular free-edge/clamped-face lines; with
            # Ogden alpha = -24 the nodal history grew 0.4 -> 435 kPa over three increments and
            # Newton diverged. Exact for homogeneous states.
            self.Q = fem.functionspace(
                dom,
                basix.ufl.element(
                    "DG", cell, degree, shape=(3, 3), lagrange_variant=basix.LagrangeVariant.legendre
                ),
            )
            self.H = [fem.Function(self.Q) for _ in range(2)]
            self.Se_old = fem.Function(self.Q)
            self.g = [const(0.0), const(0.0)]
            self.tau = [const(1.0), const(1.0)]
            self.decay = [const(1.0), const(1.0)]  # exp(-dt/tau_i), set per increment
            self.gbeta = [const(0.0), const(0.0)]  # g_i beta_i, set per increment
            S_e = ufl.inv(F) * P_rest
            g_inf = 1.0 - self.g[0] - self.g[1]
            H_new = [self.decay[i] * self.H[i] + self.gbeta[i] * (S_e - self.Se_old) for i in range(2)]
            S = g_inf * S_e + H_new[0] + H_new[1] + ufl.inv(F) * P_vol
            P = F * S
            pts = self.Q.element.interpolation_points
            self._H_new_expr = [_expression(h, pts, solver_cfg) for h in H_new]
            self._Se_expr = _expression(S_e, pts, solver_cfg)
        else:
            P = P_e
        dx = ufl.Measure("dx", domain=dom, metadata={"quadrature_degree": quadrature_degree})
        ds = ufl.Measure(
            "ds",
            domain=dom,
            subdomain_data=specimen.facet_tags,
            metadata={"quadrature_degree": surface_quadrature_degree},
        )
        self.residual = ufl.inner(P, ufl.grad(v)) * dx - ufl.dot(t0, v) * ds(FACE_TAGS[traction_face])
        if self.mixed:
            constraint = lnJ if self.incompressible else lnJ - p / K
            self.residual += constraint * q_test * dx
        self.jacobian = ufl.derivative(self.residual, self.u)
        sigma = cauchy_from_pk1(P, F)
        self.cauchy = sigma  # UFL Cauchy stress (kPa), for datagen.show
        self._probe_sigma = _expression(voigt(sigma), specimen.probe_ref, solver_cfg)
        self._probe_E = _expression(voigt(green_lagrange(F)), specimen.probe_ref, solver_cfg)
        qpts, _ = basix.make_quadrature(basix.CellType.hexahedron, quadrature_degree)
        self._detF_q = _expression(ufl.det(F), qpts, solver_cfg)
        self.ogden_alpha = ogden_alpha

    # ---- scenarios -------------------------------------------------------------------------------

    # ---- state -----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Zero the state so that a sample never depends on the previous one (determinism)."""
        self.state.x.array[:] = 0.0
        self.pressure.value = 0.0
        if self.viscoelastic:
            for h in (*self.H, self.Se_old):
                h.x.array[:] = 0.0

    def _save(self) -> list[np.ndarray]:
        arrs = [self.state.x.array.copy()]
        if self.viscoelastic:
            arrs += [h.x.array.copy() for h in (*self.H, self.Se_old)]
        return arrs

    def _restore(self, saved: list[np.ndarray]) -> None:
        self.state.x.array[:] = saved[0]
        if self.viscoelastic:
            for h, a in zip((*self.H, self.Se_old), saved[1:]):
                h.x.array[:] = a

    def _set_dt(self, dt: float) -> None:
        if not self.viscoelastic:
            return
        for i in range(2):
            tau = float(self.tau[i].value)
            g = float(self.g[i].value)
            if dt <= 0:
                decay, beta = 1.0, 1.0  # an instantaneous step: no relaxation during it
            else:
                decay = float(np.exp(-dt / tau))
                beta = float(-np.expm1(-dt / tau) * tau / dt)
            self.decay[i].value = decay
            self.gbeta[i].value = g * beta

    def _commit_history(self) -> None:
        if not self.viscoelastic:
            return
        new = []
        for e in self._H_new_expr:
            f = fem.Function(self.Q)
            f.interpolate(e)
            new.append(f.x.array.copy())
        self.Se_old.interpolate(self._Se_expr)
        for h, a in zip(self.H, new):
            h.x.array[:] = a
        # Hazard: P (and the probe stress) is written with the *update* H_new = decay H + ...; after
        # committing, the update must be the identity, or the output decays the history twice.
        for i in range(2):
            self.decay[i].value = 1.0

    def min_jacobian(self) -> float:
        return float(np.min(self._detF_q.eval(self.sp.domain, self.sp.all_cells)))

    # ---- solving ---------------------------------------------------------------------------------
    def _try_increment(
        self, prob: NonlinearProblem, set_load: Any, s: float, dt: float, stats: SolveStats
    ) -> str | None:
        set_load(s)
        self._set_dt(dt)
        prob.solve()
        snes = prob.solver
        reason = snes.getConvergedReason()
        its = snes.getIterationNumber()
        stats.newton_iterations += its
        if reason <= SNES_REASON_OK:
            return f"newton_{_reason_name(reason)}"
        if not np.all(np.isfinite(self.state.x.array)):
            return "nan_solution"
        if self.min_jacobian() <= self.solver_cfg.min_jacobian:
            return "element_inversion"
        return None

    def run_path(
        self,
        scenario: str,
        set_load: Any,
        path: list[tuple[float, float]],
        start: tuple[float, float] = (0.0, 0.0),
    ) -> SolveStats:
        """Follow (time s, load factor) points from `start`; bisect failed increments; raise SampleRejected."""
        prob, _ = self.problem(scenario)
        stats = SolveStats()
        t_prev, s_prev = start
        for t, s in path:
            self._advance(prob, set_load, t_prev, s_prev, t, s, 0, stats)
            t_prev, s_prev = t, s
        return stats

    def _advance(
        self,
        prob: NonlinearProblem,
        set_load: Any,
        t0: float,
        s0: float,
        t1: float,
        s1: float,
        depth: int,
        stats: SolveStats,
    ) -> None:
        saved = self._save()
        failure = self._try_increment(prob, set_load, s1, t1 - t0, stats)
        if failure is None:
            self._commit_history()
            stats.load_steps += 1
            return
        self._restore(saved)
        stats.failures.append(failure)
        if depth >= self.solver_cfg.max_cutbacks:
            raise SampleRejected(failure)
        stats.cutbacks += 1
        tm, sm = 0.5 * (t0 + t1), 0.5 * (s0 + s1)
        self._advance(prob, set_load, t0, s0, tm, sm, depth + 1, stats)
        self._advance(prob, set_load, tm, sm, t1, s1, depth + 1, stats)

    def probe_outputs(self) -> tuple[np.ndarray, np.ndarray]:
        """Cauchy stress (P, 6) kPa and Green-Lagrange strain (P, 6) at the probes, Voigt order."""
        return self.sp.eval_at_probes(self._probe_sigma, 6), self.sp.eval_at_probes(self._probe_E, 6)
