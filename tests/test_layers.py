"""The layers, checked from a fresh interpreter: importing a lower layer must not load an
upper one (engine <- scheduler <- store, TUI, CLI), whatever module is added later.

`lint-imports` (contracts in pyproject.toml) checks the same from the source; this test
also sees what really gets loaded, third-party packages included, and that every package
the code imports is declared in pyproject.toml.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def loaded_by(module: str) -> set[str]:
    """Every module in sys.modules after importing `module` in a new interpreter."""
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


def under(modules: set[str], *roots: str) -> set[str]:
    return {m for m in modules if any(m == r or m.startswith(r + ".") for r in roots)}


FRONT_ENDS = ("townhall.tui", "townhall.cli", "townhall.generate", "townhall.export", "townhall.debate.session",
              "textual", "typer")


@pytest.mark.parametrize(
    "module", ["townhall.engine.factory", "townhall.engine.local", "townhall.engine.openai", "townhall.engine.scripted"]
)
def test_the_engine_loads_nothing_of_townhall_but_itself_errors_and_paths(module: str) -> None:
    loaded = loaded_by(module)
    allowed = under(loaded, "townhall.engine", "townhall.errors", "townhall.paths") | {"townhall"}
    ours = under(loaded, "townhall") - allowed
    assert ours == set()
    assert under(loaded, *FRONT_ENDS, "sqlite3", "sqlite_utils") == set()
    assert under(loaded, "llama_cpp") == set()  # llama.cpp loads when a model does, not at import


@pytest.mark.parametrize("module", ["townhall.debate.scheduler", "townhall.domain.events", "townhall.domain.spec"])
def test_the_debate_layer_loads_no_storage_no_front_end_no_backend(module: str) -> None:
    loaded = loaded_by(module)
    assert under(loaded, *FRONT_ENDS, "townhall.store", "townhall.bench", "sqlite3", "sqlite_utils") == set()
    assert under(loaded, "llama_cpp", "httpx", "townhall.engine.local", "townhall.engine.openai") == set()


def test_the_store_loads_no_scheduler_and_no_front_end() -> None:
    loaded = loaded_by("townhall.store")
    assert under(loaded, *FRONT_ENDS, "townhall.debate.scheduler", "townhall.bench") == set()


def test_the_benchmark_script_loads_no_store_and_no_front_end() -> None:
    loaded = loaded_by("townhall.bench.script")
    assert under(loaded, *FRONT_ENDS, "townhall.store", "sqlite3", "llama_cpp", "httpx") == set()


def _imported_top_levels() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "townhall").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"townhall"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_normal(re.split(r"[\s<>=!~\[;]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}
    providers = packages_distributions()
    imported = _imported_top_levels()
    assert {"textual", "pydantic", "numpy", "jinja2", "markdown_it"} <= imported  # the scan sees real imports
    undeclared = {
        name: providers.get(name, ["?"]) for name in imported
        if not declared & {_normal(dist) for dist in providers.get(name, [name])}
    }
    assert undeclared == {}
