"""The laws beyond the shipped tissue library work end to end in the generator: Guccione (fibre
frame from load.fibre_angle_deg) and the exactly incompressible Mooney-Rivlin and Ogden (mixed u-p,
J = 1 by a pressure Lagrange multiplier). Their closed forms are tested in test_patch.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from omegaconf import OmegaConf

from common.config import ConfigError, compose
from datagen.sampling import draw_sample
from datagen.spec import param_names, validate_datagen

LAWS = {
    "guccione": {
        "C": (1.5, 2.5, "kPa"),
        "b_f": (6.0, 10.0, "1"),
        "b_t": (1.5, 2.5, "1"),
        "b_fs": (3.0, 5.0, "1"),
        "nu": (0.45, 0.49, "1"),
    },
    "mooney_rivlin_incompressible": {"c10": (0.5, 1.0, "kPa"), "c01": (0.2, 0.5, "kPa")},
    "ogden_incompressible": {"mu": (0.6, 1.4, "kPa"), "alpha": (-20.0, -20.0, "1")},
}


def extra_laws_cfg() -> Any:
    composed = compose(
        "datagen",
        [
            "data=smoke",
            "data.tissues=[myocardium]",
            "data.behaviours=[hyperelastic]",
            "data.scenarios=[uniaxial,simple_shear,indentation]",  # confined: no incompressible solution
        ],
    )
    # A plain (untyped) copy, as the workers receive it: new laws are added as ordinary dicts.
    cfg = OmegaConf.to_container(composed, resolve=True)
    lib = cfg["data"]["tissue_library"]["myocardium"]["hyperelastic"]
    for law, params in LAWS.items():
        lib[law] = {
            p: {"low": lo, "high": hi, "units": u, "source": "test", "verified": "test", "choices": []}
            for p, (lo, hi, u) in params.items()
        }
    lib["ogden_incompressible"]["alpha"]["choices"] = [-20.0]
    del lib["holzapfel_ogden"]  # keep neo_hookean: the QLV law of the tissue
    return OmegaConf.create(cfg)


def test_extra_laws_validate_and_bad_combinations_name_the_key() -> None:
    cfg = extra_laws_cfg()
    validate_datagen(cfg)
    assert "guccione.C" in param_names(cfg.data) and "ogden_incompressible.alpha" in param_names(cfg.data)
    bad = OmegaConf.create(OmegaConf.to_container(cfg))
    bad.data.tissue_library.myocardium.viscoelastic_law = "mooney_rivlin_incompressible"
    with pytest.raises(ConfigError, match=r"viscoelastic_law.*compressible law"):
        validate_datagen(bad)
    bad = OmegaConf.create(OmegaConf.to_container(cfg))
    bad.data.scenarios = ["uniaxial", "confined_compression"]
    with pytest.raises(ConfigError, match=r"hyperelastic.*confined"):
        validate_datagen(bad)
    bad = OmegaConf.create(OmegaConf.to_container(cfg))
    bad.data.mesh.displacement_degree = 1
    with pytest.raises(ConfigError, match=r"displacement_degree"):
        validate_datagen(bad)


def test_extra_laws_solve_in_the_worker() -> None:
    from datagen.worker import SampleRunner

    cfg = extra_laws_cfg()
    data = cfg.data
    runner = SampleRunner(data, eager=False)
    seen: dict[str, int] = {}
    sid = 0
    while len(seen) < 3 * 2 and sid < 400:  # each law in a homogeneous and an inhomogeneous scenario
        x = draw_sample(data, sid)
        sid += 1
        key = f"{x.material_model}/{x.scenario == 'uniaxial'}"
        if key in seen or x.material_model not in LAWS:
            continue
        res = runner.run(x)
        seen[key] = sid
        assert res.converged and np.isfinite(res.stress).all() and np.abs(res.stress).max() > 0
        if x.material_model in LAWS and x.material_model.endswith("incompressible"):
            E = res.strain
            detC = (1 + 2 * E[:, 0]) * (1 + 2 * E[:, 1]) * (1 + 2 * E[:, 2])  # exact only if homogeneous
            if x.scenario == "uniaxial":
                assert np.max(np.abs(detC - 1)) <= 1e-10
        if x.material_model == "guccione":
            assert np.isfinite(x.params["load.fibre_angle_deg"])
    assert len(seen) == 6, seen
