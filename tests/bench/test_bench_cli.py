"""`townhall bench` as subcommands: each with its own options and help, plain `bench` still the
debate bench, and the old mode flags still running the same call with a note on stderr.

Nothing here runs a benchmark: the calls in `townhall.bench.modes` are replaced by recorders.
"""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from townhall.bench import modes
from townhall.cli import app
from townhall.errors import TownhallError

ENV = {"COLUMNS": "200", "NO_COLOR": "1"}
SUBCOMMANDS = {
    "debate": ["--agents", "--turns", "--tokens", "--ways"],
    "memory": [],
    "regenerate": ["--agents", "--turns", "--tokens", "--at", "--edit-at"],
    "quality": ["--debates", "--turns", "--transcripts", "--baseline-s"],
    "generate": ["--parallel", "--conversations", "--turns", "--tokens"],
    "tui-latency": [],
}
EVERY_OWN_OPTION = {option for options in SUBCOMMANDS.values() for option in options}


class FakeLatency:
    def as_dict(self) -> dict[str, Any]:
        return {"median_ms": 1.0}

    def line(self) -> str:
        return "median 1.0 ms"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every mode call the command makes, by name, with its keyword arguments."""
    made: list[tuple[str, dict[str, Any]]] = []

    def recorder(name: str) -> Any:
        def call(config: Any, **kwargs: Any) -> Any:
            made.append((name, {"backend": config.backend, **kwargs}))
            return FakeLatency() if name == "tui_latency" else {"ran": name}

        return call

    for name in ("debate", "memory", "regenerate", "quality", "generate", "tui_latency"):
        monkeypatch.setattr(modes, name, recorder(name))
    return made


def bench(*args: str) -> Any:
    return CliRunner().invoke(app, ["bench", *args], env=ENV)


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_each_subcommand_has_its_own_help_and_options(name: str) -> None:
    result = bench(name, "--help")
    assert result.exit_code == 0, result.output
    assert "--model" in result.output and "--json" in result.output
    for option in SUBCOMMANDS[name]:
        assert option in result.output, f"bench {name} --help lacks {option}"
    for option in EVERY_OWN_OPTION - set(SUBCOMMANDS[name]):
        assert f"{option} " not in result.output, f"bench {name} --help shows {option}, another bench's"


def test_the_group_help_lists_the_subcommands_and_not_the_old_flags() -> None:
    result = bench("--help")
    assert result.exit_code == 0, result.output
    for name in SUBCOMMANDS:
        assert f" {name} " in result.output
    assert "--agents" in result.output  # plain `bench` is the debate bench, with its options
    for hidden in ("--quality ", "--parallel ", "--debates ", "--edit-at "):
        assert hidden not in result.output


@pytest.mark.parametrize(
    ("args", "name", "expected"),
    [
        ([], "debate", {"agents": 4, "turns": 48, "tokens": 40, "ways": "reprefill,save_state,townhall"}),
        (["--agents", "2", "--turns", "4"], "debate", {"agents": 2, "turns": 4}),
        (["debate", "--agents", "3"], "debate", {"agents": 3, "turns": 48}),
        (["memory"], "memory", {"agents": 4, "turns": 48, "tokens": 40}),
        (["regenerate", "--at", "2,6", "--edit-at", "2"], "regenerate", {"at": "2,6", "edit_at": 2, "turns": None}),
        (["quality", "--debates", "2", "--turns", "12"], "quality", {"debates": 2, "turns": 12}),
        (["generate", "--parallel", "1,8"], "generate", {"parallel": "1,8", "turns": 6, "tokens": 40}),
        (["tui-latency"], "tui_latency", {}),
    ],
)
def test_the_subcommands_run_their_mode_without_a_note(
    calls: list[tuple[str, dict[str, Any]]], args: list[str], name: str, expected: dict[str, Any]
) -> None:
    result = bench(*args, "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    [(called, kwargs)] = calls
    assert called == name and kwargs.items() >= expected.items()


@pytest.mark.parametrize(
    ("args", "name", "expected"),
    [
        (["--quality", "--debates", "2", "--turns", "12"], "quality", {"debates": 2, "turns": 12}),
        (["--quality"], "quality", {"debates": 6, "turns": 24, "transcripts": None}),
        (["--generate", "--parallel", "1,8", "--conversations", "9"], "generate",
         {"parallel": "1,8", "conversations": 9, "turns": 6}),
        (["--regenerate", "--at", "2,6", "--edit-at", "2", "--agents", "2"], "regenerate",
         {"at": "2,6", "edit_at": 2, "agents": 2, "turns": None}),
        (["--memory"], "memory", {"agents": 4, "turns": 48, "tokens": 40}),
        (["--tui-latency"], "tui_latency", {}),
    ],
)
def test_the_old_flags_run_the_same_mode_with_a_note(
    calls: list[tuple[str, dict[str, Any]]], args: list[str], name: str, expected: dict[str, Any]
) -> None:
    result = bench(*args, "--json")
    assert result.exit_code == 0, result.output
    [(called, kwargs)] = calls
    assert called == name and kwargs.items() >= expected.items()
    [note] = result.stderr.strip().splitlines()
    subcommand = name.replace("_", "-")
    assert f"--{subcommand}" in note and "deprecated" in note and f"townhall bench {subcommand}" in note


def test_a_server_still_runs_the_debate_whatever_mode_flag_followed(calls: list[tuple[str, dict[str, Any]]]) -> None:
    """The old order: --generate, --quality and --tui-latency first, then a server's debate, then the rest."""
    server = ("--backend", "openai", "--base-url", "http://127.0.0.1:1/v1")
    result = bench("--regenerate", "--at", "4,6", *server, "--json")
    assert result.exit_code == 0, result.output
    assert calls == [("debate", {"backend": "openai", "n_ctx_given": False, "agents": 4, "turns": 6, "tokens": 40,
                                 "ways": "reprefill,save_state,townhall", "progress": calls[0][1]["progress"]})]


def test_options_before_a_subcommand_are_refused_not_dropped(calls: list[tuple[str, dict[str, Any]]]) -> None:
    result = bench("--model", "other.gguf", "quality")
    assert isinstance(result.exception, TownhallError)
    assert "put its options after the subcommand" in str(result.exception)
    assert calls == []


def test_suites_of_the_in_process_engine_refuse_a_server() -> None:
    for name in ("memory", "regenerate"):
        result = bench(name, "--backend", "openai", "--base-url", "http://127.0.0.1:1/v1")
        assert isinstance(result.exception, TownhallError), result.output
        assert "--backend openai" in str(result.exception)
