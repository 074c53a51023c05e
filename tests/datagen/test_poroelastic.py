"""Terzaghi one-dimensional consolidation against the series solution.

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

from datagen.poro import Biot
from datagen.specimen import build_specimen

H = 10.0
P0 = 0.5  # kPa


def series_pressure(zp: np.ndarray, Tv: float, terms: int = 200) -> np.ndarray:
    m = np.arange(terms)[:, None]
    a = (2 * m + 1) * np.pi
    return P0 * np.sum(4 / a * np.sin(a * zp[None, :] / (2 * H)) * np.exp(-(a**2) * Tv / 4), axis=0)


def series_degree_of_consolidation(Tv: float, terms: int = 200) -> float:
    a = (2 * np.arange(terms) + 1) * np.pi
    return float(1 - np.sum(8 / a**2 * np.exp(-(a**2) * Tv / 4)))


def test_terzaghi_consolidation(solver_cfg: Any) -> None:
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
        solver_cfg=solver_cfg,
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
