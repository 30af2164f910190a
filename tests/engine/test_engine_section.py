"""The `[engine]` table of a town-hall file, and flags winning over it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from townhall.cli.options import engine_config
from townhall.engine.factory import EngineSection
from townhall.errors import ConfigError
from townhall.domain.spec import load_spec


def write_townhall(path: Path, engine_table: str) -> Path:
    path.write_text(
        'motion = "Should the library open on Sundays?"\n'
        'participants = ["Walt", "Priya"]\nmax_turns = 1\n\n[sampling]\nmax_tokens = 8\n\n' + engine_table,
        encoding="utf-8",
    )
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_engine_table_is_read_from_the_file(tmp_path: Path) -> None:
    spec = load_spec(write_townhall(tmp_path / "t.toml", '[engine]\nbackend = "openai"\nbase_url = "http://x/v1"\n'))
    assert spec.engine == EngineSection(backend="openai", base_url="http://x/v1")


def test_unknown_engine_field_names_file_and_field(tmp_path: Path) -> None:
    path = write_townhall(tmp_path / "t.toml", '[engine]\nbakend = "openai"\n')
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert str(path) in str(info.value) and "bakend" in str(info.value)


def test_flags_win_over_the_file_and_the_file_over_defaults() -> None:
    section = EngineSection(backend="openai", base_url="http://file/v1", api_model="from-file", threads=3)
    config = engine_config(section=section, api_model="from-flag")
    assert (config.backend, config.base_url, config.api_model, config.threads) == (
        "openai", "http://file/v1", "from-flag", 3)
    assert engine_config(section=section, backend="local").backend == "local"
    assert engine_config().backend == "local" and engine_config().gpu_layers == -1


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOWNHALL_DB": str(tmp_path / "t.db")}
    return subprocess.run([sys.executable, "-m", "townhall", "run", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_run_uses_the_server_named_in_the_file(tmp_path: Path) -> None:
    port = closed_port()
    path = write_townhall(tmp_path / "t.toml", f'[engine]\nbackend = "openai"\nbase_url = "http://127.0.0.1:{port}/v1"\n')
    result = run_cli(str(path), tmp_path=tmp_path)
    assert result.returncode == 1
    assert f"cannot reach the inference server at http://127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.model
def test_backend_flag_overrides_the_file(tmp_path: Path, model_path: Path) -> None:
    path = write_townhall(tmp_path / "t.toml", '[engine]\nbackend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n')
    result = run_cli(str(path), "--backend", "local", "--model", str(model_path), "--json", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"type": "end"' in result.stdout and '"type": "turn"' in result.stdout
