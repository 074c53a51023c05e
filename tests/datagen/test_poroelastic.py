"""Biot consolidation against series solutions: Terzaghi (load step, fine mesh: the model) and
confined compression under a step displacement (the generator's own settings: the data).

Column of height H drained at the top (p = 0), impermeable rollers elsewhere, load p0 applied at
t = 0. With incompressible constituents the initial pore pressure is p0 and, with z' = H - z,

    p(z', t) = p0 sum_m 4/((2m+1) pi) sin((2m+1) pi z' / (2H)) exp(-(2m+1)^2 pi^2 T_v / 4),
    settlement(t) = p0 H / M [1 - sum_m 8/((2m+1)^2 pi^2) exp(-(2m+1)^2 pi^2 T_v / 4)],

M = lambda + 2 mu, c_v = k M, T_v = c_v t / H^2. Tolerance: 2% of p0 (pressure) and 2% of the
final settlement, for T_v >= 0.05.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse
from datagen_reference import confined_step_displacement, confined_step_displacement_fd

from common.config import compose
from datagen.poro import Biot, SparseLU
from datagen.sampling import SampleInputs, draw_sample
from datagen.solid import SampleRejected
from datagen.specimen import build_specimen
from datagen.worker import SampleRunner

H = 10.0
P0 = 0.5  # kPa


def series_pressure(zp: np.ndarray, Tv: float, terms: int = 200) -> np.ndarray:
    m = np.arange(terms)[:, None]
    a = (2 * m + 1) * np.pi
    return P0 * np.sum(4 / a * np.sin(a * zp[None, :] / (2 * H)) * np.exp(-(a**2) * Tv / 4), axis=0)


def series_degree_of_consolidation(Tv: float, terms: int = 200) -> float:
    a = (2 * np.arange(terms) + 1) * np.pi
    return float(1 - np.sum(8 / a**2 * np.exp(-(a**2) * Tv / 4)))


def test_terzaghi_consolidation(solver_cfg_o2: Any) -> None:
    mu, nu, k = 1.0, 0.3, 2e-3
    M = 2 * mu * (1 - nu) / (1 - 2 * nu)
    c_v = k * M
    z = np.linspace(0.5, H - 0.5, 8)
    probes = np.stack([np.full_like(z, H / 2), np.full_like(z, H / 2), z], axis=1)
    sp = build_specimen(H, 1, 1, cells=(1, 1, 16), probes=probes)
    biot = Biot(
        sp,
        degree=2,
        pressure_degree=1,
        quadrature_degree=4,
        surface_quadrature_degree=4,
        solver_cfg=solver_cfg_o2,
    )
    biot.c["mu"].value, biot.c["nu"].value, biot.c["permeability"].value = mu, nu, k
    _, _vals = biot.problem("terzaghi")
    biot.patch_radius.value = 1e8  # uniform load: exp(-r^2/R^2) = 1 to rounding
    biot.traction_dir.value[:] = (0.0, 0.0, -1.0)
    biot.reset()
    # Undrained step, then fine geometric steps (backward Euler is first order in time).
    t_end = 0.6 * H**2 / c_v
    times = list(t_end * np.geomspace(1e-5, 1.0, 120))
    checks = {0.05: None, 0.1: None, 0.3: None, 0.6: None}
    biot.run_path("terzaghi", lambda s: setattr(biot.pressure, "value", s * P0), [])
    p_undrained = biot.probe_pressure()
    # Undrained: the fluid carries the load (away from the drained face, where the continuous P1
    # pressure cannot jump from p0 to 0 within one element).
    assert np.max(np.abs(p_undrained[z < H / 2] - P0)) <= 1e-4 * P0  # worst seen 3.4e-6 * P0
    t_prev = 0.0
    top = np.array([[H / 2, H / 2, H]])
    for t in times:
        biot.dt.value = t - t_prev
        prob, _ = biot.problem("terzaghi")
        prob.solve()
        assert prob.solver.getConvergedReason() > 0
        biot.w_n.x.array[:] = biot.w.x.array
        t_prev = t
        Tv = c_v * t / H**2
        for key in checks:
            if checks[key] is None and Tv >= key * (1 - 1e-9):
                p = biot.probe_pressure()
                u_top = -_eval_uz(biot, top)
                checks[key] = (Tv, p, u_top)
    for key, (Tv, p, u_top) in checks.items():
        expect = series_pressure(H - z, Tv)
        err = np.max(np.abs(p - expect)) / P0
        assert err <= 0.02, (key, Tv, err)
        s_expect = P0 * H / M * series_degree_of_consolidation(Tv)
        assert abs(u_top - s_expect) <= 0.02 * P0 * H / M, (key, u_top, s_expect)


def _eval_uz(biot: Biot, pts: np.ndarray) -> float:
    from dolfinx import geometry

    dom = biot.sp.domain
    tree = geometry.bb_tree(dom, 3)
    cells = geometry.compute_colliding_cells(dom, geometry.compute_collisions_points(tree, pts), pts)
    u = biot.w.sub(0).collapse()
    return float(np.asarray(u.eval(pts, np.array([cells.links(0)[0]], dtype=np.int32))).reshape(-1)[2])


def test_confined_series_matches_finite_differences() -> None:
    """The closed form used below against an independent finite-difference solution of the coupled
    u-p equations (200 cells, 400 Richardson-extrapolated backward-Euler steps; it converges to the
    series at second order: 100 -> 200 -> 400 cells give 7.8e-4 -> 2.1e-4 -> 5.4e-5 at T_v = 0.3)."""
    z = np.array([1.0, 2.5, 7.5, 9.0])
    for Tv in (0.05, 0.3, 1.0):
        ref = confined_step_displacement(1.3, 0.27, 0.04, H, Tv, z)
        fd = confined_step_displacement_fd(1.3, 0.27, 0.04, H, Tv, z, cells=200, steps=400)
        assert np.max(np.abs(fd - ref)) <= 5e-4 * np.max(np.abs(ref)), Tv


# (mu kPa, nu, k mm^2/(kPa s), compression strain, T_v): the corners of the protocol's ranges
# (data.tissue_library.*.biot, data.loads.compression_strain x poro_strain_scale, poro_time_factor).
CONFINED_CASES = [
    (1.0, 0.3, 5e-3, 0.05, 0.05),
    (0.5, 0.2, 1e-2, 0.075, 0.1),
    (3.0, 0.35, 1e-3, 0.01, 0.3),
    (2.0, 0.25, 4e-3, 0.04, 1.0),
]


def test_generator_confined_compression_within_tolerance() -> None:
    """Poroelastic confined compression through the generator's own path (SampleRunner with the
    protocol config: its mesh, time grid and scheme) within 2% of the sample's stress scale at
    every probe and component (issue 17: backward Euler on 6 geometric steps and 2 uniform cells
    was 29-40% off at T_v <= 0.3)."""
    data = compose("datagen", ["data=protocol"]).data
    runner = SampleRunner(data, eager=False)
    L = float(data.mesh.specimen_size_mm)
    for mu, nu, k, e0, Tv in CONFINED_CASES:
        res = runner.run(_confined_inputs(mu, nu, k, e0, Tv, L))
        ref = confined_step_displacement(mu, nu, e0, L, Tv, runner.specimen.probe_xyz[:, 2])
        err = np.max(np.abs(res.stress - ref)) / np.max(np.abs(ref))
        assert err <= 0.02, (mu, nu, k, e0, Tv, err)
        assert res.converged and 0 <= res.error_estimate <= float(data.solver.error_tolerance)


def _confined_inputs(
    mu: float, nu: float, k: float, e0: float, Tv: float, length_mm: float = 10.0
) -> SampleInputs:
    """A confined-compression sample whose load lasts ``Tv`` consolidation times of a column
    ``length_mm`` high (the protocol specimen: 10 mm)."""
    c_v = k * 2 * mu * (1 - nu) / (1 - 2 * nu)
    return SampleInputs(
        0,
        "poroelastic",
        "liver",
        "linear_biot",
        "confined_compression",
        None,
        {
            "biot.mu": mu,
            "biot.nu": nu,
            "biot.permeability": k,
            "load.compression_strain": e0,
            "load.time_s": Tv * length_mm**2 / c_v,
        },
    )


def test_coarse_time_grid_is_rejected_by_its_error_estimate() -> None:
    """The per-sample step-doubling estimate catches a time grid too coarse for the tolerance: with
    steps doubling up to T_v 0.3 the sample is rejected and counted under its reason."""
    data = compose(
        "datagen", ["data=protocol", "data.solver.poro_step_ratio=2.0", "data.solver.poro_max_step=0.3"]
    ).data
    runner = SampleRunner(data, eager=False)
    x = _confined_inputs(*CONFINED_CASES[1])
    with pytest.raises(SampleRejected, match="discretisation_error_above_tolerance"):
        runner.run(x)


@pytest.mark.parametrize("solver", ["superlu", "mumps"])
def test_singular_biot_step_matrix_is_rejected(solver: str) -> None:
    """Both linear solvers of `solver.poro_linear_solver` turn a singular factorisation into a
    rejected sample (not an exception from SciPy/PETSc, not a NaN-free garbage solution)."""
    A = scipy.sparse.csc_matrix(np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(SampleRejected, match="singular_matrix"):
        SparseLU(A, solver).solve(np.ones(3))


def test_mumps_and_superlu_give_the_same_biot_sample() -> None:
    """`solver.poro_linear_solver=mumps` (used by the refined references of
    test_generator_accuracy.py) solves the same equations as the generator's SuperLU: the probe
    stresses of a protocol indentation sample and a confined-compression corner case agree to
    1e-9 of the stress scale (LU rounding only; the discretisation error is 1e-2)."""
    base = compose("datagen", ["data=protocol"]).data
    mumps = compose("datagen", ["data=protocol", "data.solver.poro_linear_solver=mumps"]).data
    indentation = next(
        x
        for x in (draw_sample(base, s) for s in range(200))
        if (x.behaviour, x.scenario) == ("poroelastic", "indentation")
    )
    confined = _confined_inputs(*CONFINED_CASES[0])
    ra, rb = SampleRunner(base, eager=False), SampleRunner(mumps, eager=False)
    for x in (indentation, confined):
        a, b = ra.run(x), rb.run(x)
        assert np.max(np.abs(a.stress - b.stress)) <= 1e-9 * np.max(np.abs(a.stress)), x.scenario
        assert a.error_estimate == pytest.approx(b.error_estimate, rel=1e-6, abs=1e-12)
