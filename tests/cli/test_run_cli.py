"""`townhall run` as a user runs it: a real process, the real embedded model, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from townhall.cli.debate_cmds import build_spec, cast_of
from townhall.errors import ConfigError

ARGS = ["--agents", "Walt,Priya", "--motion", "Ban leaf blowers.", "--n-ctx", "512", "--max-tokens", "16",
        "--threads", "2"]


def townhall(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "townhall", *args], capture_output=True, text=True, timeout=300, **kw)


def test_flags_override_the_file(tmp_path: Path) -> None:
    spec = build_spec(None, turns=3, seed=4, policy="mention", max_tokens=20)
    assert spec.moderator == "Margaret" and spec.max_turns == 3 and spec.policy == "mention"
    assert spec.sampling.max_tokens == 20 and spec.sampling.temperature == 0.7  # the file's value kept
    flags = build_spec(None, motion="M?", agents="Walt, pogi")
    assert flags.participants == ["Walt", "pogi"] and flags.moderator is None
    alone = build_spec(None, motion="Ban leaf blowers?")
    default = build_spec(None)
    assert alone.motion == "Ban leaf blowers?" and alone.participants == default.participants
    assert alone.moderator == default.moderator and alone.title is None  # the default's title named its motion
    assert build_spec(None, agents="Walt,Priya").motion == default.motion
    with pytest.raises(ConfigError, match="field 'policy'"):
        build_spec(None, policy="loudest")


def test_bad_input_is_one_line_before_any_model_loads() -> None:
    for args, needle in [
        (["run", "--agents", "Walt,Zed", "--motion", "x"], "no persona named 'Zed'"),
        (["run", "nope.toml"], "nope.toml: no such town-hall file"),
        (["run", "--context-strategy", "shrug"], "context_strategy"),
    ]:
        result = townhall(*args)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr


@pytest.mark.model
def test_json_lines_and_a_seeded_run_repeats(tmp_path: Path) -> None:
    first = townhall("run", *ARGS, "--turns", "3", "--seed", "21", "--json")
    assert first.returncode == 0, first.stderr
    events = [json.loads(line) for line in first.stdout.splitlines()]
    assert events[0]["type"] == "start" and events[-1] == {**events[-1], "type": "end", "reason": "max_turns"}
    session = events[0]["session"]
    turns = [e for e in events if e["type"] == "turn"]
    assert [t["index"] for t in turns] == [0, 1, 2] and [t["speaker"] for t in turns] == ["Walt", "Priya", "Walt"]
    for turn in turns:
        assert turn["session"] == session and turn["status"] in ("complete", "degenerate")
        assert turn["stats"]["generated_tokens"] > 0 and "prompt_tokens" in turn["stats"]
    assert any(e["type"] == "token" for e in events)
    second = townhall("run", *ARGS, "--turns", "3", "--seed", "21", "--json")
    again = [json.loads(line) for line in second.stdout.splitlines() if '"type": "turn"' in line]
    assert [t["content"] for t in again] == [t["content"] for t in turns]


@pytest.mark.model
def test_piped_output_is_plain_and_db_records_the_session(tmp_path: Path) -> None:
    db = tmp_path / "th.db"
    result = townhall("run", *ARGS, "--turns", "2", "--seed", "3", "--db", str(db))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("Walt: ") and lines[1].startswith("Priya: ") and "\x1b[" not in result.stdout
    assert lines[-1].startswith("-- session ") and lines[-1].endswith("ended: max_turns")
    from townhall.store import Store

    session_id = lines[-1].split()[2]
    with Store.open(db) as store:
        stored = store.turns(store.resolve_id(session_id))
    assert [t.speaker for t in stored] == ["Walt", "Priya"]
    assert lines[0] == f"Walt: {stored[0].content}" or stored[0].status != "complete"


@pytest.mark.model
def test_ctrl_c_stops_cleanly_and_keeps_finished_turns(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "townhall", "run", *ARGS[:-4], "--max-tokens", "200", "--threads", "2", "--turns", "40",
         "--json", "--n-ctx", "1024"],  # the minutes header and 200 tokens of reply need more than 512
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    seen: list[dict[str, object]] = []
    deadline = time.monotonic() + 240
    for line in proc.stdout:
        seen.append(json.loads(line))
        done = sum(e["type"] == "turn" for e in seen)
        if done >= 1 and seen[-1]["type"] == "turn_started":
            proc.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline
    rest, _ = proc.communicate(timeout=120)
    seen.extend(json.loads(line) for line in rest.splitlines())
    assert proc.returncode == 130
    assert seen[-1]["type"] == "end" and seen[-1]["reason"] == "stopped"
    turns = [e for e in seen if e["type"] == "turn"]
    assert len(turns) >= 2 and len(turns) < 40
    assert turns[0]["status"] in ("complete", "degenerate")
    assert turns[-1]["status"] in ("interrupted", "complete", "degenerate")


@pytest.mark.model
def test_a_motion_alone_is_debated_by_the_default_cast(tmp_path: Path) -> None:
    from townhall.domain.personas import PersonaRegistry

    motion = "The library should open on Sundays."
    result = townhall(
        "run", "--motion", motion, "--turns", "2", "--max-tokens", "12", "--n-ctx", "1024", "--threads", "2",
        "--seed", "8", "--json", "--db", str(tmp_path / "th.db"),
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    cast = [p.name for p in cast_of(build_spec(None), PersonaRegistry.default())]
    assert events[0]["type"] == "start" and events[0]["spec"]["motion"] == motion
    assert sorted(events[0]["participants"]) == sorted(cast)
    turns = [e for e in events if e["type"] == "turn"]
    assert len(turns) == 3 and all(t["speaker"] in cast for t in turns)
    # Then the closing ballot: a stance per participant, the moderator's announcement, the minutes.
    outcome = next(e for e in events if e["type"] == "outcome")
    assert turns[-1]["kind"] == "moderator" and turns[-1]["content"] == outcome["announcement"]
    assert outcome["votes_for"] + outcome["votes_against"] == len(cast) - 1 == len(outcome["votes"])
    stances = [e for e in events if e["type"] == "stance"]
    assert stances[0]["agent"] == turns[1]["speaker"] and stances[0]["turn_index"] == 1  # after its turn
    closing = stances[1:]
    assert sorted(s["agent"] for s in closing) == sorted(v["agent"] for v in outcome["votes"])
    assert all(0 < s["p_for"] < 1 and s["method"] == "logits" for s in closing)
    minutes = next(e for e in events if e["type"] == "minutes")["text"]
    assert f"Motion: {motion}" in minutes and outcome["announcement"] in minutes
    assert [e["type"] for e in events[-3:]] == ["outcome", "minutes", "end"]
    assert events[-1]["type"] == "end" and events[-1]["reason"] == "max_turns"


def test_a_motion_alone_runs_on_a_scripted_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same command in-process, with the engine the factory builds swapped for the scripted one."""
    from typer.testing import CliRunner

    from townhall.cli import app
    from townhall.engine.scripted import ScriptedEngine
    from townhall.domain.personas import PersonaRegistry
    from townhall.store import Store

    monkeypatch.setattr("townhall.engine.factory.build_engine", lambda config: ScriptedEngine())
    motion = "The library should open on Sundays."
    db = tmp_path / "th.db"
    result = CliRunner().invoke(app, ["run", "--motion", motion, "--turns", "3", "--json", "--db", str(db)])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines()]
    cast = [p.name for p in cast_of(build_spec(None), PersonaRegistry.default())]
    assert events[0]["spec"]["motion"] == motion and events[0]["spec"].get("title") is None
    assert sorted(events[0]["participants"]) == sorted(cast)
    assert events[-1]["reason"] == "max_turns"
    # A motion alone is debated with sides: balanced, shown at the start and recorded with the session.
    sides = sorted(s["side"] for s in events[0]["spec"]["stances"].values())
    assert sides in (["against", "for", "for", "undecided"], ["against", "against", "for", "for"])
    with Store.open(db) as store:
        stored = store.turns(events[0]["session"])
        recorded = store.load_for_resume(events[0]["session"])[0]
    assert len(stored) == 3 and all(t.speaker in cast for t in stored)
    assert {n: s.side for n, s in recorded.stances.items()} == {
        n: s["side"] for n, s in events[0]["spec"]["stances"].items()}


@pytest.mark.model
def test_a_question_saved_to_the_interject_file_is_answered_by_the_one_it_names(tmp_path: Path) -> None:
    """`townhall run --interject-file` on the default town hall: the file is rewritten by rename
    (an editor's atomic save) while the debate runs; Walt answers next and the agenda resumes."""
    from townhall.domain.turns import FILE, TurnKind
    from townhall.store import Store

    questions = tmp_path / "questions.txt"
    questions.write_text("", encoding="utf-8")
    db = tmp_path / "th.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "townhall", "run", "--turns", "10", "--threads", "2", "--n-ctx", "2048", "--json",
         "--db", str(db), "--interject-file", str(questions)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 600
    for line in proc.stdout:
        event = json.loads(line)
        if event["type"] == "turn" and event.get("index") == 2:
            swap = tmp_path / "questions.txt.swp"
            swap.write_text("Walt, what would the ramps cost per year?\n", encoding="utf-8")
            os.replace(swap, questions)
            break
        assert time.monotonic() < deadline
    proc.communicate(timeout=900)
    assert proc.returncode == 0
    with Store.open(db) as store:
        session = store.list_sessions()[0].id
        turns = store.turns(session)
    asked = next(i for i, t in enumerate(turns) if t.kind is TurnKind.AUDIENCE)
    question, answer = turns[asked], turns[asked + 1]
    assert (question.source, question.addressed) == (FILE, "Walt")
    assert (answer.speaker, answer.answers) == ("Walt", question.node)
    plan_turns = [t for t in turns if t.kind is not TurnKind.AUDIENCE and t.answers is None]
    assert turns[asked + 2].node == plan_turns[asked].node  # the agenda goes on where it was
