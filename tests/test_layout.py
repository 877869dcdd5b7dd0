"""The code's shape: no import cycles, every module imports alone, small folders, the web never imports the
worker, and bench/ never imports tests/. Size and complexity are ruff's rules (pyproject.toml, `make lint`)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "worker")
MAX_MODULES_PER_FOLDER = 15


def module_name(path: Path) -> str:
    """app/versions/store.py -> app.versions.store; a package's __init__ -> the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(packages=PACKAGES) -> dict[str, Path]:
    """Every module of the packages, by dotted name."""
    return {module_name(p): p for package in packages for p in sorted((ROOT / package).rglob("*.py"))}


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules a file imports anywhere in it (inside functions too), as dotted names."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            # `from app.versions import store` names a module; `from app.versions.store import local_copy` the
            # module it is in. The longest known prefix is the module meant.
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports; a package's own __init__ is left out (it only gathers its package)."""
    known = modules()
    packages = {name for name, path in known.items() if path.name == "__init__.py"}
    return {name: {m for m in imported(path, known) if m not in packages and m != name}
            for name, path in known.items() if name not in packages}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that returns to its start, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_finds_one_through_a_function_level_import():
    """The checker itself: a cycle of three is found, a chain is not."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_the_modules_of_app_and_worker():
    """Counting imports inside functions: every arrow points one way."""
    assert find_cycle(import_graph()) is None


@pytest.mark.parametrize("module", sorted(modules()))
def test_every_module_imports_alone_in_a_fresh_interpreter(module):
    """No module works only because another happened to be imported first."""
    out = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_no_folder_holds_more_than_15_modules():
    folders = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path.name != "__init__.py":
                folders.setdefault(path.parent.relative_to(ROOT), []).append(path.name)
    assert {str(f): len(n) for f, n in folders.items() if len(n) > MAX_MODULES_PER_FOLDER} == {}


def test_the_web_package_never_imports_the_worker():
    """Every module of app/ imported, an app built: nothing of worker/ is loaded."""
    names = sorted(name for name in modules(("app",)))
    code = (f"import importlib, sys\nfor m in {names!r}: importlib.import_module(m)\n"
            "from app import create_app\ncreate_app({'TESTING': True})\n"
            "print(sorted(m for m in sys.modules if m == 'worker' or m.startswith('worker.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_bench_imports_nothing_from_tests():
    """Benchmarks share helpers with the tests through the `harness` package, never through test files."""
    offenders = []
    for path in sorted((ROOT / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n == "tests" or n.startswith("tests.")]
    assert offenders == []


def test_no_bench_script_shadows_an_installed_package():
    """`python bench/X.py` puts bench/ first on sys.path: a script named like a package would shadow it."""
    import importlib.util

    shadowing = [p.stem for p in (ROOT / "bench").glob("*.py")
                 if p.stem not in ("common",) and importlib.util.find_spec(p.stem) is not None
                 and "bench" not in str(importlib.util.find_spec(p.stem).origin)]
    assert shadowing == []


def test_the_layout_checks_see_real_imports():
    """The graph is not vacuous: known arrows are in it (the API hands out comparisons, which the model samples)."""
    graph = import_graph()
    assert "app.annotation.comparisons" in graph["app.web.api"]
    assert "app.versions.serving" in graph["app.annotation.comparisons"]
    assert len(graph) > 50


# Where processes are started by name: these strings outlive a refactor (queued RQ jobs name worker.dpo.run_dpo).
ENTRY_FILES = ("Makefile", "Dockerfile", "docker-compose.yml", "app/platform/launcher.py", "app/gunicorn_conf.py",
               "app/training/jobs.py", "app/web/cli.py", "README.md")


def entry_points() -> set[str]:
    """Every `-m module`, `module:callable` and dotted job name of app/ or worker/ those files name."""
    import re

    found = set()
    for name in ENTRY_FILES:
        text = (ROOT / name).read_text()
        found |= {m for m in re.findall(r"-m\s+((?:app|worker)(?:\.\w+)*)", text)}
        found |= {m for m in re.findall(r"['\"\s,]-m['\"],?\s*['\"]((?:app|worker)(?:\.\w+)*)", text)}
        found |= {f"{m}:{c}" for m, c in re.findall(r"\b((?:app|worker)(?:\.\w+)*):(\w+)", text)}
        found |= set(re.findall(r"\"((?:app|worker)\.\w+(?:\.\w+)*\.run_\w+)\"", text))
    return found


def test_every_entry_point_named_as_a_string_resolves():
    """`make run`, compose, the launcher, gunicorn and queued jobs start code by name: each name still exists."""
    names = entry_points()
    assert {"app.platform.launcher", "app:create_app", "worker", "worker.dpo.run_dpo"} <= names, names
    assert (ROOT / "app" / "gunicorn_conf.py").is_file()
    code = ("import importlib, importlib.util, sys\n"
            f"for name in {sorted(names)!r}:\n"
            "    module, _, attr = name.partition(':')\n"
            "    if name.rpartition('.')[2].startswith('run_'):\n"
            "        module, _, attr = name.rpartition('.')\n"
            "    assert importlib.util.find_spec(module), name\n"
            "    if attr: assert callable(getattr(importlib.import_module(module), attr)), name\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
