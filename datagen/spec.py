"""The dataset configuration schema (`DataConfig`) and its semantic checks.

Imports no dolfinx/petsc4py/mpi4py: `experiments` and `analysis` import this on machines
without FEniCSx. Importing the module registers the schemas in Hydra's ConfigStore
(`data/data_schema`, `datagen_schema`), which `conf/data/*.yaml` and `conf/datagen.yaml` name in
their defaults lists: import it before composing any config that selects a `data` option.

Units throughout: length mm, stress/modulus kPa, time s, hydraulic permeability mm^2/(kPa s)
(1 m^4/(N s) = 1e9 mm^2/(kPa s)). Angles in degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from common.config import ConfigError, require

SCHEMA_VERSION = 1
BEHAVIOURS = ("hyperelastic", "viscoelastic", "poroelastic")
SCENARIOS = ("uniaxial", "simple_shear", "confined_compression", "indentation")
SPLITS = ("train", "val", "test")

# Parameters each law needs (all of them must be given as ranges in a tissue's library entry).
LAW_PARAMS: dict[str, tuple[str, ...]] = {
    "neo_hookean": ("mu", "nu"),
    "mooney_rivlin": ("c10", "c01", "nu"),
    "ogden": ("mu", "alpha", "nu"),
    "holzapfel_ogden": ("a", "b", "a_f", "b_f", "a_s", "b_s", "a_fs", "b_fs", "nu"),
    "guccione": ("C", "b_f", "b_t", "b_fs", "nu"),
    # Exactly incompressible (J = 1 by a pressure Lagrange multiplier): no Poisson ratio.
    "mooney_rivlin_incompressible": ("c10", "c01"),
    "ogden_incompressible": ("mu", "alpha"),
}
JIT_OPT_LEVELS = (0, 1, 2, 3)  # data.solver.jit_opt_level: gcc -O<n> of the JIT-compiled forms
JIT_OPT_LEVEL_DEFAULT = 2  # dolfinx's own -O2; not in the dataset_id (ids made before the knob stand)
INCOMPRESSIBLE_LAWS = ("mooney_rivlin_incompressible", "ogden_incompressible")
OGDEN_LAWS = ("ogden", "ogden_incompressible")  # alpha compiled into the form
FIBRE_LAWS = ("holzapfel_ogden", "guccione")  # need a fibre angle (load.fibre_angle_deg)
PRONY_PARAMS = ("g1", "tau1", "g2", "tau2")
BIOT_PARAMS = ("mu", "nu", "permeability")
# Parameters that are moduli/stiffnesses/times and so must be strictly positive.
POSITIVE_PARAMS = {
    "mu",
    "c10",
    "a",
    "a_f",
    "a_s",
    "a_fs",
    "b",
    "b_f",
    "b_s",
    "b_fs",
    "tau1",
    "tau2",
    "permeability",
    "c01",
    "C",
    "b_t",
}
# Load/scenario inputs stored with every sample (NaN where a scenario does not use them).
LOAD_PARAMS = (
    "stretch",
    "shear_strain",
    "compression_strain",
    "pressure_kpa",
    "load_angle_deg",
    "patch_x_mm",
    "patch_y_mm",
    "fibre_angle_deg",
    "time_s",
)


@dataclass
class ParamRange:
    """A uniform range [low, high] (or a discrete set in `choices`) with units and its source."""

    low: float = MISSING
    high: float = MISSING
    units: str = MISSING
    source: str = MISSING
    verified: str = MISSING  # how/whether the value was checked against the source
    choices: list[float] = field(default_factory=list)  # non-empty -> sample uniformly from these


@dataclass
class TissueConfig:
    hyperelastic: dict[str, dict[str, ParamRange]] = MISSING  # law -> parameter -> range
    prony: dict[str, ParamRange] = MISSING  # QLV Prony series terms
    biot: dict[str, ParamRange] = MISSING  # drained skeleton + permeability
    viscoelastic_law: str = "neo_hookean"  # elastic law under the QLV kernel


@dataclass
class MeshConfig:
    specimen_size_mm: float = 10.0  # cube edge
    cells_per_axis: int = 2  # hexahedra per edge
    displacement_degree: int = 2  # Lagrange degree of u (Q2 resists volumetric locking)
    pressure_degree: int = 1  # Taylor-Hood pressure for the Biot u-p mixture
    quadrature_degree: int = 4  # dx; explicit: the estimated degree of log/det terms is huge
    surface_quadrature_degree: int = 10  # ds (Gaussian pressure patch)
    probes_per_axis: int = 2  # probes at cell-centre-like fractions (i+0.5)/n of the cube
    poro_cells: list[int] = field(default_factory=lambda: [2, 2, 6])  # Biot mesh: cells in x, y, z
    poro_z_grading: float = 1.0  # Biot mesh: bottom/top z-layer thickness (> 1: finer at the drained top)
    indentation_cells: int = 2  # solids: hexahedra per edge for the indentation scenario
    poro_indentation_cells: list[int] = field(default_factory=lambda: [2, 2, 6])  # Biot indentation mesh


@dataclass
class ScenarioConfig:
    stretch: ParamRange = MISSING  # uniaxial stretch lambda (1) of the top face
    shear_strain: ParamRange = MISSING  # simple shear gamma (1)
    compression_strain: ParamRange = MISSING  # confined compression, engineering strain (1)
    pressure_kpa: ParamRange = MISSING  # indentation patch pressure (kPa)
    patch_radius_mm: float = 2.5  # Gaussian patch radius R: pressure p exp(-r^2/R^2)
    patch_centre_margin_mm: float = 2.5  # patch centre uniform in [margin, L - margin]^2
    load_angle_deg: ParamRange = MISSING  # direction of shear / tilt of indentation traction
    fibre_angle_deg: ParamRange = MISSING  # myocardial fibre angle in the x-y plane
    poro_strain_scale: float = 0.5  # poroelastic loads scaled (small-strain Biot)
    indentation_tangential_fraction: float = 0.25  # tangential/normal traction ratio, azimuth load_angle


@dataclass
class SolverConfig:
    snes_rtol: float = 1e-10
    snes_atol: float = 1e-10
    snes_max_it: int = 25
    initial_load_steps: int = 2  # ramp of the quasi-static load
    max_cutbacks: int = 6  # halvings of the load increment before a sample is rejected
    min_jacobian: float = 0.05  # J <= this at a probe -> reject as element inversion
    visco_ramp_steps: int = 4
    visco_hold_steps: int = 4
    visco_ramp_time_s: float = 1.0
    visco_hold_time_s: ParamRange = MISSING
    poro_first_step: float = 1e-4  # first time step, dimensionless T = c_v t / H^2
    poro_step_ratio: float = 1.5  # each step this times the previous one ...
    poro_max_step: float = 0.02  # ... up to this (dimensionless T)
    poro_scheme: str = "bdf2"  # bdf2 | backward_euler
    poro_linear_solver: str = "superlu"  # superlu | mumps (sparse LU of each Biot step; same solution)
    poro_error_estimate: bool = True  # step doubling per Biot sample (also marches every other step)
    error_tolerance: float = (
        0.02  # reject a sample whose estimated discretisation error / stress scale exceeds it
    )
    poro_time_factor: ParamRange = MISSING  # T_v = c_v t / H^2 at the output time
    # gcc -O<n> of the JIT-compiled forms (datagen/compiled.py::jit_options). 2 = dolfinx's own default
    # (pilot, protocol); smoke and the tests use 0 (the Ogden kernels compile ~10x faster). Another
    # level can change the last bits of a sample (one Holzapfel-Ogden stress by 4e-16 relative in the
    # smoke draw, datagen/BENCHMARKS.md), so a level other than the default is part of the dataset_id.
    jit_opt_level: int = JIT_OPT_LEVEL_DEFAULT


@dataclass
class DataConfig:
    name: str = MISSING
    seed: int = 0
    splits: dict[str, int] = field(default_factory=lambda: {"train": 240, "val": 30, "test": 60})
    shard_size: int = 32
    behaviours: list[str] = field(default_factory=lambda: list(BEHAVIOURS))
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    tissues: list[str] = field(default_factory=lambda: ["liver", "brain_grey", "brain_white", "myocardium"])
    mesh: MeshConfig = field(default_factory=MeshConfig)
    loads: ScenarioConfig = field(default_factory=ScenarioConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    tissue_library: dict[str, TissueConfig] = MISSING


@dataclass
class DatagenConfig:
    """Primary config of `python -m datagen` (conf/datagen.yaml)."""

    data: DataConfig = MISSING
    results_root: str = "results"
    workers: int = 2  # worker processes (each MPI.COMM_SELF, BLAS threads = 1)
    worker_max_shards: int = 40  # recycle a worker after this many shards (MPI comm leak)
    progress_interval_s: float = 5.0
    log_level: str = "INFO"
    shard_groups: int = 1  # cluster: split the shards into this many independent jobs
    shard_group: int = 0  # ... and solve only group k (shard ordinal mod shard_groups == k)


def register() -> None:
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(group="data", name="data_schema", node=DataConfig)
    cs.store(name="datagen_schema", node=DatagenConfig)


register()


_RANGE_KEYS = {"low", "high", "units", "source", "verified", "choices"}


def _check_range(key: str, r: Any, *, positive: bool = False, below_half: bool = False) -> None:
    # Ranges nested in dict-of-dict are not typed by OmegaConf (object_type=dict): check the keys here.
    for k in r:
        require(k in _RANGE_KEYS, f"{key}.{k}", r[k], f"one of {sorted(_RANGE_KEYS)}")
    for k in ("low", "high", "units", "source", "verified"):
        require(k in r, f"{key}.{k}", None, "a value (every range states low, high, units, source, verified)")
    require(
        isinstance(r["low"], int | float) and isinstance(r["high"], int | float),
        key,
        (r["low"], r["high"]),
        "numbers low, high",
    )
    choices = list(r.get("choices") or [])
    vals = choices or [r.low, r.high]
    require(all(math.isfinite(float(v)) for v in vals), key, vals, "finite numbers")
    if choices:
        require(len(choices) > 0, key, choices, "a non-empty list of choices")
    else:
        require(r.low <= r.high, key, f"[{r.low}, {r.high}]", "a non-empty range with low <= high")
    if positive:
        require(min(vals) > 0, key, min(vals), "a strictly positive value (a modulus/time/permeability)")
    if below_half:
        require(
            min(vals) > -1.0 and max(vals) < 0.5,
            key,
            f"[{min(vals)}, {max(vals)}]",
            "a Poisson ratio in (-1, 0.5) for a compressible law",
        )


def validate(data: Any) -> None:
    """Semantic checks of a composed `data` node; raises ConfigError (one line) on the first problem."""
    require(
        bool(data.behaviours), "data.behaviours", list(data.behaviours), f"a non-empty subset of {BEHAVIOURS}"
    )
    for b in data.behaviours:
        require(b in BEHAVIOURS, "data.behaviours", b, f"one of {', '.join(BEHAVIOURS)}")
    require(
        bool(data.scenarios), "data.scenarios", list(data.scenarios), f"a non-empty subset of {SCENARIOS}"
    )
    for s in data.scenarios:
        require(s in SCENARIOS, "data.scenarios", s, f"one of {', '.join(SCENARIOS)}")
    known = sorted(data.tissue_library.keys())
    require(bool(data.tissues), "data.tissues", list(data.tissues), f"a non-empty subset of {known}")
    for t in data.tissues:
        require(t in data.tissue_library, "data.tissues", t, f"one of {', '.join(known)}")
    for split in SPLITS:
        require(split in data.splits, f"data.splits.{split}", None, "a sample count for train, val and test")
    for split, n in data.splits.items():
        require(split in SPLITS, f"data.splits.{split}", split, f"one of {', '.join(SPLITS)}")
        require(n >= 0, f"data.splits.{split}", n, "a count >= 0")
    require(sum(data.splits.values()) > 0, "data.splits", dict(data.splits), "at least one sample")
    require(data.shard_size >= 1, "data.shard_size", data.shard_size, "an integer >= 1")
    m = data.mesh
    require(m.specimen_size_mm > 0, "data.mesh.specimen_size_mm", m.specimen_size_mm, "> 0 (mm)")
    require(m.cells_per_axis >= 1, "data.mesh.cells_per_axis", m.cells_per_axis, "an integer >= 1")
    require(m.displacement_degree in (1, 2), "data.mesh.displacement_degree", m.displacement_degree, "1 or 2")
    require(
        1 <= m.pressure_degree < m.displacement_degree or m.displacement_degree == 1,
        "data.mesh.pressure_degree",
        m.pressure_degree,
        "1 <= degree < displacement_degree (Taylor-Hood)",
    )
    require(1 <= m.quadrature_degree <= 12, "data.mesh.quadrature_degree", m.quadrature_degree, "1..12")
    require(
        1 <= m.surface_quadrature_degree <= 12,
        "data.mesh.surface_quadrature_degree",
        m.surface_quadrature_degree,
        "1..12",
    )
    require(m.probes_per_axis >= 1, "data.mesh.probes_per_axis", m.probes_per_axis, "an integer >= 1")
    ld = data.loads
    _check_range("data.loads.stretch", ld.stretch, positive=True)
    _check_range("data.loads.shear_strain", ld.shear_strain)
    _check_range("data.loads.compression_strain", ld.compression_strain)
    require(
        ld.compression_strain.low >= 0 and ld.compression_strain.high < 1,
        "data.loads.compression_strain",
        f"[{ld.compression_strain.low}, {ld.compression_strain.high}]",
        "engineering strains in [0, 1)",
    )
    _check_range("data.loads.pressure_kpa", ld.pressure_kpa)
    _check_range("data.loads.load_angle_deg", ld.load_angle_deg)
    _check_range("data.loads.fibre_angle_deg", ld.fibre_angle_deg)
    require(ld.patch_radius_mm > 0, "data.loads.patch_radius_mm", ld.patch_radius_mm, "> 0 (mm)")
    require(
        0 <= ld.patch_centre_margin_mm <= m.specimen_size_mm / 2,
        "data.loads.patch_centre_margin_mm",
        ld.patch_centre_margin_mm,
        "0..specimen_size_mm/2 (mm)",
    )
    require(0 < ld.poro_strain_scale <= 1, "data.loads.poro_strain_scale", ld.poro_strain_scale, "(0, 1]")
    require(
        0 <= ld.indentation_tangential_fraction <= 1,
        "data.loads.indentation_tangential_fraction",
        ld.indentation_tangential_fraction,
        "[0, 1]",
    )
    sv = data.solver
    require(sv.visco_ramp_time_s > 0, "data.solver.visco_ramp_time_s", sv.visco_ramp_time_s, "> 0 (s)")
    require(sv.snes_max_it >= 1, "data.solver.snes_max_it", sv.snes_max_it, ">= 1")
    require(
        sv.jit_opt_level in JIT_OPT_LEVELS,
        "data.solver.jit_opt_level",
        sv.jit_opt_level,
        f"one of {list(JIT_OPT_LEVELS)} (gcc -O<n> of the compiled forms; 2 in production)",
    )
    require(sv.initial_load_steps >= 1, "data.solver.initial_load_steps", sv.initial_load_steps, ">= 1")
    require(
        0 <= sv.max_cutbacks <= 20, "data.solver.max_cutbacks", sv.max_cutbacks, "0..20 (bounded retries)"
    )
    require(
        sv.visco_ramp_steps >= 1 and sv.visco_hold_steps >= 1,
        "data.solver.visco_*_steps",
        (sv.visco_ramp_steps, sv.visco_hold_steps),
        ">= 1 each",
    )
    require(
        len(m.poro_cells) == 3 and all(int(c) >= 1 for c in m.poro_cells),
        "data.mesh.poro_cells",
        list(m.poro_cells),
        "three integers >= 1 (cells in x, y, z)",
    )
    require(m.indentation_cells >= 1, "data.mesh.indentation_cells", m.indentation_cells, ">= 1")
    require(
        len(m.poro_indentation_cells) == 3 and all(int(c) >= 1 for c in m.poro_indentation_cells),
        "data.mesh.poro_indentation_cells",
        list(m.poro_indentation_cells),
        "three integers >= 1 (cells in x, y, z)",
    )
    require(m.poro_z_grading >= 1.0, "data.mesh.poro_z_grading", m.poro_z_grading, ">= 1 (1: uniform)")
    require(
        sv.poro_scheme in ("bdf2", "backward_euler"),
        "data.solver.poro_scheme",
        sv.poro_scheme,
        "bdf2 or backward_euler",
    )
    require(
        sv.poro_linear_solver in ("superlu", "mumps"),
        "data.solver.poro_linear_solver",
        sv.poro_linear_solver,
        "superlu or mumps",
    )
    require(
        0 < sv.poro_first_step < 1, "data.solver.poro_first_step", sv.poro_first_step, "(0, 1) (T_v units)"
    )
    require(
        1 <= sv.poro_step_ratio <= 1.5,
        "data.solver.poro_step_ratio",
        sv.poro_step_ratio,
        "[1, 1.5] (BDF2 is zero-stable for step ratios < 1 + sqrt 2; the step-doubling grid squares it)",
    )
    require(
        sv.poro_first_step <= sv.poro_max_step <= 1,
        "data.solver.poro_max_step",
        sv.poro_max_step,
        f"[poro_first_step = {sv.poro_first_step}, 1] (T_v units)",
    )
    for t in data.tissues:
        tc = data.tissue_library[t]
        require(bool(tc.hyperelastic), f"data.tissue_library.{t}.hyperelastic", None, "at least one law")
        for law, params in tc.hyperelastic.items():
            require(
                law in LAW_PARAMS,
                f"data.tissue_library.{t}.hyperelastic",
                law,
                f"one of {', '.join(LAW_PARAMS)}",
            )
            for p in LAW_PARAMS[law]:
                require(p in params, f"data.tissue_library.{t}.hyperelastic.{law}.{p}", None, "a range")
            for p, r in params.items():
                key = f"data.tissue_library.{t}.hyperelastic.{law}.{p}"
                require(p in LAW_PARAMS[law], key, p, f"one of {', '.join(LAW_PARAMS[law])}")
                _check_range(key, r, positive=p in POSITIVE_PARAMS, below_half=p == "nu")
            if law in INCOMPRESSIBLE_LAWS:
                require(
                    "confined_compression" not in data.scenarios,
                    f"data.tissue_library.{t}.hyperelastic",
                    law,
                    "a compressible law while data.scenarios has confined_compression "
                    "(an incompressible block cannot be compressed with its sides confined)",
                )
                require(
                    m.displacement_degree >= 2,
                    "data.mesh.displacement_degree",
                    m.displacement_degree,
                    f"2 for the incompressible law {law} (Taylor-Hood u-p; Q1/Q1 is not inf-sup stable)",
                )
            if law in OGDEN_LAWS:
                for a in params["alpha"].get("choices") or [params["alpha"].low, params["alpha"].high]:
                    require(
                        a != 0 and float(a) % 2 == 0,
                        f"data.tissue_library.{t}.hyperelastic.{law}.alpha",
                        a,
                        "non-zero even integers (sum of stretches^alpha = tr(C^(alpha/2)))",
                    )
                require(
                    bool(params["alpha"].get("choices")),
                    f"data.tissue_library.{t}.hyperelastic.{law}.alpha.choices",
                    [],
                    "a non-empty list of even integers (alpha is compiled into the form)",
                )
        require(
            tc.viscoelastic_law in tc.hyperelastic,
            f"data.tissue_library.{t}.viscoelastic_law",
            tc.viscoelastic_law,
            f"one of this tissue's laws {sorted(tc.hyperelastic)}",
        )
        require(
            tc.viscoelastic_law not in INCOMPRESSIBLE_LAWS,
            f"data.tissue_library.{t}.viscoelastic_law",
            tc.viscoelastic_law,
            "a compressible law (QLV would relax the incompressibility reaction pressure)",
        )
        for group, names in (("prony", PRONY_PARAMS), ("biot", BIOT_PARAMS)):
            rs = getattr(tc, group)
            for p in names:
                key = f"data.tissue_library.{t}.{group}.{p}"
                require(p in rs, key, None, "a range")
                _check_range(
                    key, rs[p], positive=p in POSITIVE_PARAMS or p in ("g1", "g2"), below_half=p == "nu"
                )
        g_sum = tc.prony["g1"].high + tc.prony["g2"].high
        require(
            g_sum < 1, f"data.tissue_library.{t}.prony", g_sum, "g1 + g2 < 1 (positive long-term modulus)"
        )


def validate_datagen(cfg: Any) -> None:
    validate(cfg.data)
    require(cfg.workers >= 1, "workers", cfg.workers, "an integer >= 1")
    require(cfg.worker_max_shards >= 1, "worker_max_shards", cfg.worker_max_shards, "an integer >= 1")
    require(cfg.shard_groups >= 1, "shard_groups", cfg.shard_groups, "an integer >= 1")
    require(
        0 <= cfg.shard_group < cfg.shard_groups,
        "shard_group",
        cfg.shard_group,
        f"0..{cfg.shard_groups - 1} (shard_groups - 1)",
    )


def param_names(data: Any) -> list[str]:
    """Column names of `params` (N, K): every material constant of every law in use, then loads."""
    names: list[str] = []
    for t in data.tissues:
        tc = data.tissue_library[t]
        for law in tc.hyperelastic:
            for p in LAW_PARAMS[law]:
                n = f"{law}.{p}"
                if n not in names:
                    names.append(n)
    names += [f"prony.{p}" for p in PRONY_PARAMS] + [f"biot.{p}" for p in BIOT_PARAMS]
    names += [f"load.{p}" for p in LOAD_PARAMS]
    return names


def param_units(data: Any) -> dict[str, str]:
    units: dict[str, str] = {}
    for t in data.tissues:
        tc = data.tissue_library[t]
        for law, params in tc.hyperelastic.items():
            for p, r in params.items():
                units[f"{law}.{p}"] = r.units
        for p, r in tc.prony.items():
            units[f"prony.{p}"] = r.units
        for p, r in tc.biot.items():
            units[f"biot.{p}"] = r.units
    units.update(
        {
            "load.stretch": "1",
            "load.shear_strain": "1",
            "load.compression_strain": "1",
            "load.pressure_kpa": "kPa",
            "load.load_angle_deg": "deg",
            "load.patch_x_mm": "mm",
            "load.patch_y_mm": "mm",
            "load.fibre_angle_deg": "deg",
            "load.time_s": "s",
        }
    )
    return units


__all__ = [
    "BEHAVIOURS",
    "SCENARIOS",
    "SPLITS",
    "ConfigError",
    "DataConfig",
    "DatagenConfig",
    "param_names",
    "param_units",
    "validate",
    "validate_datagen",
]
