"""The shared pieces every stage relies on: atomic writes, content ids, JSONL, config errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from common import atomic
from common.config import ConfigError, translate_hydra_error
from common.ids import content_id


def test_staged_dir_leaves_nothing_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "run"
    with pytest.raises(RuntimeError), atomic.staged_dir(final) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("crash mid-write")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_staged_dir_appears_whole_on_success(tmp_path: Path) -> None:
    final = tmp_path / "run"
    with atomic.staged_dir(final) as tmp:
        (tmp / "a.txt").write_text("a")
        assert not final.exists()
    assert (final / "a.txt").read_text() == "a"


def test_write_json_is_atomic_and_nan_free(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    atomic.write_json(p, {"loss": float("nan"), "x": [1.0, float("inf")]})
    assert json.loads(p.read_text()) == {"loss": None, "x": [1.0, None]}
    assert [f.name for f in tmp_path.iterdir()] == ["s.json"]  # no temp file left behind


def test_read_jsonl_tolerates_only_a_torn_last_line(tmp_path: Path) -> None:
    p = tmp_path / "m.jsonl"
    p.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert [r["step"] for r in atomic.read_jsonl(p)] == [1, 2]
    p.write_text('{"step": 1}\n{"ste\n{"step": 3}\n')
    with pytest.raises(json.JSONDecodeError):
        atomic.read_jsonl(p)


def test_content_id_depends_on_content_not_key_order() -> None:
    a = content_id({"lr": 1e-4, "seed": 0, "model": {"name": "tiny"}})
    b = content_id({"model": {"name": "tiny"}, "seed": 0, "lr": 1e-4})
    c = content_id({"lr": 1e-4, "seed": 1, "model": {"name": "tiny"}})
    assert a == b != c
    assert len(a) == 12 and int(a, 16) >= 0


def test_unknown_group_option_names_the_allowed_ones() -> None:
    exc = Exception("In 'run': Could not find 'optimizer/nope'\n\nAvailable options in 'optimizer':\n\tadamw")
    err = translate_hydra_error(exc, ["optimizer=nope"])
    assert isinstance(err, ConfigError)
    assert err.key == "optimizer" and err.value == "nope"
    assert "adamw" in err.allowed and "\n" not in str(err)


def test_logging_writes_console_and_run_file(tmp_path: Path) -> None:
    code = (
        "import logging; from common.logs import setup_logging;"
        f"setup_logging({str(tmp_path / 'run.log')!r});"
        "logging.getLogger('experiments.run').info('step 3 loss 1.25')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "experiments.run | step 3 loss 1.25" in out.stderr
    assert "INFO experiments.run | step 3 loss 1.25" in (tmp_path / "run.log").read_text()


def _git(cwd: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def test_code_version_of_a_checkout_and_of_a_git_archive_inside_another_checkout(tmp_path: Path) -> None:
    """A tree shipped with ``git archive`` into another repository's work tree (as to a lent GPU)
    reports the commit it was archived from, not the surrounding repository's HEAD."""
    from common.provenance import CODE_VERSION_FILE, git_state

    repo = tmp_path / "code"
    (repo / "common").mkdir(parents=True)
    src = Path(__file__).resolve().parents[2]
    (repo / CODE_VERSION_FILE).write_text((src / CODE_VERSION_FILE).read_text())
    (repo / ".gitattributes").write_text((src / ".gitattributes").read_text())
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "code")
    sha = _git(repo, "rev-parse", "HEAD").strip()
    assert git_state(repo) == {"git_sha": sha, "git_dirty": False, "git_source": "checkout"}
    (repo / "common" / "new.py").write_text("x = 1\n")
    _git(repo, "add", "common/new.py")
    assert git_state(repo)["git_dirty"] is True

    outer = tmp_path / "outer"  # another checkout, with its own HEAD, around the exported tree
    outer.mkdir()
    (outer / "f").write_text("f")
    _git(outer, "init", "-q")
    _git(outer, "add", "-A")
    _git(outer, "commit", "-qm", "outer")
    exported = outer / ".gpu" / "head"
    exported.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", sha], cwd=repo, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(exported)], input=archive, check=True)
    assert git_state(exported) == {"git_sha": sha, "git_dirty": None, "git_source": "git archive"}

    plain = tmp_path / "plain"  # a copy with the unexpanded placeholder: version unknown, not made up
    (plain / "common").mkdir(parents=True)
    (plain / CODE_VERSION_FILE).write_text((src / CODE_VERSION_FILE).read_text())
    assert git_state(plain) == {"git_sha": None, "git_dirty": None, "git_source": None}
