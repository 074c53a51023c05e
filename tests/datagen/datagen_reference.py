"""Independent closed-form references in numpy (principal stretches, complex-step derivatives).

Not the generator's code: energies are re-written here as functions of principal stretches, and
principal Cauchy stresses are sigma_i = (lambda_i / J) d psi / d lambda_i, the derivative taken by
complex step (exact to rounding, no truncation error).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
from scipy.optimize import brentq

Energy = Callable[[np.ndarray], complex]


def bulk(mu_ref: float, nu: float) -> float:
    return 2 * mu_ref * (1 + nu) / (3 * (1 - 2 * nu))


def psi_neo_hookean(mu: float, nu: float) -> Energy:
    lam = 2 * mu * nu / (1 - 2 * nu)

    def psi(s: np.ndarray) -> complex:
        J = s[0] * s[1] * s[2]
        return mu / 2 * (np.sum(s**2) - 3) - mu * np.log(J) + lam / 2 * np.log(J) ** 2

    return psi


def psi_mooney_rivlin(c10: float, c01: float, nu: float) -> Energy:
    kappa = bulk(2 * (c10 + c01), nu)

    def psi(s: np.ndarray) -> complex:
        J = s[0] * s[1] * s[2]
        I1 = np.sum(s**2)
        I2 = s[0] ** 2 * s[1] ** 2 + s[1] ** 2 * s[2] ** 2 + s[2] ** 2 * s[0] ** 2
        return c10 * (J ** (-2 / 3) * I1 - 3) + c01 * (J ** (-4 / 3) * I2 - 3) + kappa / 2 * np.log(J) ** 2

    return psi


def psi_ogden(mu: float, alpha: float, nu: float) -> Energy:
    kappa = bulk(mu, nu)

    def psi(s: np.ndarray) -> complex:
        J = s[0] * s[1] * s[2]
        sb = J ** (-1 / 3) * s
        return 2 * mu / alpha**2 * (np.sum(sb**alpha) - 3) + kappa / 2 * np.log(J) ** 2

    return psi


def principal_cauchy(psi: Energy, stretches: np.ndarray, h: float = 1e-30) -> np.ndarray:
    s = np.asarray(stretches, dtype=complex)
    J = float(np.prod(stretches))
    out = np.empty(3)
    for i in range(3):
        e = np.zeros(3, dtype=complex)
        e[i] = 1j * h
        out[i] = stretches[i] / J * np.imag(psi(s + e)) / h
    return out


def uniaxial_stress(psi: Energy, stretch: float) -> tuple[float, float]:
    """(axial Cauchy stress, lateral stretch) for stretch along axis 3 with free lateral faces."""

    def lateral(lat: float) -> float:
        return principal_cauchy(psi, np.array([lat, lat, stretch]))[0]

    lat = brentq(lateral, 0.3, 2.0, xtol=1e-15, rtol=1e-15, maxiter=500)
    return principal_cauchy(psi, np.array([lat, lat, stretch]))[2], lat


def confined_stress(psi: Energy, stretch: float) -> np.ndarray:
    return principal_cauchy(psi, np.array([1.0, 1.0, stretch]))


def incompressible_uniaxial_mooney_rivlin(c10: float, c01: float, stretch: float) -> float:
    """Axial Cauchy stress of incompressible MR, psi = c10 (I1 - 3) + c01 (I2 - 3), lateral
    stretch lambda^-1/2 (J = 1), lateral faces free: sigma = 2 (lambda^2 - 1/lambda)(c10 + c01/lambda)
    (e.g. Ogden, Non-linear elastic deformations, 1984, section 7.2)."""
    lam = stretch
    return 2.0 * (lam**2 - 1.0 / lam) * (c10 + c01 / lam)


def incompressible_uniaxial_ogden(mu: float, alpha: float, stretch: float) -> float:
    """Axial Cauchy stress of incompressible one-term Ogden, psi = 2 mu/alpha^2 sum(lambda_i^alpha - 3):
    sigma_i = lambda_i dpsi/dlambda_i - p; sigma_lateral = 0 fixes p, so
    sigma = 2 mu/alpha (lambda^alpha - lambda^(-alpha/2))."""
    lam = stretch
    return 2.0 * mu / alpha * (lam**alpha - lam ** (-alpha / 2.0))


# ---- energies as functions of F (3 x 3, complex-safe), for homogeneous deformations --------------
EnergyF = Callable[[np.ndarray], complex]


def _iso_C(F: np.ndarray) -> np.ndarray:
    J = np.linalg.det(F)
    return J ** (-2.0 / 3.0) * (F.T @ F)


def psi_guccione(
    C: float, b_f: float, b_t: float, b_fs: float, nu: float, f: np.ndarray, s: np.ndarray
) -> EnergyF:
    """Guccione et al. 1991 in the fibre frame (f, s, n = f x s) on the isochoric strain, plus
    kappa/2 (ln J)^2 with kappa from mu_ref = C b_f / 2 (the generator's convention)."""
    n = np.cross(f, s)
    kappa = bulk(C * b_f / 2, nu)

    def psi(F: np.ndarray) -> complex:
        E = 0.5 * (_iso_C(F) - np.eye(3))
        R = np.stack([f, s, n])  # rows: fibre-frame axes
        Ef = R @ E @ R.T
        Q = (
            b_f * Ef[0, 0] ** 2
            + b_t * (Ef[1, 1] ** 2 + Ef[2, 2] ** 2 + 2 * Ef[1, 2] ** 2)
            + b_fs * (2 * Ef[0, 1] ** 2 + 2 * Ef[0, 2] ** 2)
        )
        return C / 2 * (np.exp(Q) - 1) + kappa / 2 * np.log(np.linalg.det(F)) ** 2

    return psi


def psi_holzapfel_ogden(p: dict[str, float], f: np.ndarray, s: np.ndarray) -> EnergyF:
    """Holzapfel & Ogden 2009 (fibres/sheets bear tension only), isochoric I1, full I4/I8."""
    kappa = bulk(p["a"] + p["a_f"] + p["a_s"], p["nu"])

    def mac(x: complex) -> complex:
        return x if x.real > 0 else 0.0 * x

    def psi(F: np.ndarray) -> complex:
        C = F.T @ F
        I1b = np.trace(_iso_C(F))
        I4f, I4s, I8 = f @ C @ f, s @ C @ s, f @ C @ s
        return (
            p["a"] / (2 * p["b"]) * (np.exp(p["b"] * (I1b - 3)) - 1)
            + p["a_f"] / (2 * p["b_f"]) * (np.exp(p["b_f"] * mac(I4f - 1) ** 2) - 1)
            + p["a_s"] / (2 * p["b_s"]) * (np.exp(p["b_s"] * mac(I4s - 1) ** 2) - 1)
            + p["a_fs"] / (2 * p["b_fs"]) * (np.exp(p["b_fs"] * I8**2) - 1)
            + kappa / 2 * np.log(np.linalg.det(F)) ** 2
        )

    return psi


def cauchy_from_energy(psi: EnergyF, F: np.ndarray, h: float = 1e-30) -> np.ndarray:
    """sigma = J^-1 P F^T with P_ij = d psi / d F_ij by complex step (no truncation error)."""
    P = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            dF = np.zeros((3, 3), dtype=complex)
            dF[i, j] = 1j * h
            P[i, j] = np.imag(psi(F.astype(complex) + dF)) / h
    return P @ F.T / np.linalg.det(F)


def _lnJ2(F: np.ndarray) -> complex:
    return np.log(np.linalg.det(F)) ** 2


def psi_rest_neo_hookean_F(mu: float) -> EnergyF:
    """The non-volumetric part of the compressible neo-Hookean law: mu/2 (I1 - 3) - mu ln J
    (the volumetric part is lambda/2 (ln J)^2, lambda = 2 mu nu / (1 - 2 nu))."""
    return lambda F: mu / 2 * (np.trace(F.T @ F) - 3) - mu * np.log(np.linalg.det(F))


def psi_rest_mooney_rivlin_F(c10: float, c01: float) -> EnergyF:
    def psi(F: np.ndarray) -> complex:
        Cb = _iso_C(F)
        return c10 * (np.trace(Cb) - 3) + c01 * (0.5 * (np.trace(Cb) ** 2 - np.trace(Cb @ Cb)) - 3)

    return psi


def psi_rest_ogden_F(mu: float, alpha: float) -> EnergyF:
    """2 mu / alpha^2 (sum_i bar lambda_i^alpha - 3), sum_i bar lambda_i^alpha = tr(bar C^(alpha/2)),
    alpha an even integer (an integer matrix power: complex-step safe)."""
    k = round(alpha / 2)

    def psi(F: np.ndarray) -> complex:
        Cb = _iso_C(F)
        base = np.linalg.inv(Cb) if k < 0 else Cb
        return 2 * mu / alpha**2 * (np.trace(np.linalg.matrix_power(base, abs(k))) - 3)

    return psi


def energy_parts_F(law: str, c: dict[str, float], alpha: float | None = None) -> tuple[EnergyF, float]:
    """(psi_rest(F), K) with psi = psi_rest + K/2 (ln J)^2, for the isotropic laws, as documented in
    datagen/materials.py (re-written here in numpy: not the generator's UFL)."""
    if law == "neo_hookean":
        return psi_rest_neo_hookean_F(c["mu"]), 2 * c["mu"] * c["nu"] / (1 - 2 * c["nu"])
    if law == "mooney_rivlin":
        return psi_rest_mooney_rivlin_F(c["c10"], c["c01"]), bulk(2 * (c["c10"] + c["c01"]), c["nu"])
    if law == "ogden":
        assert alpha is not None
        return psi_rest_ogden_F(c["mu"], alpha), bulk(c["mu"], c["nu"])
    raise ValueError(law)


def psi_F(law: str, c: dict[str, float], alpha: float | None = None) -> EnergyF:
    """The whole strain energy psi(F) of an isotropic law (see energy_parts_F)."""
    rest, K = energy_parts_F(law, c, alpha)
    return lambda F: rest(F) + K / 2 * _lnJ2(F)


def pk2_from_energy(psi: EnergyF, F: np.ndarray) -> np.ndarray:
    """S = F^-1 dpsi/dF (complex step)."""
    return np.linalg.inv(F) @ (cauchy_from_energy(psi, F) @ np.linalg.inv(F).T * np.linalg.det(F))


def qlv_ramp_hold_cauchy(
    psi_rest: EnergyF,
    K: float,
    F_of_s: Callable[[float], np.ndarray],
    g: tuple[float, float],
    tau: tuple[float, float],
    t_ramp: float,
    t_end: float,
    n_ramp: int = 4000,
) -> np.ndarray:
    """Cauchy stress at t_end of the generator's QLV law (datagen/solid.py docstring) for a
    prescribed homogeneous deformation F(t) = F_of_s(t / t_ramp) ramped over [0, t_ramp], then held:

        S(t) = g_inf S_e(t) + sum_i int_0^t g_i exp(-(t - s)/tau_i) dS_e/ds ds + K ln J C^-1,

    S_e = F^-1 dpsi_rest/dF. The hereditary integral over the ramp is summed on `n_ramp` intervals
    with the kernel at each interval's midpoint (second order; 4000 intervals: ~1e-8 relative);
    during the hold S_e is constant, so H_i decays exactly by exp(-(t_end - t_ramp)/tau_i)."""
    S_prev = np.zeros((3, 3))
    H = [np.zeros((3, 3)), np.zeros((3, 3))]
    ts = np.linspace(0.0, t_ramp, n_ramp + 1)
    for a, b in itertools.pairwise(ts):
        S_e = pk2_from_energy(psi_rest, F_of_s(b / t_ramp))
        dS = S_e - S_prev
        for i in range(2):
            H[i] = H[i] * np.exp(-(b - a) / tau[i]) + g[i] * np.exp(-(b - 0.5 * (a + b)) / tau[i]) * dS
        S_prev = S_e
    F = F_of_s(1.0)
    J = np.linalg.det(F)
    hold = t_end - t_ramp
    S = (1 - g[0] - g[1]) * S_prev + sum(H[i] * np.exp(-hold / tau[i]) for i in range(2))
    S = S + K * np.log(J) * np.linalg.inv(F.T @ F)
    return F @ S @ F.T / J


def uniaxial_stress_F(psi: EnergyF, stretch: float) -> tuple[float, np.ndarray]:
    """(axial Cauchy stress, F) of a homogeneous uniaxial-stress state along z for any energy psi(F)
    (also anisotropic with in-plane fibres): F = [[a, b, 0], [0, c, 0], [0, 0, stretch]] with
    sigma_xx = sigma_yy = sigma_xy = 0 solved by Newton (scipy root, complex-step stresses); the
    rotation about z is fixed by F_yx = 0 and does not change sigma = sigma_zz e_z e_z."""
    from scipy.optimize import root

    def F_of(v: np.ndarray) -> np.ndarray:
        return np.array([[v[0], v[1], 0.0], [0.0, v[2], 0.0], [0.0, 0.0, stretch]])

    def lateral(v: np.ndarray) -> np.ndarray:
        sig = cauchy_from_energy(psi, F_of(v))
        return np.array([sig[0, 0], sig[1, 1], sig[0, 1]])

    lat0 = stretch**-0.5
    sol = root(lateral, np.array([lat0, 0.0, lat0]), method="hybr", options={"xtol": 1e-13})
    if np.max(np.abs(lateral(sol.x))) > 1e-12 * max(1.0, abs(cauchy_from_energy(psi, F_of(sol.x))[2, 2])):
        raise RuntimeError(f"uniaxial_stress_F did not converge: {sol.message}")
    F = F_of(sol.x)
    return float(cauchy_from_energy(psi, F)[2, 2]), F


def to_voigt(T: np.ndarray) -> np.ndarray:
    return np.array([T[i, j] for i, j in ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))])


# ---- poroelastic (Biot, incompressible constituents) confined compression ------------------------
def biot_moduli(mu: float, nu: float) -> tuple[float, float]:
    """(lambda, M = lambda + 2 mu) of the drained skeleton."""
    lam = 2.0 * mu * nu / (1.0 - 2.0 * nu)
    return lam, lam + 2.0 * mu


def confined_step_displacement(
    mu: float, nu: float, e0: float, H: float, Tv: float, z: np.ndarray, terms: int = 2000
) -> np.ndarray:
    """Cauchy stress (P, 6 Voigt) at heights z of a column 0 <= z <= H, drained at z = H
    (p = 0), impermeable base and sides, whose top is displaced by -e0 H at t = 0 and held
    (confined compression, step displacement; T_v = c_v t / H^2, c_v = k M).

    Derivation (tension positive, eps = du/dz): equilibrium makes sigma_zz = M eps - p uniform
    in z; flow d eps/dt = k d^2 p/dz^2 with d^2 p/dz^2 = M d^2 eps/dz^2 gives, after one
    integration in z and u(0, t) = 0, u_t = c_v u_zz with u(0) = 0, u(H) = -e0 H and u(z, 0) = 0
    for z < H (undrained, incompressible: no volume change before drainage). Separation of variables:

        u   = -e0 z + sum_n 2 e0 H (-1)^(n+1) / (n pi) sin(n pi z / H) exp(-n^2 pi^2 T_v),
        eps = -e0 [1 + 2 sum_n (-1)^n cos(n pi z / H) exp(-n^2 pi^2 T_v)],
        sigma_zz = M eps(H) = -M e0 [1 + 2 sum_n exp(-n^2 pi^2 T_v)]   (p(H) = 0),
        p = M eps - sigma_zz,  sigma_xx = sigma_yy = lambda eps - p = sigma_zz - 2 mu eps,

    shear stresses zero. (Terzaghi's problem with a displacement instead of a load on top; the
    series converges for T_v > 0; `terms` = 2000 is exact to rounding for T_v >= 1e-4.)
    """
    _, M = biot_moduli(mu, nu)
    n = np.arange(1, terms + 1)[:, None]
    decay = np.exp(-((n * np.pi) ** 2) * Tv)
    z = np.asarray(z, dtype=float)
    eps = -e0 * (1.0 + 2.0 * np.sum((-1.0) ** n * np.cos(n * np.pi * z[None, :] / H) * decay, axis=0))
    szz = -M * e0 * (1.0 + 2.0 * float(np.sum(decay)))
    out = np.zeros((len(z), 6))
    out[:, 0] = out[:, 1] = szz - 2.0 * mu * eps
    out[:, 2] = szz
    return out


def confined_step_displacement_fd(
    mu: float, nu: float, e0: float, H: float, Tv: float, z: np.ndarray, cells: int = 800, steps: int = 1500
) -> np.ndarray:
    """The same problem by finite differences of the coupled u-p equations, without the derivation
    above: staggered grid (u at nodes, p at cell centres), equilibrium d/dz (M du/dz - p) = 0 at
    interior nodes, flow d/dt (du/dz) = k d^2 p/dz^2 in each cell (ghost cells: dp/dz = 0 at the
    base, p = 0 on the top face), backward Euler on a geometric time grid from T_v = 1e-8, in units
    where k = 1 (T_v = M t / H^2), Richardson-extrapolated in time (2 x(steps) - x(steps / 2) on
    every other grid point: backward Euler is first order). Returns the Cauchy stress (P, 6) at
    heights z (linear interpolation between cell centres)."""
    import scipy.sparse
    import scipy.sparse.linalg

    lam, M = biot_moduli(mu, nu)
    N, h = cells, H / cells
    nu_, npp = N - 1, N  # unknowns u_1..u_{N-1}, p_0..p_{N-1}
    u_top = -e0 * H
    t_end = Tv * H**2 / M
    steps += steps % 2  # even: the half grid times[::2] ends at t_end too
    times = np.concatenate([[0.0], t_end * np.geomspace(1e-8 / Tv, 1.0, steps)])

    def strain(u_int: np.ndarray) -> np.ndarray:
        u = np.concatenate([[0.0], u_int, [u_top]])
        return np.diff(u) / h  # per cell

    # Equilibrium rows i = 1..N-1: M (u_{i+1} - 2 u_i + u_{i-1}) / h^2 - (p_i - p_{i-1}) / h = 0.
    # Flow rows j = 0..N-1: (eps_j - eps_j^n) / dt - (p_{j+1} - 2 p_j + p_{j-1}) / h^2 = 0.
    rows, cols, vals = [], [], []

    def add(r: int, c: int, v: float) -> None:
        rows.append(r)
        cols.append(c)
        vals.append(v)

    for i in range(1, N):
        r = i - 1
        add(r, i - 1, -2 * M / h**2)
        if i - 2 >= 0:
            add(r, i - 2, M / h**2)
        if i < N - 1:
            add(r, i, M / h**2)
        add(r, nu_ + i, -1 / h)
        add(r, nu_ + i - 1, 1 / h)
    eq = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(nu_, nu_ + npp))
    rows, cols, vals = [], [], []
    for j in range(N):  # d eps_j / d u: eps_j = (u_{j+1} - u_j) / h
        if j + 1 <= N - 1:
            add(j, j, 1 / h)
        if j >= 1:
            add(j, j - 1, -1 / h)
    D = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(N, nu_ + npp))
    rows, cols, vals = [], [], []
    for j in range(N):  # Laplacian of p with ghost p_{-1} = p_0 (base), p_N = -p_{N-1} (top p = 0)
        diag = -2.0 + (1.0 if j == 0 else 0.0) - (1.0 if j == N - 1 else 0.0)
        add(j, nu_ + j, diag / h**2)
        if j >= 1:
            add(j, nu_ + j - 1, 1 / h**2)
        if j <= N - 2:
            add(j, nu_ + j + 1, 1 / h**2)
    Lp = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(N, nu_ + npp))
    b_eq = np.zeros(nu_)
    b_eq[-1] = -M / h**2 * u_top  # u_N = u_top in the last equilibrium row
    e_top = np.zeros(N)
    e_top[-1] = u_top / h  # eps_{N-1} contains u_N / h
    A0 = scipy.sparse.vstack([eq, -Lp]).tocsc()
    A1 = scipy.sparse.vstack([scipy.sparse.csr_matrix((nu_, nu_ + npp)), D]).tocsc()

    def march(grid: np.ndarray) -> np.ndarray:
        x = np.zeros(nu_ + npp)
        eps_n = np.zeros(N)  # undrained: no volume change before drainage
        for t0, t1 in itertools.pairwise(grid):
            dt = t1 - t0
            b = np.concatenate([b_eq, (eps_n - e_top) / dt])
            x = scipy.sparse.linalg.spsolve((A0 + A1 / dt).tocsc(), b)
            eps_n = strain(x[:nu_])
        return x

    x = 2.0 * march(times) - march(times[::2])
    eps = strain(x[:nu_])
    p = x[nu_:]
    zc = (np.arange(N) + 0.5) * h
    eps_z, p_z = np.interp(z, zc, eps), np.interp(z, zc, p)
    out = np.zeros((len(z), 6))
    out[:, 0] = out[:, 1] = lam * eps_z - p_z
    out[:, 2] = M * eps_z - p_z
    return out
