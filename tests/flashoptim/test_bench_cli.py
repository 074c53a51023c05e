"""The benchmark CLI's contracts that need no GPU: bad input exits 2 before work, and the published
package's worker environment (``flashoptim.bench._worker_env``)."""

from __future__ import annotations

import os
import sys
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


def test_published_worker_env_only_puts_the_wheel_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The published arms must import the published ``flashoptim``: its directory goes first on the
    path and is named to the worker; nothing else differs from our arms' environment (two
    environments that differed more broke transformers' import in the e2e worker on the H200,
    2026-12-01)."""
    image_entry = tmp_path / "image_libs"
    image_entry.mkdir()
    published = tmp_path / "published"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/tmp/site", str(REPO), str(image_entry)]))
    monkeypatch.setenv(bench.PUBLISHED_ROOT_ENV, "stale")
    env, cwd = bench._worker_env(True, published)
    entries = env["PYTHONPATH"].split(os.pathsep)
    assert entries == [str(published), "/tmp/site", str(REPO), str(image_entry)]
    assert env[bench.PUBLISHED_ROOT_ENV] == str(published) and cwd is None
    env_ours, cwd_ours = bench._worker_env(False, published)
    assert env_ours["PYTHONPATH"] == os.environ["PYTHONPATH"] and cwd_ours is None
    assert bench.PUBLISHED_ROOT_ENV not in env_ours
    assert {k: v for k, v in env.items() if k not in ("PYTHONPATH", bench.PUBLISHED_ROOT_ENV)} == {
        k: v for k, v in env_ours.items() if k != "PYTHONPATH"
    }


def test_a_published_arm_that_imports_our_package_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker refuses to time our package under a published arm's name."""
    import flashoptim
    from flashoptim import bench_e2e_worker, bench_worker

    monkeypatch.setenv(bench.PUBLISHED_ROOT_ENV, str(tmp_path / "published"))
    for worker in (bench_worker, bench_e2e_worker):
        with pytest.raises(RuntimeError, match="not from"):
            worker._check_origin(flashoptim)
    published_pkg = tmp_path / "published" / "flashoptim"
    published_pkg.mkdir(parents=True)
    fake = type("M", (), {"__file__": str(published_pkg / "__init__.py")})
    bench_worker._check_origin(fake)  # the published package's own file passes


def test_workers_take_their_own_directory_off_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's directory holds a package named ``kernels``, which transformers' probe for the
    hub's ``kernels`` package imported in the published e2e arms; the worker removes it."""
    from flashoptim import bench_e2e_worker, bench_worker

    here = str(Path(bench_worker.__file__).resolve().parent)
    for worker in (bench_worker, bench_e2e_worker):
        monkeypatch.setattr("sys.path", [here, "/tmp/site", *sys.path])
        worker._drop_own_directory()
        assert here not in [str(Path(p).resolve()) for p in sys.path if p]
        assert "/tmp/site" in sys.path


def test_e2e_worker_refuses_an_unknown_cache_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flashoptim import bench_e2e_worker

    out = tmp_path / "r.json"
    assert bench_e2e_worker.main(["llama1b", "ours24", str(out), "6", "1", "2048", "drop"]) == 2
    err = capsys.readouterr().err
    assert "CACHE='drop'" in err and "allowed: release, keep" in err and not out.exists()
