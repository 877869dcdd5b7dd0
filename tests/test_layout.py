"""The code's shape: the web never imports the worker, and modules and functions stay small enough to read."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "worker")


def test_the_web_package_never_imports_the_worker():
    """Every module of app/ imported, an app built: nothing of worker/ is loaded."""
    modules = sorted("app." + ".".join(p.relative_to(ROOT / "app").with_suffix("").parts)
                     for p in (ROOT / "app").rglob("*.py") if p.name != "__init__.py")
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "from app import create_app\ncreate_app({'TESTING': True})\n"
            "print(sorted(m for m in sys.modules if m == 'worker' or m.startswith('worker.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def is_data(node: ast.FunctionDef) -> bool:
    """A function that only assigns values (Config.__init__): a data literal, which the limit exempts."""
    return all(isinstance(st, ast.Assign | ast.AnnAssign) or (isinstance(st, ast.Expr) and isinstance(
        st.value, ast.Constant)) for st in node.body)


def test_no_module_over_300_lines_and_no_function_over_60():
    """Except data literals."""
    too_long = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            source = path.read_text()
            if len(source.splitlines()) > 300:
                too_long.append(f"{path.relative_to(ROOT)}: {len(source.splitlines())} lines")
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not is_data(node):
                    length = node.end_lineno - node.lineno + 1
                    if length > 60:
                        too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []
