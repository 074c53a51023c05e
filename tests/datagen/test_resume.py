"""Datagen from interrupted or damaged states (issue 18, item 3).

- all shards but no manifest.json (killed between the last shard and the manifest): a fresh
  `python -m datagen` finishes it (it used to die importing dolfinx before dolfinx_solver);
- a shard altered on disk is never taken into a rebuilt manifest: it is moved to
  shards/quarantine/ (kept) and solved again, whatever was altered (its bytes only, its inputs with
  its digest record forged, or its stored stress with the record forged);
- a bit-flipped shard: the error names the file and says what to do in one line, exit 2 from the
  command line, and the generator repairs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.config import ConfigError, compose
from datagen.dataset import DatasetError, digest_path, load_split, npz_bytes, read_shard, write_shard
from datagen.generate import generate
from datagen.spec import validate_datagen

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "data=smoke",
    "data.splits.train=6",
    "data.splits.val=3",
    "data.splits.test=3",
    "data.shard_size=3",
    "data.behaviours=[poroelastic]",  # one compiled model: the fresh processes below start fast
    "data.tissues=[liver]",
    "workers=1",
]


def tiny_cfg(root: Path) -> Any:
    cfg = compose("datagen", [*TINY, f"results_root={root}"])
    validate_datagen(cfg)
    return cfg


def hashes(d: Path) -> dict[str, str]:
    return json.loads((d / "manifest.json").read_text())["shard_hashes"]


def run_cli(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )


def flip_stress_byte(path: Path) -> None:
    """Flip one byte inside the stored stress values (the zip member's CRC no longer matches)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("stress.npy")
    raw = bytearray(path.read_bytes())
    # local header (30 bytes) + name + extra, then the .npy header (128 bytes), then the data
    off = info.header_offset + 30 + len(info.filename) + len(info.extra) + 128 + 40
    raw[off] ^= 0x10
    path.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    d = generate(tiny_cfg(tmp_path_factory.mktemp("ref")))
    return d, hashes(d)


@pytest.mark.slow  # fresh processes and several small generations: minutes on the shared 2-core box
def test_all_shards_no_manifest_is_finished_by_a_fresh_process(tmp_path: Path, reference: Any) -> None:
    d = generate(tiny_cfg(tmp_path))
    (d / "manifest.json").unlink()  # killed between the last shard and the manifest
    digest_path(d / "shards" / "val-00000.npz").unlink()  # ... or between a shard and its record
    r = run_cli("datagen", *TINY, f"results_root={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert hashes(d) == reference[1]


@pytest.mark.slow
def test_altered_shards_are_quarantined_and_solved_again(tmp_path: Path, reference: Any) -> None:
    d = generate(tiny_cfg(tmp_path))
    (d / "manifest.json").unlink()
    shards = d / "shards"
    # 1) bytes altered, digest record not: a stored stress value changed in a valid npz.
    p1 = shards / "train-00000.npz"
    a = read_shard(p1)
    a["stress"] = a["stress"].copy()
    a["stress"][-1, 0, 0] += 1.0
    p1.write_bytes(npz_bytes(a))
    # 2) an input altered and the digest record forged to match.
    p2 = shards / "train-00001.npz"
    b = read_shard(p2)
    b["params"] = b["params"].copy()
    b["params"][-1, np.isfinite(b["params"][-1])] *= 1.01
    p2.write_bytes(npz_bytes(b))
    digest_path(p2).write_text(__import__("hashlib").sha256(p2.read_bytes()).hexdigest())
    # 3) the stress of a sample altered (inputs intact) and the record forged.
    p3 = shards / "val-00000.npz"
    c = read_shard(p3)
    c["stress"] = c["stress"].copy()
    c["stress"][0] *= 1.001
    p3.write_bytes(npz_bytes(c))
    digest_path(p3).write_text(__import__("hashlib").sha256(p3.read_bytes()).hexdigest())
    # 4) a bit flipped (CRC error).
    flip_stress_byte(shards / "test-00000.npz")
    altered = {p.name: p.read_bytes() for p in (p1, p2, p3, shards / "test-00000.npz")}

    generate(tiny_cfg(tmp_path))
    assert hashes(d) == reference[1]  # the rebuilt manifest holds what the generator writes
    kept = {
        q.name.split(".npz")[0] + ".npz": q.read_bytes()
        for q in (shards / "quarantine").glob("*.npz.*")
        if not q.name.endswith(".sha256")
    }
    assert {n: kept.get(n) for n in altered} == altered  # nothing deleted: the altered files are kept


def test_bit_flipped_shard_read_error_names_the_file(tmp_path: Path) -> None:
    """Fast: the zip CRC error of a shard (it used to be a bare BadZipFile) is one line naming it."""
    p = tmp_path / "datasets" / "x" / "shards" / "train-00000.npz"
    p.parent.mkdir(parents=True)
    write_shard(p, {"stress": np.linspace(0.0, 1.0, 600).reshape(10, 10, 6)})
    flip_stress_byte(p)
    with pytest.raises(DatasetError) as e:
        read_shard(p)
    msg = str(e.value)
    assert str(p) in msg and "\n" not in msg and "python -m datagen" in msg and "CRC" in msg
    assert isinstance(e.value, ConfigError)  # entry points print it in one line, exit 2


@pytest.mark.slow
def test_bit_flipped_shard_in_a_dataset(tmp_path: Path) -> None:
    d = generate(tiny_cfg(tmp_path))
    p = d / "shards" / "test-00000.npz"
    flip_stress_byte(p)
    with pytest.raises(DatasetError) as e2:
        load_split(d, "test")
    assert str(p) in str(e2.value) and "python -m datagen" in str(e2.value)
    # A ConfigError: entry points that print user errors in one line with exit 2 (experiments.run,
    # common.config.exit_on_config_error) treat it the same way.
    assert isinstance(e2.value, ConfigError)
    # From the command line: one line on stderr naming the shard, exit 2.
    r = run_cli("datagen.show", str(d), "0", "--split", "test", "--out", str(tmp_path / "x.png"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(p) in lines[0], r.stderr
    # The generator repairs it: the manifest no longer matches, so it is quarantined with the shard.
    generate(tiny_cfg(tmp_path))
    assert len(load_split(d, "test")["sample_id"]) > 0
    assert len(list((d / "shards" / "quarantine").glob("manifest.json.*"))) == 1
