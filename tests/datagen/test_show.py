"""`python -m datagen.show`: the PNG shows the deformed specimen and a stress slice of a re-solved sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import image

from common.config import compose
from datagen.dataset import load_split
from datagen.generate import generate
from datagen.show import DPI, FIGSIZE_IN, main, render
from datagen.spec import validate_datagen


def test_show_renders_deformed_specimen_and_stress_slice(tmp_path: Path) -> None:
    cfg = compose(
        "datagen",
        [
            "data=smoke",
            "data.splits.train=2",
            "data.splits.val=0",
            "data.splits.test=0",
            "data.shard_size=2",
            "data.behaviours=[hyperelastic]",
            "data.scenarios=[indentation]",
            "data.tissues=[liver]",
            "workers=1",
            f"results_root={tmp_path}",
        ],
    )
    validate_datagen(cfg)
    d = generate(cfg)
    stored = load_split(d, "train")["stress"][1]

    r = render(d, 1, "train", tmp_path / "s.png")
    # The sample was re-solved from its inputs: same probe stresses as stored.
    assert r.probe_stress_rel_diff <= 1e-8, r.probe_stress_rel_diff
    # Indentation is inhomogeneous: the slice varies, and the von Mises range covers the probes'.
    assert np.ptp(r.slice_von_mises_kpa) > 0.2 * np.max(r.slice_von_mises_kpa) > 0
    assert r.max_displacement_mm > 1e-3
    img = image.imread(r.path)
    assert img.shape[:2] == (round(FIGSIZE_IN[1] * DPI), round(FIGSIZE_IN[0] * DPI))
    colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 500, len(colours)  # colour maps on two panels, not a blank canvas
    assert np.isfinite(stored).all()

    # The CLI writes the file and exits 0; a bad index is one line and exit 2.
    out = tmp_path / "cli.png"
    assert main([str(d), "0", "--out", str(out)]) == 0 and out.stat().st_size > 10_000
    assert main([str(d), "5", "--out", str(tmp_path / "bad.png")]) == 2
    assert not (tmp_path / "bad.png").exists()
