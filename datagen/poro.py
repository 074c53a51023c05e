"""Poroelastic specimen: small-strain Biot consolidation, mixed displacement-pressure (Taylor-Hood).

Incompressible constituents (Biot coefficient 1, storage 1/M = 0), drained isotropic skeleton
(Lame mu, lambda from mu, nu), Darcy flow with hydraulic permeability k (mm^2/(kPa s)):

    div(sigma' - p I) = 0,                sigma' = 2 mu eps(u) + lambda tr(eps) I,
    d/dt div u - div(k grad p) = 0,       variable-step BDF2 in time (first step backward Euler).

Weak form per step (u_n, u_nm1 the two previous displacements, dt = t_{n+1} - t_n > 0):

    int (sigma'(u) - p I) : eps(v) - int t0 . v ds = 0,
    int (a0 div u + a1 div u_n + a2 div u_nm1) q + dt int k grad p . grad q = 0,

with backward Euler (a0, a1, a2) = (1, -1, 0) and BDF2, w = dt / dt_prev,
(a0, a1, a2) = ((1 + 2w)/(1 + w), -(1 + w), w^2/(1 + w)) (second order on a variable grid,
zero-stable for w < 1 + sqrt 2). Backward Euler's first-order error on the generator's few steps was
30-40% of the stress in confined compression at T_v <= 0.3 (issue 17); see datagen/README.md.

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
import scipy.sparse
import scipy.sparse.linalg
import ufl
from dolfinx import default_scalar_type, fem
from mpi4py import MPI  # noqa: F401  (first: MPI before PETSc)
from petsc4py import PETSc

from datagen.compiled import (
    CompiledModel,
    SampleRejected,
    SolveStats,
    expression,
    jit_options,
)
from datagen.materials import green_lagrange
from datagen.specimen import FACE_TAGS, Specimen, voigt

UNDRAINED_DT = 0.0  # the first increment: dt = 0 enforces div u = div u_n exactly
POROELASTIC_SCHEMES = ("bdf2", "backward_euler")
POROELASTIC_LINEAR_SOLVERS = ("superlu", "mumps")


class SparseLU:
    """LU factorisation of a scipy sparse matrix; `solve(b)` -> x. SuperLU (scipy; COLAMD ordering,
    the generator's default) or MUMPS through PETSc (nested-dissection-type orderings: 3-4x less
    CPU on the refined reference meshes, e.g. 1.0-1.3 s vs 4.1 s per factorisation on [6, 6, 18]).
    Both pivot across the u-p blocks; they agree to rounding (1e-13 relative, issue 17 probe).
    Raises SampleRejected("singular_matrix") when the factorisation fails."""

    def __init__(self, A: Any, solver: str) -> None:
        if solver not in POROELASTIC_LINEAR_SOLVERS:
            raise ValueError(f"unknown linear solver {solver!r}; one of {POROELASTIC_LINEAR_SOLVERS}")
        self.solver = solver
        if solver == "superlu":
            try:
                self._lu = scipy.sparse.linalg.splu(A.tocsc())
            except RuntimeError as e:  # "Factor is exactly singular"
                raise SampleRejected("singular_matrix") from e
            return
        A = A.tocsr()
        A.sort_indices()
        self._mat = PETSc.Mat().createAIJ(
            size=A.shape,
            csr=(A.indptr.astype(PETSc.IntType), A.indices.astype(PETSc.IntType), A.data),
            comm=PETSc.COMM_SELF,
        )
        self._ksp = PETSc.KSP().create(PETSc.COMM_SELF)
        self._ksp.setOperators(self._mat)
        self._ksp.setType("preonly")
        pc = self._ksp.getPC()
        pc.setType("lu")
        pc.setFactorSolverType("mumps")
        try:
            self._ksp.setUp()
        except PETSc.Error as e:
            raise SampleRejected("singular_matrix") from e
        if pc.getFailedReason() != 0:
            raise SampleRejected("singular_matrix")
        self._b, self._x = self._mat.createVecRight(), self._mat.createVecLeft()

    def solve(self, b: np.ndarray) -> np.ndarray:
        if self.solver == "superlu":
            return np.asarray(self._lu.solve(b))
        self._b.array[:] = b
        self._ksp.solve(self._b, self._x)
        if self._ksp.getConvergedReason() < 0:  # a failed factorisation surfaces here
            raise SampleRejected("singular_matrix")
        return np.array(self._x.array)

    def close(self) -> None:
        if self.solver == "mumps":
            for obj in (self._ksp, self._mat, self._b, self._x):
                obj.destroy()


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
        self.w_nm1 = fem.Function(self.W)
        self.Vu = self.W.sub(0)
        self.mixed = True
        self.saddle_point = True  # zero pressure block at dt = 0 (undrained step)
        self.guided_top_platen = False  # uniaxial: lateral displacement varies with z (drained top)
        u, p = ufl.split(self.w)
        u_n, _ = ufl.split(self.w_n)
        u_nm1, _ = ufl.split(self.w_nm1)
        v, q = ufl.TestFunctions(self.W)
        const = lambda val=0.0: fem.Constant(dom, default_scalar_type(val))  # noqa: E731
        self.c = {"mu": const(1.0), "nu": const(0.3), "permeability": const(1e-3)}
        self.dt = const(0.0)
        self.bdf = [const(1.0), const(-1.0), const(0.0)]  # a0, a1, a2 (backward Euler)
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
            + (self.bdf[0] * ufl.div(u) + self.bdf[1] * ufl.div(u_n) + self.bdf[2] * ufl.div(u_nm1)) * q * dx
            + self.dt * self.c["permeability"] * ufl.dot(ufl.grad(p), ufl.grad(q)) * dx
        )
        self.jacobian = ufl.derivative(self.residual, self.w)
        # The linear path of run_path: the operator is mu K_mu + lambda K_lam + G + a0 B + dt k C, each
        # part assembled once per mesh with unit coefficients; only the traction load and the BC
        # values change per sample.
        du, dp = ufl.TrialFunctions(self.W)
        e_u, e_v = ufl.sym(ufl.grad(du)), ufl.sym(ufl.grad(v))
        jit = jit_options(solver_cfg)
        self._unit_forms = {
            "K_mu": fem.form(2.0 * ufl.inner(e_u, e_v) * dx, jit_options=jit),
            "K_lam": fem.form(ufl.div(du) * ufl.div(v) * dx, jit_options=jit),
            "G": fem.form(-dp * ufl.div(v) * dx, jit_options=jit),
            "B": fem.form(ufl.div(du) * q * dx, jit_options=jit),
            "C": fem.form(ufl.dot(ufl.grad(dp), ufl.grad(q)) * dx, jit_options=jit),
        }
        self._load_form = fem.form(ufl.dot(t0, v) * ds(FACE_TAGS["z1"]), jit_options=jit)
        self._unit: dict[str, Any] = {}
        F = ufl.Identity(3) + ufl.grad(u)
        self.cauchy = sigma  # UFL total Cauchy stress (kPa), for datagen.show
        self._probe_sigma = expression(voigt(sigma), specimen.probe_ref, solver_cfg)
        self._probe_E = expression(voigt(green_lagrange(F)), specimen.probe_ref, solver_cfg)
        self._probe_p = expression(p, specimen.probe_ref, solver_cfg)

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
        self.w_nm1.x.array[:] = 0.0
        self.pressure.value = 0.0
        self.set_bdf(1.0, -1.0, 0.0)

    def set_bdf(self, a0: float, a1: float, a2: float) -> None:
        for c, v in zip(self.bdf, (a0, a1, a2), strict=True):
            c.value = v

    def unit_matrices(self) -> dict[str, Any]:
        """The operator's parts with unit coefficients (scipy CSR), assembled once per model."""
        if not self._unit:
            self._unit = {k: fem.assemble_matrix(f).to_scipy().tocsr() for k, f in self._unit_forms.items()}
        return self._unit

    def run_path(
        self, scenario: str, set_load: Any, times: list[float], scheme: str = "bdf2", estimate: bool = False
    ) -> SolveStats:
        """Apply the full load undrained (dt = 0), then step through `times` (s) holding it.

        `scheme`: "bdf2" (variable-step BDF2 after a first backward-Euler step) or
        "backward_euler". The problem is linear, so each step is one sparse LU solve on the free dofs
        (`solver.poro_linear_solver`: SuperLU or MUMPS, both pivot across the u-p blocks); the
        factorisation is reused while the step (dt, a0) does not change. The result equals the solution of `residual` = 0 (the
        NonlinearProblem path, used by datagen.show and tests/datagen/test_poroelastic.py).
        A singular or non-finite solve rejects the sample (cutting the step back would not cure it).

        `estimate`: also march on every other point of `times` (ending at the same time) and set
        `stats.error_estimate` = max |probe stress difference| / 3 / max |probe stress| (step
        doubling with Richardson's factor 2^2 - 1 for a second-order scheme: the estimated time
        error of the stored, full-grid solution; backward Euler uses 2^1 - 1 = 1). It does not see
        the spatial error (README, "Verification at the generator's settings").
        """
        if scheme not in POROELASTIC_SCHEMES:
            raise ValueError(f"unknown time scheme {scheme!r}; one of {POROELASTIC_SCHEMES}")
        self.problem(scenario)  # creates the BCs and their value Constants (set by set_load)
        stats = SolveStats()
        set_load(1.0)
        x = self._march(scenario, times, scheme, stats)
        if estimate:
            half = times[::-2][::-1]  # every other time, ending at times[-1]
            xh = self._march(scenario, half, scheme, SolveStats())
            self._set_state(xh)
            sh = self.probe_outputs()[0]
            self._set_state(x)
            sf = self.probe_outputs()[0]
            factor = 3.0 if scheme == "bdf2" else 1.0
            scale = max(float(np.max(np.abs(sf))), 1e-300)
            stats.error_estimate = float(np.max(np.abs(sf - sh)) / factor / scale)
        else:
            self._set_state(x)
        return stats

    def _set_state(self, x: np.ndarray) -> None:
        self.w.x.array[: len(x)] = x
        self.w.x.scatter_forward()
        self.w_n.x.array[:] = self.w.x.array

    def _march(self, scenario: str, times: list[float], scheme: str, stats: SolveStats) -> np.ndarray:
        """The dof vector at times[-1] after the undrained step and `times` (s)."""
        bcs = self._bcs[scenario]
        U = self.unit_matrices()
        mu = float(self.c["mu"].value)
        nu = float(self.c["nu"].value)
        k = float(self.c["permeability"].value)
        lam = 2.0 * mu * nu / (1.0 - 2.0 * nu)
        n = self.W.dofmap.index_map.size_local * self.W.dofmap.index_map_bs
        fixed = np.unique(np.concatenate([bc.dof_indices()[0] for bc in bcs]))
        free = np.setdiff1d(np.arange(n), fixed)
        g = np.zeros(n)
        for bc in bcs:
            bc.set(g)
        f = fem.assemble_vector(self._load_form).array[:n].copy()
        static = mu * U["K_mu"] + lam * U["K_lam"] + U["G"]
        B = U["B"]
        x_n = np.zeros(n)  # state before the step (u_n), then u_nm1
        x_nm1 = np.zeros(n)
        lu: SparseLU | None = None
        key = None
        linear_solver = str(self.solver_cfg.poro_linear_solver)
        t_prev, dt_prev = 0.0, 0.0
        for t in [0.0, *times]:
            dt = t - t_prev if t > 0 else UNDRAINED_DT
            if scheme == "bdf2" and dt_prev > 0:
                w = dt / dt_prev
                a0, a1, a2 = (1 + 2 * w) / (1 + w), -(1 + w), w * w / (1 + w)
            else:
                a0, a1, a2 = 1.0, -1.0, 0.0
            new_key = (a0, dt)
            if key is None or not np.allclose(new_key, key, rtol=1e-9, atol=0.0):
                A = (static + a0 * B + (dt * k) * U["C"]).tocsc()
                if lu is not None:
                    lu.close()
                lu = SparseLU(A[free][:, free], linear_solver)
                A_fc = A[free][:, fixed]
                key = new_key
            rhs = f - B @ (a1 * x_n + a2 * x_nm1)
            x = g.copy()
            assert lu is not None
            x[free] = lu.solve(rhs[free] - A_fc @ g[fixed])
            stats.newton_iterations += 1  # one linear solve
            if not np.all(np.isfinite(x)):
                raise SampleRejected("nan_solution")
            x_nm1, x_n = x_n, x
            stats.load_steps += 1
            t_prev, dt_prev = t, dt
        if lu is not None:
            lu.close()
        return x_n

    def probe_outputs(self) -> tuple[np.ndarray, np.ndarray]:
        return self.sp.eval_at_probes(self._probe_sigma, 6), self.sp.eval_at_probes(self._probe_E, 6)

    def probe_pressure(self) -> np.ndarray:
        return self.sp.eval_at_probes(self._probe_p, 1)[:, 0]
