"""Import hygiene of the TUI, checked in fresh interpreters (harlequin's sys.modules idea)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "module",
    [
        "townhall.tui.screens.new_townhall",
        "townhall.tui.screens.sessions",
        "townhall.tui.screens.error",
        "townhall.tui.screens.debate_screen",
        "townhall.tui.batcher",
        "townhall.tui.view_model",
    ],
)
def test_screens_do_not_import_the_app(module: str) -> None:
    loaded = modules_after(f"import {module}")
    assert module in loaded
    assert "townhall.tui.app" not in loaded


def test_no_production_module_loads_the_latency_bench() -> None:
    loaded = modules_after("import townhall.tui.app, townhall.cli.tui_cmds")
    assert "townhall.tui.app" in loaded
    assert "townhall.bench.tui_latency" not in loaded
