"""Finite-strain solid on the specimen: hyperelastic or quasi-linear viscoelastic (QLV), one
compiled form per (law, alpha, behaviour), reused for every sample through `fem.Constant`s.

Weak form (total Lagrangian, dead nominal traction t0 on the top face z = L):

    R(u; v) = int_Omega P(F) : grad v dX - int_{z=L} t0 . v dA = 0,   F = I + grad u.

Hyperelastic: P = d psi / dF (datagen/materials.py). QLV with a two-term Prony series,
G(t) = g_inf + sum_i g_i exp(-t/tau_i), g_inf = 1 - sum_i g_i, acting on the elastic second
Piola-Kirchhoff stress S_e = F^-1 dpsi/dF:

    S(t) = g_inf S_e(t) + sum_i H_i(t),
    H_i^{n+1} = exp(-dt/tau_i) H_i^n + g_i beta_i (S_e^{n+1} - S_e^n),
    beta_i = (1 - exp(-dt/tau_i)) tau_i/dt,

the exact update for S_e piecewise linear in time; for a strain step applied in one increment
(beta_i -> 1 as dt -> 0) it gives S(t) = G(t) S_e, the closed form tested in test_viscoelastic.py.
H_i and S_e^n live in a discontinuous Lagrange tensor space of the displacement degree
(interpolated at its nodes after each converged increment).

Robust stepping (`Solid.run`): the load factor s in [0, 1] (and time) advance in increments; each
increment is a Newton (PETSc SNES) solve whose converged reason is checked, together with NaNs and
det F <= min_jacobian at the quadrature points. A failed increment restores the last converged
state (u and the history) and is bisected, at most `max_cutbacks` levels deep; then the sample is
rejected with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import basix.ufl
import dolfinx_solver  # noqa: F401  (must precede dolfinx/petsc4py)
import numpy as np
import ufl
from dolfinx import default_scalar_type, fem
from dolfinx.fem.petsc import NonlinearProblem
from mpi4py import MPI  # noqa: F401  (first: MPI before PETSc)
from ufl.corealg.multifunction import MultiFunction

from datagen.materials import cauchy_from_pk1, green_lagrange, strain_energy
from datagen.spec import LAW_PARAMS
from datagen.specimen import Specimen, voigt

SNES_REASON_OK = 0
# Hazard: FFCx waits only 10 s (default) for another process compiling the same form, and the
# Ogden Jacobian takes longer than that on a loaded machine: wait instead of failing.
JIT_OPTIONS = {"timeout": 1800}


class SampleRejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class SolveStats:
    load_steps: int = 0
    newton_iterations: int = 0
    cutbacks: int = 0
    failures: list[str] = field(default_factory=list)


def _petsc_options(solver_cfg: Any) -> dict[str, Any]:
    return {
        "snes_type": "newtonls",
        "snes_linesearch_type": "none",
        "snes_rtol": solver_cfg.snes_rtol,
        "snes_atol": solver_cfg.snes_atol,
        "snes_stol": 0.0,
        "snes_max_it": solver_cfg.snes_max_it,
        "ksp_type": "preonly",
        "pc_type": "lu",
        "snes_error_if_not_converged": False,
    }


class Solid:
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
    ) -> None:
        Solid._counter += 1
        self.tag = f"solid{Solid._counter}_"
        self.sp = specimen
        self.law = law
        self.viscoelastic = viscoelastic
        self.solver_cfg = solver_cfg
        dom = specimen.domain
        self.V = fem.functionspace(dom, ("Lagrange", degree, (3,)))
        self.u = fem.Function(self.V, name="u")
        v = ufl.TestFunction(self.V)
        const = lambda val=0.0: fem.Constant(dom, default_scalar_type(val))  # noqa: E731
        self.c = {p: const(1.0) for p in LAW_PARAMS[law] if p != "alpha"}
        self.fibre = fem.Constant(dom, np.array([1.0, 0.0, 0.0], dtype=default_scalar_type))
        self.sheet = fem.Constant(dom, np.array([0.0, 1.0, 0.0], dtype=default_scalar_type))
        # Indentation: Gaussian pressure patch, dead nominal traction t0 = p exp(-r^2/R^2) dir.
        self.pressure = const(0.0)
        self.patch_xy = fem.Constant(dom, np.zeros(2, dtype=default_scalar_type))
        self.patch_radius = const(1.0)
        self.traction_dir = fem.Constant(dom, np.array([0.0, 0.0, -1.0], dtype=default_scalar_type))
        X = ufl.SpatialCoordinate(dom)
        r2 = (X[0] - self.patch_xy[0]) ** 2 + (X[1] - self.patch_xy[1]) ** 2
        t0 = self.pressure * ufl.exp(-r2 / self.patch_radius**2) * self.traction_dir

        Fv = ufl.variable(ufl.Identity(3) + ufl.grad(self.u))
        psi = strain_energy(law, Fv, self.c, ogden_alpha=ogden_alpha, fibre=self.fibre, sheet=self.sheet)
        P_e = ufl.diff(psi, Fv)
        F = Fv
        self.q = quadrature_degree
        if viscoelastic:
            # History in a discontinuous Lagrange space of the displacement degree (not a quadrature
            # space): the probes need the stress at arbitrary points, and a quadrature function can
            # only be evaluated at its own points. Exact for homogeneous states; otherwise the history
            # is the nodal interpolant of the exact update.
            self.Q = fem.functionspace(dom, ("DG", degree, (3, 3)))
            self.H = [fem.Function(self.Q) for _ in range(2)]
            self.Se_old = fem.Function(self.Q)
            self.g = [const(0.0), const(0.0)]
            self.tau = [const(1.0), const(1.0)]
            self.decay = [const(1.0), const(1.0)]  # exp(-dt/tau_i), set per increment
            self.gbeta = [const(0.0), const(0.0)]  # g_i beta_i, set per increment
            S_e = ufl.inv(F) * P_e
            g_inf = 1.0 - self.g[0] - self.g[1]
            H_new = [self.decay[i] * self.H[i] + self.gbeta[i] * (S_e - self.Se_old) for i in range(2)]
            S = g_inf * S_e + H_new[0] + H_new[1]
            P = F * S
            pts = self.Q.element.interpolation_points
            self._H_new_expr = [_expression(h, pts) for h in H_new]
            self._Se_expr = _expression(S_e, pts)
        else:
            P = P_e
        dx = ufl.Measure("dx", domain=dom, metadata={"quadrature_degree": quadrature_degree})
        ds = ufl.Measure(
            "ds",
            domain=dom,
            subdomain_data=specimen.facet_tags,
            metadata={"quadrature_degree": surface_quadrature_degree},
        )
        from datagen.specimen import FACE_TAGS

        self.residual = ufl.inner(P, ufl.grad(v)) * dx - ufl.dot(t0, v) * ds(FACE_TAGS["z1"])
        self.jacobian = ufl.derivative(self.residual, self.u)
        sigma = cauchy_from_pk1(P, F)
        self._probe_sigma = _expression(voigt(sigma), specimen.probe_ref)
        self._probe_E = _expression(voigt(green_lagrange(F)), specimen.probe_ref)
        qpts, _ = basix.make_quadrature(basix.CellType.hexahedron, quadrature_degree)
        self._detF_q = _expression(ufl.det(F), qpts)
        self._problems: dict[str, tuple[NonlinearProblem, dict[str, Any]]] = {}
        self.ogden_alpha = ogden_alpha

    # ---- scenarios -------------------------------------------------------------------------------
    def _bc_component(self, face: str, comp: int) -> tuple[Any, fem.Constant]:
        dofs = fem.locate_dofs_topological(self.V.sub(comp), 2, self.sp.facets(face))
        c = fem.Constant(self.sp.domain, default_scalar_type(0.0))
        return fem.dirichletbc(c, dofs, self.V.sub(comp)), c

    def _bc_vector(self, face: str) -> tuple[Any, fem.Constant]:
        dofs = fem.locate_dofs_topological(self.V, 2, self.sp.facets(face))
        c = fem.Constant(self.sp.domain, np.zeros(3, dtype=default_scalar_type))
        return fem.dirichletbc(c, dofs, self.V), c

    def bcs_for(self, scenario: str) -> tuple[list[Any], dict[str, Any]]:
        """Dirichlet BCs of a scenario and the Constants that carry its prescribed values.

        uniaxial: symmetry planes x=0 (u_x=0), y=0 (u_y=0), z=0 (u_z=0); u_z = (lambda-1) L on z=L,
          lateral faces traction-free: a homogeneous uniaxial-stress state.
        simple_shear: u = 0 on z=0; u = gamma L (cos th, sin th, 0) on z=L; sides free.
        confined_compression: u_n = 0 on the four sides and z=0; u_z = -eps L on z=L (homogeneous).
        indentation: u = 0 on z=0; pressure patch on z=L; sides free.
        """
        bcs, vals = [], {}
        if scenario == "uniaxial":
            for face, comp in (("x0", 0), ("y0", 1), ("z0", 2)):
                bcs.append(self._bc_component(face, comp)[0])
            bc, vals["top_uz"] = self._bc_component("z1", 2)
            bcs.append(bc)
        elif scenario == "simple_shear":
            bcs.append(self._bc_vector("z0")[0])
            bc, vals["top_u"] = self._bc_vector("z1")
            bcs.append(bc)
        elif scenario == "confined_compression":
            for face, comp in (("x0", 0), ("x1", 0), ("y0", 1), ("y1", 1), ("z0", 2)):
                bcs.append(self._bc_component(face, comp)[0])
            bc, vals["top_uz"] = self._bc_component("z1", 2)
            bcs.append(bc)
        elif scenario == "indentation":
            bcs.append(self._bc_vector("z0")[0])
        elif scenario == "homogeneous":
            # Every face displaced (tests: u = H X prescribed on the whole boundary).
            for face in ("x0", "x1", "y0", "y1", "z0", "z1"):
                bc, vals[face] = self._bc_vector_function(face)
                bcs.append(bc)
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
        return bcs, vals

    def _bc_vector_function(self, face: str) -> tuple[Any, fem.Function]:
        g = fem.Function(self.V)
        dofs = fem.locate_dofs_topological(self.V, 2, self.sp.facets(face))
        return fem.dirichletbc(g, dofs), g

    def problem(self, scenario: str) -> tuple[NonlinearProblem, dict[str, Any]]:
        if scenario not in self._problems:
            bcs, vals = self.bcs_for(scenario)
            prob = NonlinearProblem(
                self.residual,
                self.u,
                bcs=bcs,
                J=self.jacobian,
                petsc_options_prefix=f"{self.tag}{scenario}_",
                petsc_options=_petsc_options(self.solver_cfg),
                jit_options=JIT_OPTIONS,
            )
            self._problems[scenario] = (prob, vals)
        return self._problems[scenario]

    # ---- state -----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Zero the state so that a sample never depends on the previous one (determinism)."""
        self.u.x.array[:] = 0.0
        self.pressure.value = 0.0
        if self.viscoelastic:
            for h in (*self.H, self.Se_old):
                h.x.array[:] = 0.0

    def _save(self) -> list[np.ndarray]:
        arrs = [self.u.x.array.copy()]
        if self.viscoelastic:
            arrs += [h.x.array.copy() for h in (*self.H, self.Se_old)]
        return arrs

    def _restore(self, saved: list[np.ndarray]) -> None:
        self.u.x.array[:] = saved[0]
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
        if not np.all(np.isfinite(self.u.x.array)):
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


def _expression(expr: Any, points: np.ndarray) -> fem.Expression:
    """fem.Expression with derivatives expanded and `ufl.variable` labels stripped.

    Hazard: FFCx keys its JIT cache for expressions on a signature that includes each Label's
    global creation counter (forms are preprocessed, expressions are not), so an expression that
    still holds `ufl.variable` recompiles (tens of seconds for Ogden) in every process and for
    every new model. Stripping the labels makes the key depend on the maths only.
    """
    from ufl.algorithms import expand_derivatives
    from ufl.corealg.map_dag import map_expr_dag

    # Hazard: ufl's `strip_variables` is not memoised and takes exponential time on the shared
    # sub-expressions of an Ogden derivative; map_expr_dag visits each DAG node once.
    return fem.Expression(
        map_expr_dag(_StripVariables(), expand_derivatives(expr)), points, jit_options=JIT_OPTIONS
    )


class _StripVariables(MultiFunction):
    expr = MultiFunction.reuse_if_untouched

    def variable(self, o: Any, expr: Any, label: Any) -> Any:
        return expr


def _reason_name(reason: int) -> str:
    from petsc4py import PETSc

    for name in dir(PETSc.SNES.ConvergedReason):
        if not name.startswith("_") and getattr(PETSc.SNES.ConvergedReason, name) == reason:
            return name.lower()
    return str(reason)
