"""`--pace` on `run` and `tui`: flat out unless given, a pace in words per minute, bad values in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from townhall.cli import app
from townhall.debate.reading_pace import ReadingPace


def townhall(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "townhall", *args], capture_output=True, text=True, timeout=120)


def run_with(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ReadingPace | None]:
    """`townhall run` in-process on the scripted engine; returns the result and the pace it ran at."""
    from townhall.debate import session
    from townhall.engine.scripted import ScriptedEngine

    seen: dict[str, ReadingPace | None] = {}
    real = session.run_session

    async def spy(*a: Any, pace: ReadingPace | None = None, **kw: Any) -> Any:
        seen["pace"] = pace
        return await real(*a, pace=pace, **kw)

    monkeypatch.setattr("townhall.engine.factory.build_engine", lambda config: ScriptedEngine(["a b c"]))
    monkeypatch.setattr(session, "run_session", spy)
    result = CliRunner().invoke(app, ["run", "--turns", "2", "--json", "--db", str(tmp_path / "th.db"), *args])
    return result, seen.get("pace")


def test_run_is_flat_out_unless_given_a_pace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, pace = run_with([], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert pace is None


def test_run_pace_holds_each_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, pace = run_with(["--pace", "60000"], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert pace is not None and pace.wpm == 60_000
    # Every turn said is held (the agenda's chair lines too), each by its own words.
    assert len(pace.holds) >= 2 and all(h.wpm == 60_000 and h.words > 0 for h in pace.holds)


@pytest.mark.parametrize("value", ["max", "MAX", "0"])
def test_run_pace_max_is_flat_out(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, pace = run_with(["--pace", value], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert pace is not None and pace.flat_out and pace.holds == []


@pytest.mark.parametrize("command", ["run", "tui"])
def test_a_bad_pace_is_one_line(command: str) -> None:
    for value in ("fast", "-3", "2.5", "1000000"):
        result = townhall(command, "--pace", value)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].count("--pace") == 1 and "Traceback" not in result.stderr, lines


def test_help_says_how_to_go_flat_out() -> None:
    for command in ("run", "tui"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
        assert "--pace" in result.output and "flat out" in result.output
