"""Paths a config names are contained: ``sweep_id``/``sweep.id``/``sweep.launch_run`` are one
directory name (no separator, not ``.``/``..``), and ``results_root`` lies inside the working tree
unless ``allow_outside_results_root=true``. A refusal is one line naming the key and the value, exit
2, before anything is written. (tests/conftest.py turns the switch on for the suite's tmp dirs.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import ALLOW_OUTSIDE_ENV, WORK_TREE
from experiments.run.main import main as run_main
from experiments.sweep.main import main as sweep_main


def _refusal(capsys: pytest.CaptureFixture[str], entry: object, args: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        entry(args)  # type: ignore[operator]
    assert exc.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def _tree(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


@pytest.mark.parametrize("bad", ["..", "a/b", ".", "..\\\\x"])
def test_run_refuses_a_sweep_id_that_is_not_one_directory_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bad: str
) -> None:
    root = tmp_path / "results"
    root.mkdir()
    line = _refusal(capsys, run_main, [f"results_root={root}", f"sweep_id='{bad}'"])
    assert line.startswith("config error: sweep_id=") and "directory name" in line
    assert _tree(tmp_path) == [root], "nothing written"


@pytest.mark.parametrize("key", ["sweep.id", "sweep.launch_run"])
def test_sweep_refuses_an_id_that_is_not_one_directory_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: str
) -> None:
    line = _refusal(capsys, sweep_main, [f"results_root={tmp_path}", f"{key}=.."])
    assert line.startswith(f"config error: {key}='..'") and "directory name" in line
    assert _tree(tmp_path) == []


@pytest.mark.parametrize("entry", [run_main, sweep_main], ids=["run", "sweep"])
def test_results_root_outside_the_working_tree_is_refused_unless_allowed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, entry: object
) -> None:
    monkeypatch.delenv(ALLOW_OUTSIDE_ENV, raising=False)
    before = _tree(Path("/etc")) if Path("/etc").is_dir() else []
    line = _refusal(capsys, entry, ["results_root=/etc"])
    assert line.startswith("config error: results_root='/etc'") and str(WORK_TREE) in line
    assert "allow_outside_results_root=true" in line
    assert (_tree(Path("/etc")) if Path("/etc").is_dir() else []) == before, "/etc was written"
    # `..` out of the tree is outside too, however it is spelled
    line = _refusal(capsys, entry, [f"results_root={WORK_TREE}/results/../.."])
    assert line.startswith("config error: results_root=")


def test_the_switch_allows_an_outside_results_root(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(ALLOW_OUTSIDE_ENV, raising=False)
    # past the path checks, the run stops at the next one (no dataset there): not at results_root
    line = _refusal(capsys, run_main, [f"results_root={tmp_path}", "allow_outside_results_root=true"])
    assert line.startswith("config error: data=") and "results_root" not in line.split(" is not")[0]
    assert _tree(tmp_path) == []
