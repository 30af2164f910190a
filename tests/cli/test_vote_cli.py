"""`townhall vote ID` and `townhall sessions show` with the outcome, on a real SQLite file;
the engine the factory builds is swapped for a scripted one whose probe leans per agent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from store_support import HOSTILE, record_debate
from townhall.cli import app
from townhall.debate.voting import room_calibrated
from townhall.engine.scripted import ScriptedEngine
from townhall.store import Store

runner = CliRunner()
LINES = [("Cy", "Welcome."), ("Ada", "Steel bridges last."), ("Bo", "Ferries are cheaper.")]


def lean(agent_id: str | None, prompt: str, choices: Sequence[str]) -> Sequence[float]:
    return [0.3, 0.1] if agent_id == "Ada" else [0.05, 0.25]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "vote.db"
    with Store.open(path) as store:
        asyncio.run(record_debate(store, "abc111", LINES))
    return path


def scripted(monkeypatch: pytest.MonkeyPatch, **extra: object) -> ScriptedEngine:
    engine = ScriptedEngine([f"it keeps the river open {HOSTILE}"], **extra)  # type: ignore[arg-type]
    monkeypatch.setattr("townhall.engine.factory.build_engine", lambda config: engine)
    return engine


def test_vote_records_the_outcome_and_sessions_show_prints_it(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = scripted(monkeypatch, probe_script=lean)
    result = runner.invoke(app, ["vote", "abc", "--db", str(db), "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    out = json.loads(result.output)
    assert (out["session"], out["result"], out["votes_for"], out["votes_against"]) == ("abc111", "tied", 1, 1)
    assert [v["agent"] for v in out["votes"]] == ["Ada", "Bo"]
    assert "Motion: Build a new bridge over the river" in out["minutes"]
    # Each participant's probe saw the whole stored debate.
    assert all("Bo: Ferries are cheaper." in prompt for _, prompt, _ in engine.probes)
    with Store.open(db) as store:
        outcome = store.outcome_of("abc111")
        turns = store.turns("abc111")
        stances = store.stances_of("abc111")
    assert outcome is not None and outcome.result == "tied" and outcome.minutes == out["minutes"]
    assert [(s.agent, s.turn_index) for s in stances] == [("Ada", 2), ("Bo", 2)]
    assert (turns[-1].index, turns[-1].speaker, turns[-1].content) == (
        3, "Cy", "The vote is tied, 1 to 1, so the motion does not carry.")

    text = runner.invoke(app, ["sessions", "show", "abc", "--db", str(db)]).output
    assert "Vote: the motion tied, 1 for and 1 against" in text
    # The readings as the probe gave them (0.75, 0.17), calibrated against the room.
    shown_p = room_calibrated({"Ada": 0.75, "Bo": 1 / 6})
    assert f"  Ada: for (P(for) {shown_p['Ada']:.2f})" in text and f"  Bo: against (P(for) {shown_p['Bo']:.2f})" in text
    assert "Minutes of the town hall meeting" in text and "<script>alert" in text and "\x1b" not in text
    shown = json.loads(runner.invoke(app, ["sessions", "show", "abc", "--db", str(db), "--json"]).output)
    assert shown["outcome"]["result"] == "tied" and len(shown["stances"]) == 2


def test_vote_without_a_probe_or_on_an_unknown_session_is_one_line(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripted(monkeypatch)
    result = runner.invoke(app, ["vote", "abc", "--db", str(db)])
    assert result.exit_code == 1 and "has no stance probe" in str(result.exception)
    missing = runner.invoke(app, ["vote", "zzz", "--db", str(db)])
    assert missing.exit_code == 1 and "no session with id 'zzz'" in str(missing.exception)
