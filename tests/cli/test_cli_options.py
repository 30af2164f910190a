"""The engine flags are one group: every command that loads a model lists all eight and reads them the same."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from townhall.cli import app
from townhall.cli.options import EngineFlags, engine_options
from townhall.errors import ConfigError

FLAGS = ["--model", "--n-ctx", "--threads", "--gpu-layers", "--backend", "--base-url", "--api-model", "--api-key-env"]
COMMANDS = ["run", "tui", "resume", "bench", "doctor", "generate"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_every_engine_flag(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    missing = [flag for flag in FLAGS if flag not in result.output]
    assert not missing, f"{command} --help lacks {missing}"


@pytest.mark.parametrize(
    "args",
    [
        ["run"],
        ["tui"],
        ["bench"],
        ["doctor"],
        ["generate", "student_teacher"],
    ],
)
def test_every_command_reads_the_flags_the_same_way(args: list[str], tmp_path: Path) -> None:
    """A bad --backend is the same one-line error everywhere, before any model loads."""
    result = CliRunner().invoke(app, [*args, "--backend", "carrier-pigeon", "--db", str(tmp_path / "th.db")]
                                if args[0] in ("run", "tui", "generate") else [*args, "--backend", "carrier-pigeon"])
    assert isinstance(result.exception, ConfigError), result.output
    assert str(result.exception).startswith("--backend:")


def test_the_group_arrives_as_one_value() -> None:
    seen: list[EngineFlags] = []

    @engine_options
    def command(engine_flags: EngineFlags, name: str = "x") -> None:
        seen.append(engine_flags)

    command(name="y", threads=3, base_url="http://127.0.0.1:1/v1")
    assert seen == [EngineFlags(threads=3, base_url="http://127.0.0.1:1/v1")]
    config = seen[0].config(n_ctx=777)
    assert config.n_ctx == 777 and config.threads == 3
    assert EngineFlags(n_ctx=512).config(n_ctx=777).n_ctx == 512  # the flag wins over the town hall's


def test_a_command_without_the_parameter_is_refused() -> None:
    with pytest.raises(TypeError, match="engine_flags"):
        engine_options(lambda name="x": None)
