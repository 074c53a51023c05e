"""The project's modules form no import circle, and each imports on its own in a fresh interpreter.

The static check reads every module's top-level imports (what runs when the module is imported) and
looks for a cycle among the project's modules (a package's ``__init__`` importing its own submodules
is the usual pattern, not a circle; a submodule importing a name from its package's ``__init__``
is an edge to the package). Function-local imports are not edges: they are allowed only for heavy or optional
third-party imports, and each must say why in a comment (checked here for ``experiments/``,
``common/`` and ``scripts/``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "experiments", "analysis", "datagen", "flashoptim", "scripts")
LOCAL_IMPORT_RULE = ("experiments", "common", "scripts")


def project_modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest project module that ``name`` (a dotted import) names or lies inside."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        candidate = ".".join(parts[:k])
        if candidate in modules:
            return candidate
    return None


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def top_level_imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules imported when ``module`` is imported (module body, incl. if/try blocks)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    targets: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if (m := _resolve(alias.name, modules)) is not None:
                        targets.add(m)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = _package_of(module, path).split(".")
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join([*pkg, base] if base else pkg)
                for alias in node.names:  # `from pkg import sub` imports the submodule pkg.sub
                    m = _resolve(f"{base}.{alias.name}", modules) or _resolve(base, modules)
                    if m is not None:
                        targets.add(m)
            elif isinstance(node, ast.If | ast.Try | ast.With):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, field, []) or []:
                        visit(child.body if isinstance(child, ast.ExceptHandler) else [child])

    visit(tree.body)
    targets.discard(module)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {m: top_level_imports(m, p, modules) for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_the_checker_sees_a_circle(tmp_path: Path) -> None:
    """The cycle finder itself: a -> b -> a is found, a -> b alone is not."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    # and the import reader follows `from pkg import sub` to the submodule
    (tmp_path / "p").mkdir()
    mod = tmp_path / "p" / "x.py"
    mod.write_text("from p import y\nimport os\n\ndef f():\n    from p import z\n")
    modules = {"p": tmp_path / "p" / "__init__.py", "p.x": mod, "p.y": mod, "p.z": mod}
    assert top_level_imports("p.x", mod, modules) == {"p.y"}


def test_no_import_circle_among_the_project_modules() -> None:
    graph = import_graph()
    assert "experiments.run.main" in graph and "experiments.rundir" in graph
    assert cycles(graph) == []


def test_function_local_imports_say_why() -> None:
    """In experiments/, common/ and scripts/, an import inside a function carries a comment (on its
    line or the line above) saying why it is not at the top: heavy or optional."""
    missing = []
    for pkg in LOCAL_IMPORT_RULE:
        for path in sorted((REPO / pkg).rglob("*.py")):
            lines = path.read_text().splitlines()
            tree = ast.parse("\n".join(lines), filename=str(path))
            for fn in ast.walk(tree):
                if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import | ast.ImportFrom):
                        here, above = lines[node.lineno - 1], lines[node.lineno - 2]
                        if "#" not in here and not above.strip().startswith("#"):
                            missing.append(f"{path.relative_to(REPO)}:{node.lineno}: {here.strip()}")
    assert missing == []


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    """Each module first in its own interpreter: a circle that a lucky import order hides fails here."""
    failed = []
    for module in sorted(project_modules()):
        if module.endswith("__main__"):
            continue
        proc = subprocess.run(
            [sys.executable, "-c", f"import {module}"], cwd=REPO, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            failed.append(f"{module}: {proc.stderr.strip().splitlines()[-1]}")
    assert failed == []


@pytest.mark.slow
def test_the_entry_points_import_together() -> None:
    """One fresh interpreter imports every experiments/ and common/ module (the wings and the shared
    modules)."""
    mods = sorted(m for m in project_modules() if m.split(".")[0] in ("experiments", "common"))
    mods = [m for m in mods if not m.endswith("__main__")]
    code = f"import importlib\nfor m in {mods!r}:\n    importlib.import_module(m)\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
