"""The benchmark CLI's contracts that need no GPU: bad input exits 2 before work, and the published
package's worker environment (``flashoptim.bench._worker_env``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flashoptim import bench

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "argv",
    [
        ["e2e", "--models", "llama70b"],
        ["e2e", "--arms", "ours24,adam_typo"],
        ["e2e", "--steps", "1"],
        ["--workload", "tiny"],
        ["--arms", "flash_adamw24,nope"],
    ],
)
def test_bad_input_exits_2_naming_what_is_allowed(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert "allowed" in err or "must be" in err


def test_published_worker_env_drops_only_our_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The published arms must import the published ``flashoptim``, so the repository leaves the
    path; every other entry stays (dropping the image's own entries broke transformers' import in
    the e2e worker on the H200, 2026-12-01)."""
    image_entry = tmp_path / "image_libs"
    image_entry.mkdir()
    published = tmp_path / "published"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/tmp/site", str(REPO), str(image_entry)]))
    env, cwd = bench._worker_env(True, published)
    entries = env["PYTHONPATH"].split(os.pathsep)
    assert entries[0] == str(published)
    assert str(REPO) not in entries
    assert "/tmp/site" in entries and str(image_entry) in entries
    assert cwd is not None and not (Path(cwd) / "flashoptim" / "__init__.py").exists()
    env_ours, cwd_ours = bench._worker_env(False, published)
    assert env_ours["PYTHONPATH"] == os.environ["PYTHONPATH"] and cwd_ours is None
