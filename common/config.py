"""Compose Hydra configs and turn every configuration mistake into one clear line.

The one way the project composes a config: :func:`load` (Hydra's own config loader over ``conf/``,
the same call Hydra's Compose API and ``@hydra.main`` make; one loader per config directory is kept,
since a sweep composes hundreds of run configs) and :func:`compose` (``load`` without the ``hydra``
node, resolved, every mandatory value checked). Entry points call :func:`load_validated` (compose,
then their schema's ``validate``). Any mistake, whether Hydra's (unknown group option, unknown key, wrong type) or ours
(negative learning rate, missing dataset, impossible combination), becomes a :class:`ConfigError`
naming the key, the bad value and what is allowed. :func:`exit_on_config_error` prints that one
line and exits with status 2 before any work starts or any directory is created.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

from hydra import version
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.core.utils import setup_globals
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
EXIT_CONFIG_ERROR = 2


@dataclass
class ConfigError(Exception):
    key: str
    value: Any
    allowed: str

    def __str__(self) -> str:
        return f"config error: {self.key}={self.value!r} is not allowed; allowed: {self.allowed}"


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise a :class:`ConfigError` unless ``ok``; the validators' one building block."""
    if not ok:
        raise ConfigError(key, value, allowed)


# -- paths a config names: contained -------------------------------------------------------------
# The working tree: the checkout holding conf/. A results_root must lie inside it (lexically, after
# making it absolute against the current directory and normalising `..`; a symlink placed inside it
# by the user is theirs to place) unless `allow_outside_results_root=true`.
WORK_TREE = CONF_DIR.parent
ALLOW_OUTSIDE_KEY = "allow_outside_results_root"
# conf/run.yaml and conf/sweep.yaml read this variable as the switch's default: a sweep whose switch
# is on sets it for the runs it starts (their config has no sweep section to pass it through).
ALLOW_OUTSIDE_ENV = "HARNESS_ALLOW_OUTSIDE_RESULTS_ROOT"


def require_name(key: str, value: Any) -> None:
    """``value`` is used as one directory name: no separator, not ``.``/``..``, not hidden."""
    v = "" if value is None else str(value)
    ok = bool(v) and not any(c in v for c in ("/", "\\", "\0")) and not v.startswith(".")
    require(ok, key, value, "a directory name: no '/' or '\\', not '.', '..' or starting with '.'")


def require_results_root(value: Any, allow_outside: bool, key: str = "results_root") -> None:
    """``results_root`` lies inside the working tree, unless the switch allows elsewhere."""
    root = Path(os.path.normpath(os.path.abspath(str(value))))
    inside = root == WORK_TREE or WORK_TREE in root.parents
    require(
        bool(str(value)) and (inside or allow_outside),
        key,
        value,
        f"a directory inside the working tree {WORK_TREE} (or set {ALLOW_OUTSIDE_KEY}=true "
        "to write elsewhere)",
    )


def _group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _override_value(overrides: Sequence[str], key: str) -> str:
    """The value the overrides give ``key`` (a full dotted key, or its last parts); "?" if none."""
    for o in overrides:
        name, _, value = o.lstrip("+~").partition("=")
        if name == key or name.endswith("." + key) or key.endswith("." + name):
            return value
    return "?"


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from, innermost first (Hydra wraps OmegaConf's
    ``ValidationError``, which alone names the full key and the expected type)."""
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and all(e is not c for c in chain):
        chain.append(e)
        e = e.__cause__
    return chain[::-1]


def _failed_override(msg: str, overrides: Sequence[str]) -> str | None:
    """The one override Hydra's message names (``Error merging/parsing override X``)."""
    m = re.search(r"Error (?:merging|parsing) override '?(.+?)'?$", msg.strip().splitlines()[0])
    if m:
        return m.group(1)
    return None


def translate_hydra_error(exc: BaseException, overrides: Sequence[str]) -> ConfigError:
    """Map Hydra/OmegaConf exceptions onto one line naming key, value and what is allowed."""
    for e in _causes(exc):
        err = _translate_one(e, overrides)
        if err is not None:
            return err
    msg = str(exc).strip()
    first = msg.splitlines()[0] if msg else type(exc).__name__
    bad = _failed_override(msg, overrides) or next((o for o in overrides if o in msg), None)
    m = re.search(r"(?:at input|mismatched input) '(.+?)'", msg)
    if bad is None and m:  # a grammar error quotes the fragment it stopped at
        bad = next((o for o in overrides if m.group(1) in o), None)
    allowed = "key=value in Hydra's override grammar (quote a list: 'key=[a,b]')"
    if bad is not None:
        return ConfigError("override", bad, f"{allowed}; Hydra says: {first}")
    return ConfigError("overrides", " ".join(overrides), f"{allowed}; Hydra says: {first}")


def _translate_one(exc: BaseException, overrides: Sequence[str]) -> ConfigError | None:
    msg = str(exc)
    full_key = getattr(exc, "full_key", None)
    m = re.search(r"Could not find '([^']+)/([^'/]+)'", msg)
    if m:
        group, option = m.group(1), m.group(2)
        return ConfigError(group, option, "one of " + ", ".join(_group_options(group)))
    m = re.search(r"Could not (?:override|append to config\.) '?([\w.]+)'?", msg)
    key_m = re.search(r"Key '([^']+)' (?:is )?not in (?:struct )?'?(\w+)'?", msg)
    if m or key_m:
        key = m.group(1) if m else key_m.group(1)  # type: ignore[union-attr]
        allowed = "a key defined in the schema (see `--cfg job` for the full tree)"
        if not full_key:  # Hydra names the last part; the override the user typed has the full key
            names = [o.lstrip("+~").partition("=")[0] for o in overrides]
            full_key = next((n for n in names if n == key or n.endswith("." + key)), key)
        return ConfigError(
            str(full_key), _override_value(overrides, str(full_key)), f"unknown key; {allowed}"
        )
    m = re.search(r"Value '([^']*)' (?:of type '\w+' )?could not be converted to (\w+)", msg)
    if m:
        kind = {"Float": "a number", "Integer": "an integer", "Boolean": "true or false"}.get(
            m.group(2), f"a value of type {m.group(2)}"
        )
        return ConfigError(str(full_key or "?"), m.group(1), kind)
    m = re.search(r"Invalid value assigned: (\w+) is not a ListConfig", msg)
    if m:
        key = str(full_key or "?")
        return ConfigError(key, _override_value(overrides, key), "a list in brackets, e.g. 'key=[a,b]'")
    m = re.search(r"Invalid value '([^']*)', expected one of \[([^\]]*)\]", msg)
    if m:
        return ConfigError(str(full_key or "?"), m.group(1), "one of " + m.group(2).replace("'", ""))
    m = re.search(r"Missing mandatory value: ([\w.]+)", msg)
    if m:
        return ConfigError(m.group(1), "???", "a value must be given (it has no default)")
    if full_key and type(exc).__name__ == "ValidationError":  # any other type mismatch OmegaConf names
        key = str(full_key)
        first = msg.strip().splitlines()[0]
        return ConfigError(key, _override_value(overrides, key), f"a value its schema accepts ({first})")
    return None


@cache
def _loader(config_dir: str) -> ConfigLoaderImpl:
    return ConfigLoaderImpl(config_search_path=create_config_search_path(config_dir))


def loader(config_dir: Path | str = CONF_DIR) -> ConfigLoaderImpl:
    """Hydra's config loader over ``config_dir`` (one per directory; Hydra's launchers need it too)."""
    return _loader(str(config_dir))


def load(
    config_name: str, overrides: Sequence[str] = (), config_dir: Path | str = CONF_DIR, multirun: bool = False
) -> DictConfig:
    """Compose ``<config_dir>/<config_name>.yaml`` with ``overrides``, keeping the ``hydra`` node
    (group choices, launcher) and interpolations unresolved; ConfigError on any mistake."""
    version.setbase("1.3")  # as initialize_config_dir(version_base="1.3") / @hydra.main do
    setup_globals()
    try:
        return loader(config_dir).load_configuration(
            config_name=config_name,
            overrides=list(overrides),
            run_mode=RunMode.MULTIRUN if multirun else RunMode.RUN,
        )
    except Exception as exc:  # Hydra raises several unrelated exception types for config mistakes
        raise translate_hydra_error(exc, overrides) from exc


def strip_hydra(cfg: DictConfig) -> DictConfig:
    """``cfg`` without its ``hydra`` node (what a program sees of its config)."""
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def compose(config_name: str, overrides: Sequence[str] = (), config_dir: Path | str = CONF_DIR) -> Any:
    """Compose ``config_name`` with ``overrides``, resolved, without the ``hydra`` node; raise
    ConfigError on any mistake."""
    cfg = strip_hydra(load(config_name, overrides, config_dir))
    try:
        OmegaConf.resolve(cfg)
        # Touch every value so that missing mandatory values surface here, not mid-run.
        OmegaConf.to_container(cfg, throw_on_missing=True)
    except ConfigError:
        raise
    except Exception as exc:  # Hydra raises several unrelated exception types for config mistakes
        raise translate_hydra_error(exc, overrides) from exc
    return cfg


def die(error: ConfigError | str) -> NoReturn:
    print(str(error), file=sys.stderr)
    raise SystemExit(EXIT_CONFIG_ERROR)


@contextlib.contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Print a ConfigError as one line on stderr and exit 2 (no traceback)."""
    try:
        yield
    except ConfigError as e:
        die(e)


def load_validated(
    config_name: str, overrides: Sequence[str], validate: Callable[[Any], Any] | None = None
) -> Any:
    """Compose then validate; the entry points' one call. Exits 2 on any config mistake."""
    with exit_on_config_error():
        cfg = compose(config_name, overrides)
        if validate is not None:
            validate(cfg)
    return cfg
