"""What every compiled model (datagen/solid.py, datagen/poro.py) shares: Dirichlet BCs on the
displacement (sub)space, the per-scenario cache of compiled NonlinearProblems, PETSc options, JIT
options (gcc flags from data.solver.jit_opt_level), expressions stripped of `ufl.variable` labels,
and the sample-rejection types.

A model subclass sets `sp` (Specimen), `tag` (unique PETSc prefix), `solver_cfg`, `state` (the
fem.Function solved for), `Vu` (its displacement space: the space itself or `W.sub(0)`),
`residual`, `jacobian`, `mixed`, `saddle_point` (zero or near-zero pressure block: needs a pivoting LU),
and implements `bcs_for(scenario) -> (bcs, values)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dolfinx_solver  # noqa: F401  (must precede dolfinx/petsc4py)
import numpy as np
from dolfinx import default_scalar_type, fem
from dolfinx.fem.petsc import NonlinearProblem
from mpi4py import MPI  # noqa: F401  (first: MPI before PETSc)
from ufl.corealg.multifunction import MultiFunction

from datagen.spec import JIT_OPT_LEVEL_DEFAULT, JIT_OPT_LEVELS

SNES_REASON_OK = 0


def jit_options(solver_cfg: Any) -> dict[str, Any]:
    """JIT options of every form and expression of a model: gcc -O<data.solver.jit_opt_level>.

    -O2 -g0 is dolfinx's own default (pilot, protocol); -O0 compiles the 3-5 MB Ogden kernels ~10x
    faster (smoke, tests) but can change the last bits of a sample, so a level other than the default
    is part of the dataset_id (datagen/dataset.py). FFCx keys its cache on the flags, so forms
    compiled at different levels never mix.
    """
    # A manifest written before the knob existed (datagen.show rebuilds its config) was made at -O2.
    level = int(solver_cfg.get("jit_opt_level", JIT_OPT_LEVEL_DEFAULT))
    if level not in JIT_OPT_LEVELS:
        raise ValueError(f"data.solver.jit_opt_level={level!r}: allowed {list(JIT_OPT_LEVELS)}")
    # Hazard: FFCx waits only 10 s (default) for another process compiling the same form, and the
    # Ogden Jacobian takes longer than that on a loaded machine: wait instead of failing.
    return {"timeout": 1800, "cffi_extra_compile_args": [f"-O{level}", "-g0"]}


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
    error_estimate: float = float("nan")  # discretisation error / stress scale (NaN: not estimated)


def petsc_options(solver_cfg: Any, *, saddle_point: bool = False) -> dict[str, Any]:
    """Newton (no line search) with a direct solve; MUMPS (pivoting LU) for u-p saddle points."""
    opts = {
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
    if saddle_point:
        # Hazard: the pressure block is zero (incompressible, undrained) or tiny (-M/K): PETSc's
        # own LU does not pivot across blocks and fails or loses digits.
        opts["pc_factor_mat_solver_type"] = "mumps"
    return opts


class CompiledModel:
    """Base of the solid and Biot models: BCs on `Vu` and one compiled problem per scenario."""

    sp: Any
    tag: str
    solver_cfg: Any
    state: fem.Function
    Vu: Any
    residual: Any
    jacobian: Any
    mixed: bool = False  # state = (u, p) in a mixed space; Vu = W.sub(0)
    saddle_point: bool = False
    guided_top_platen: bool = True  # uniaxial: the top face pinned like the base (see bcs_for)

    def indentation_traction(self, dom: Any) -> Any:
        """Indentation load: a Gaussian pressure patch, dead nominal traction
        t0 = p exp(-r^2/R^2) dir on the top face (r from the patch centre in x, y). Its inputs are
        `fem.Constant`s set per sample (`pressure` kPa, `patch_xy` mm, `patch_radius` mm,
        `traction_dir`), so the form compiles once."""
        import ufl

        self.pressure = fem.Constant(dom, default_scalar_type(0.0))
        self.patch_xy = fem.Constant(dom, np.zeros(2, dtype=default_scalar_type))
        self.patch_radius = fem.Constant(dom, default_scalar_type(1.0))
        self.traction_dir = fem.Constant(dom, np.array([0.0, 0.0, -1.0], dtype=default_scalar_type))
        X = ufl.SpatialCoordinate(dom)
        r2 = (X[0] - self.patch_xy[0]) ** 2 + (X[1] - self.patch_xy[1]) ** 2
        return self.pressure * ufl.exp(-r2 / self.patch_radius**2) * self.traction_dir

    def bcs_for(self, scenario: str) -> tuple[list[Any], dict[str, Any]]:
        """Dirichlet BCs of a scenario and the Constants that carry its prescribed values.

        uniaxial: u_z = 0 on z=0, u_z = (lambda-1) L on z=L (frictionless platens), lateral faces
          traction-free, rigid motions pinned (u_x = u_y = 0 at the origin, u_y = 0 at (L, 0, 0)),
          and the top platen guided by the same pins at z = L (solids; not Biot): a homogeneous
          uniaxial-stress state for every law (also the anisotropic ones).
        simple_shear: u = gamma Z (cos th, sin th, 0) on every face (homogeneous simple shear; the
          Function vals["shear"], set from vals["shear_basis"] = dof arrays of Z e_x, Z e_y).
        confined_compression: u_n = 0 on the four sides and z=0; u_z = -eps L on z=L (homogeneous).
        indentation: u_z = 0 on z=0, u_x = 0 on x=0, u_y = 0 on y=0 (frictionless base, symmetry
          planes); pressure patch on z=L; the sides x=L, y=L free.
        clamped_plane_strain (tests, Cook's membrane): u = 0 on x=0; u_z = 0 at every node.
        homogeneous (tests): u = g on every face, g Functions set by the caller.
        terzaghi (tests, Biot): rollers on the four sides and the base, load on top.
        """
        bcs: list[Any] = []
        vals: dict[str, Any] = {}
        if scenario == "uniaxial":
            # Frictionless platens (u_z only) and the rigid motions pinned at two base corners, not
            # symmetry planes: the homogeneous state of an anisotropic law has in-plane shear, which
            # the planes x=0, y=0 forbid (Holzapfel-Ogden with taut fibres was then 8.5% off at
            # 2 cells, issue 17). The pins carry no load in a homogeneous state, so no singularity.
            bcs.append(self._bc_component("z0", 2)[0])
            bc, vals["top_uz"] = self._bc_component("z1", 2)
            bcs.append(bc)
            L = self.sp.size_mm
            # Guided top platen (generator version 6): the same pins on the top face, so it cannot
            # slide or turn relative to the base either. On an unguided platen the sliding modes of
            # a Holzapfel-Ogden sample in compression are held only by the soft matrix (sample 147:
            # 0.10 kPa of 502 kPa in the homogeneous Hessian, sigma_zz -2.4 kPa) and the load path
            # ended in a sheared, inhomogeneous state 4.3% off the homogeneous one (issue 17).
            # Biot keeps an unguided top (`guided_top_platen`): drained at z = L only, its lateral
            # displacement varies with z, so a top pin would carry a point load.
            for z in (0.0, L) if self.guided_top_platen else (0.0,):
                bcs += [self._bc_point((0.0, 0.0, z), 0), self._bc_point((0.0, 0.0, z), 1)]
                bcs.append(self._bc_point((L, 0.0, z), 1))
        elif scenario == "simple_shear":
            # Homogeneous simple shear: the affine field u = gamma Z (cos th, sin th, 0) on the whole
            # boundary (vals["shear"], set from the fixed bases Z e_x, Z e_y), so the exact solution
            # is that affine field, which Q2 represents exactly (issue 17).
            bc, vals["shear"], vals["shear_basis"] = self._bc_shear_on_boundary()
            bcs.append(bc)
        elif scenario in ("confined_compression", "terzaghi"):
            for face, comp in (("x0", 0), ("x1", 0), ("y0", 1), ("y1", 1), ("z0", 2)):
                bcs.append(self._bc_component(face, comp)[0])
            if scenario == "confined_compression":
                bc, vals["top_uz"] = self._bc_component("z1", 2)
                bcs.append(bc)
        elif scenario == "indentation":
            # Frictionless base and symmetry planes x=0, y=0 (they also carry the tangential part of
            # the load); a clamped base makes its edges with the free sides singular (issue 17).
            for face, comp in (("x0", 0), ("y0", 1), ("z0", 2)):
                bcs.append(self._bc_component(face, comp)[0])
        elif scenario == "clamped_plane_strain":
            bcs += self._bc_vector("x0")[0]
            bcs.append(self._bc_component_everywhere(2))
        elif scenario == "homogeneous":
            # Every face displaced (tests: u = H X prescribed on the whole boundary).
            for face in ("x0", "x1", "y0", "y1", "z0", "z1"):
                bc, vals[face] = self._bc_vector_function(face)
                bcs.append(bc)
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
        return bcs, vals

    def problem(self, scenario: str) -> tuple[NonlinearProblem, dict[str, Any]]:
        """The compiled problem of `scenario` and the Constants/Functions carrying its BC values."""
        cache: dict[str, tuple[NonlinearProblem, dict[str, Any]]] = self.__dict__.setdefault("_problems", {})
        if scenario not in cache:
            bcs, vals = self.bcs_for(scenario)
            self.__dict__.setdefault("_bcs", {})[scenario] = bcs
            prob = NonlinearProblem(
                self.residual,
                self.state,
                bcs=bcs,
                J=self.jacobian,
                petsc_options_prefix=f"{self.tag}{scenario}_",
                petsc_options=petsc_options(self.solver_cfg, saddle_point=self.saddle_point),
                jit_options=jit_options(self.solver_cfg),
            )
            cache[scenario] = (prob, vals)
        return cache[scenario]

    def _bc_component(self, face: str, comp: int) -> tuple[Any, fem.Constant]:
        """u_comp = c on `face`, c a Constant (0 unless set)."""
        Vi = self.Vu.sub(comp)
        dofs = fem.locate_dofs_topological(Vi, 2, self.sp.facets(face))
        c = fem.Constant(self.sp.domain, default_scalar_type(0.0))
        return fem.dirichletbc(c, dofs, Vi), c

    def _bc_vector(self, face: str) -> tuple[list[Any], list[fem.Constant]]:
        """u = (c0, c1, c2) on `face`, one Constant per component (works on a mixed sub-space)."""
        pairs = [self._bc_component(face, comp) for comp in range(3)]
        return [b for b, _ in pairs], [c for _, c in pairs]

    def _bc_vector_function(self, face: str) -> tuple[Any, fem.Function]:
        """u = g on `face`, g a Function of the (collapsed) displacement space (tests: u = H X)."""
        facets = self.sp.facets(face)
        if not self.mixed:
            g = fem.Function(self.Vu)
            return fem.dirichletbc(g, fem.locate_dofs_topological(self.Vu, 2, facets)), g
        Vc = self.Vu.collapse()[0]
        g = fem.Function(Vc)
        dofs = fem.locate_dofs_topological((self.Vu, Vc), 2, facets)
        return fem.dirichletbc(g, dofs, self.Vu), g

    def _bc_point(self, point: tuple[float, float, float], comp: int) -> Any:
        """u_comp = 0 at the node at `point` (a mesh vertex)."""
        Vi = self.Vu.sub(comp)
        Vic = Vi.collapse()[0]
        x0 = np.asarray(point)[:, None]
        dofs = fem.locate_dofs_geometrical((Vi, Vic), lambda x: np.all(np.isclose(x, x0), axis=0))
        if len(dofs[0]) != 1:
            raise ValueError(f"no single node at {point}")
        return fem.dirichletbc(fem.Function(Vic), dofs, Vi)

    def _bc_shear_on_boundary(self) -> tuple[Any, fem.Function, tuple[np.ndarray, np.ndarray]]:
        """u = g on every boundary facet, g a Function of the collapsed displacement space, and the
        dof arrays of the bases Z e_x and Z e_y (mm): simple shear sets g = gx Z e_x + gy Z e_y."""
        dim = self.sp.domain.topology.dim
        facets = np.unique(np.concatenate([self.sp.facets(f) for f in ("x0", "x1", "y0", "y1", "z0", "z1")]))
        Vc = self.Vu.collapse()[0] if self.mixed else self.Vu
        g = fem.Function(Vc)
        bases = []
        for comp in range(2):
            g.interpolate(lambda x, c=comp: np.vstack([x[2] * (c == 0), x[2] * (c == 1), 0 * x[2]]))
            bases.append(g.x.array.copy())
        g.x.array[:] = 0.0
        if self.mixed:
            dofs = fem.locate_dofs_topological((self.Vu, Vc), dim - 1, facets)
            return fem.dirichletbc(g, dofs, self.Vu), g, (bases[0], bases[1])
        dofs = fem.locate_dofs_topological(self.Vu, dim - 1, facets)
        return fem.dirichletbc(g, dofs), g, (bases[0], bases[1])

    def _bc_component_everywhere(self, comp: int) -> Any:
        """u_comp = 0 at every node (plane strain in a slab one element thick)."""
        Vi = self.Vu.sub(comp)
        Vic = Vi.collapse()[0]
        dofs = fem.locate_dofs_geometrical((Vi, Vic), lambda x: np.full(x.shape[1], True))
        return fem.dirichletbc(fem.Function(Vic), dofs, Vi)


def expression(expr: Any, points: np.ndarray, solver_cfg: Any) -> fem.Expression:
    """fem.Expression with derivatives expanded and `ufl.variable` labels stripped.

    Hazard: FFCx keys its JIT cache for expressions on a signature that includes each Label's
    global creation counter (forms are preprocessed, expressions are not), so an expression that
    still holds `ufl.variable` recompiles (tens of seconds for Ogden) in every process and for
    every new model. Stripping the labels makes the key depend on the maths only.
    `solver_cfg` (data.solver) sets the compiler flags (`jit_options`).
    """
    from ufl.algorithms import expand_derivatives
    from ufl.corealg.map_dag import map_expr_dag

    # Hazard: ufl's `strip_variables` is not memoised and takes exponential time on the shared
    # sub-expressions of an Ogden derivative; map_expr_dag visits each DAG node once.
    return fem.Expression(
        map_expr_dag(_StripVariables(), expand_derivatives(expr)),
        points,
        jit_options=jit_options(solver_cfg),
    )


class _StripVariables(MultiFunction):
    expr = MultiFunction.reuse_if_untouched

    def variable(self, o: Any, expr: Any, label: Any) -> Any:
        return expr


def reason_name(reason: int) -> str:
    from petsc4py import PETSc

    for name in dir(PETSc.SNES.ConvergedReason):
        if not name.startswith("_") and getattr(PETSc.SNES.ConvergedReason, name) == reason:
            return name.lower()
    return str(reason)
