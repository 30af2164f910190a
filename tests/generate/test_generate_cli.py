"""`townhall generate` as a real child process: bad input ends in one line, never a traceback;
the real model writes JSONL / ShareGPT lines a JSON parser reads; resuming skips what is
done; SIGINT keeps every finished conversation and never half-writes the one in progress."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from townhall.generate.output import ledger_path
from townhall.store import Store

ASKER = 'name = "Asker"\ntitle = "a curious student"\nbio = "Asks what words mean."\nstyle = "Short questions."\n'
ANSWERER = (
    'name = "Answerer"\ntitle = "a patient teacher"\nbio = "Explains what words mean, simply."\n'
    'style = "One clear sentence with an example."\n'
)


def townhall(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "townhall", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


def tiny_config(tmp_path: Path, words: list[str], **extra: str) -> Path:
    """Two short turns per topic, a few tokens each: the real model, kept cheap on 2 shared cores."""
    agents = tmp_path / "agents"
    agents.mkdir(exist_ok=True)
    (agents / "asker.toml").write_text(ASKER, encoding="utf-8")
    (agents / "answerer.toml").write_text(ANSWERER, encoding="utf-8")
    lines = [
        'motion = "The teacher explains the meaning of the word \\"{word}\\"."',
        'participants = ["Asker", "Answerer"]',
        'agents_dir = "agents"',
        f"words = {json.dumps(words)}",
        "turns = 2", "min_turns = 1", "n_ctx = 512", "seed = 3",
        *(f"{k} = {v}" for k, v in extra.items()),
        "[sampling]", "max_tokens = 12", "temperature = 0.7",
    ]
    path = tmp_path / "gen.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ledger(out: Path) -> list[dict]:
    path = ledger_path(out)
    return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def test_bad_input_is_one_line_on_stderr(tmp_path: Path) -> None:
    missing = townhall("generate", "nope.toml", cwd=tmp_path, timeout=60)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == "townhall: error: nope.toml: no such generate config file (or shipped example)"
    config = tiny_config(tmp_path, ["bridge"])
    bad_format = townhall("generate", str(config), "--format", "csv", cwd=tmp_path, timeout=60)
    assert bad_format.returncode == 1
    assert bad_format.stderr.strip() == "townhall: error: --format 'csv': choose one of jsonl, sharegpt, txt"
    config.write_text(config.read_text().replace('"Answerer"]', '"Nobody"]'), encoding="utf-8")
    unknown = townhall("generate", str(config), cwd=tmp_path, timeout=60)
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1 and "no persona named 'Nobody'" in unknown.stderr


@pytest.mark.model
@pytest.mark.parametrize("fmt", ["jsonl", "sharegpt"])
def test_real_model_run_writes_parseable_lines_and_resumes(tmp_path: Path, model_path: Path, fmt: str) -> None:
    config = tiny_config(tmp_path, ["bridge", "leaf"])
    out, db = tmp_path / f"out.{fmt}.jsonl", tmp_path / "th.db"
    args = ("generate", str(config), "--out", str(out), "--format", fmt, "--db", str(db),
            "--model", str(model_path), "--threads", "2")
    first = townhall(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    entries = ledger(out)
    written = [e for e in entries if e["outcome"] == "written"]
    assert len(entries) == 2 and written, first.stdout
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == sum(e["lines"] for e in written)
    key, role, text, mine = ("messages", "role", "content", "assistant") if fmt == "jsonl" else (
        "conversations", "from", "value", "gpt")
    for row in rows:
        turns = row[key]
        assert turns[0][role] == "system" and turns[-1][role] == mine
        assert all(isinstance(t[text], str) and t[text].strip() for t in turns)
    topics = {e["topic"] for e in written}
    assert all(any(f'"{topic}"' in r[key][0][text] for r in rows) for topic in topics)
    assert f"written: {len(written)} conversation" in first.stdout and "tok/s" in first.stdout
    with Store.open(db) as store:
        sessions = store.list_sessions()
        assert len(sessions) == 2 and {s.status for s in sessions} == {"finished"}
        assert {s.model_name for s in sessions} != {None}
    # the same config and output again: finished topics are skipped, nothing is rewritten
    before = out.read_bytes()
    second = townhall(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert f"{len(written)} already done" in second.stdout
    assert out.read_bytes().startswith(before)
    again = [e["topic"] for e in ledger(out)[2:] if e["outcome"] == "written"]
    assert not set(again) & topics


@pytest.mark.model
@pytest.mark.parametrize("parallel", [1, 3])
def test_sigint_keeps_finished_conversations(tmp_path: Path, model_path: Path, parallel: int) -> None:
    config = tiny_config(tmp_path, ["bridge", "leaf", "pocket"])
    out, db = tmp_path / "out.jsonl", tmp_path / "th.db"
    child = subprocess.Popen(
        [sys.executable, "-m", "townhall", "generate", str(config), "--forever", "--out", str(out), "--db", str(db),
         "--model", str(model_path), "--threads", "2", "--parallel", str(parallel)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 240
        while not any(e["outcome"] == "written" for e in ledger(out)):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "no conversation finished in time"
            time.sleep(0.2)
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, stderr
    assert "Traceback" not in stderr and "stopped:" in stdout
    written = [e for e in ledger(out) if e["outcome"] == "written"]
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert written and len(rows) == sum(e["lines"] for e in written)
    assert out.stat().st_size == written[-1]["end"]  # nothing after the last finished conversation
    with Store.open(db) as store:
        statuses = [s.status for s in store.list_sessions()]
    assert "running" not in statuses and statuses.count("finished") >= len(written)


@pytest.mark.model
def test_real_model_parallel_run_writes_count_lines_one_per_conversation_and_resumes(
    tmp_path: Path, model_path: Path
) -> None:
    config = tiny_config(tmp_path, ["bridge", "leaf", "pocket", "bear"], assistant='"Answerer"')
    out, db = tmp_path / "out.jsonl", tmp_path / "th.db"
    args = ("generate", str(config), "--out", str(out), "--db", str(db), "--model", str(model_path),
            "--threads", "2", "--parallel", "2")
    first = townhall(*args, "--count", "2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "2 at a time" in first.stdout
    written = [e for e in ledger(out) if e["outcome"] == "written"]
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(written) == 2  # --count 2: two conversations, one line each
    for row, entry in zip(rows, written):  # in topic order, each its own topic's conversation
        messages = row["messages"]
        assert messages[0]["role"] == "system" and messages[0]["content"].startswith("You are Answerer")
        assert f'"{entry["topic"]}"' in messages[0]["content"] and messages[-1]["role"] == "assistant"
        assert all(m["content"].strip() for m in messages) and entry["lines"] == 1
    order = ["bridge", "leaf", "pocket", "bear"]
    assert [e["topic"] for e in ledger(out)] == order[: len(ledger(out))]
    # resumed: the other topics, nothing rewritten
    before = out.read_bytes()
    second = townhall(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert out.read_bytes().startswith(before)
    topics = [e["topic"] for e in ledger(out) if e["outcome"] == "written"]
    assert len(topics) == len(set(topics)) and len(out.read_text().splitlines()) == len(topics)
    assert set(topics) | {e["topic"] for e in ledger(out) if e["outcome"] == "dropped"} == set(order)
    with Store.open(db) as store:
        assert "running" not in {s.status for s in store.list_sessions()}
