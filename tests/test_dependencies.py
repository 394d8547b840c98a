"""Dependencies flow one way: app/, probes/, notebooks/ -> workbench/, never the reverse, not even by file path.

Every module of the library is parsed (nothing is imported): none imports the app, the probe scripts or
the notebooks, nor the command (``workbench.cli``); none loads code by file path or names an upper layer's
module for a dynamic import (``workbench app`` finds the app through entry points); the figure layer
(``workbench/plots``) never imports an analysis.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "workbench"
UPPER = ("app", "probes", "notebooks")
#: a string that names the app or a module of the app, the probes or the notebooks (a dynamic import's target,
#: a path part); a bare "probes" is also the name of an analysis and of a model's results folder, so it passes
UPPER_NAME = re.compile(r"^(app(\.[\w.]+)?|(probes|notebooks)\.[\w.]+)(:\w+)?$")
FILE_LOADERS = {"spec_from_file_location", "module_from_spec", "run_path", "run_module", "__import__", "SourceFileLoader",
                "load_source"}
MODULES = sorted(p for p in LIBRARY.rglob("*.py") if "tests" not in p.relative_to(LIBRARY).parts)


def imported(tree: ast.AST) -> list[str]:
    """Every module an ``import`` or ``from ... import`` names (relative imports resolved to the library)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "workbench." * bool(node.level) + (node.module or "")
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def rel(path: Path) -> str:
    return path.relative_to(LIBRARY.parent).as_posix()


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_the_library_never_imports_the_app_probes_notebooks_or_the_command(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    names = imported(tree)
    upward = [n for n in names if n.split(".")[0] in UPPER]
    assert not upward, f"{rel(path)} imports {upward}: the library must not depend on app/, probes/ or notebooks/"
    if rel(path) != "workbench/cli.py":
        cli = [n for n in names if n == "workbench.cli" or n.startswith("workbench.cli.")]
        assert not cli, f"{rel(path)} imports the command ({cli}); share code through a library module (workbench/exits.py)"


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_the_library_loads_no_code_by_file_path_or_by_the_names_of_upper_layers(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    names = imported(tree)
    assert not [n for n in names if n.startswith(("importlib.util", "importlib.machinery", "runpy", "imp."))], \
        f"{rel(path)} imports a file-path loader"
    called = {node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
              for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert not called & FILE_LOADERS, f"{rel(path)} loads code by hand ({sorted(called & FILE_LOADERS)})"
    upper = [node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and UPPER_NAME.match(node.value)]
    assert not upper, f"{rel(path)} names an upper layer's module {upper} (a dynamic import of the app?)"


@pytest.mark.parametrize("path", sorted((LIBRARY / "plots").glob("*.py")), ids=rel)
def test_the_figure_layer_never_imports_an_analysis(path):
    names = imported(ast.parse(path.read_text(), filename=str(path)))
    into = [n for n in names if n == "workbench.analysis" or n.startswith("workbench.analysis.")]
    strings = [node.value for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("workbench.analysis")]
    assert not into and not strings, f"{rel(path)} reaches into workbench.analysis ({into + strings}); analyses import plots, not the reverse"


def test_the_checks_see_the_library():
    assert len(MODULES) > 40 and LIBRARY / "cli.py" in MODULES
