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

from townhall.cli.debate_cmds import build_spec
from townhall.errors import ConfigError

ARGS = ["--agents", "Walt,Priya", "--motion", "Ban leaf blowers.", "--n-ctx", "512", "--max-tokens", "16", "--threads", "2"]


def townhall(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "townhall", *args], capture_output=True, text=True, timeout=300, **kw)


def test_flags_override_the_file(tmp_path: Path) -> None:
    spec = build_spec(None, turns=3, seed=4, policy="mention", max_tokens=20)
    assert spec.moderator == "Margaret" and spec.max_turns == 3 and spec.policy == "mention"
    assert spec.sampling.max_tokens == 20 and spec.sampling.temperature == 0.7  # the file's value kept
    flags = build_spec(None, motion="M?", agents="Walt, pogi")
    assert flags.participants == ["Walt", "pogi"] and flags.moderator is None
    with pytest.raises(ConfigError, match="both --motion and --agents"):
        build_spec(None, motion="M?")
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
        [sys.executable, "-m", "townhall", "run", *ARGS[:-4], "--max-tokens", "200", "--threads", "2", "--turns", "40", "--json"],
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
