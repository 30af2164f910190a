"""The generate loop on a scripted engine (deterministic order) with a real SQLite store and real files."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import pytest

from townhall.engine.base import GenerationRequest
from townhall.engine.scripted import ScriptedEngine
from townhall.errors import ConfigError
from townhall.generate.config import GenerateConfig, conversation_seed
from townhall.generate.output import OutputFile, ledger_path
from townhall.generate.progress import PlainReporter, make_reporter
from townhall.generate.runner import Outcome, Reporter, Runner, Summary
from townhall.domain.personas import PersonaRegistry
from townhall.store import Store

WORDS = ["bridge", "leaf", "pocket"]


def word_of(request: GenerationRequest) -> str:
    return next(w for w in WORDS if f'"{w}"' in request.prompt)


def script(excluded_word: str | None = None):
    """Unique sentences per turn; the excluded word's conversation mentions religion."""
    counter = itertools.count(1)

    def reply(request: GenerationRequest) -> str:
        n = next(counter)
        word = word_of(request)
        if word == excluded_word and n % 2 == 0:
            return f"Some say the {word} is Religious, remark {n}."
        return f"Remark {n} on the {word}: {n} reasons."  # shares under half its 3-grams: no echo

    return reply


def make_config(**changes) -> GenerateConfig:
    data = dict(
        name="t", motion='Explain "{word}".', participants=["Student", "Teacher"], turns=3, min_turns=2,
        words=WORDS, exclude=["relig", "kill"], seed=11, n_ctx=2048,
    )
    data.update(changes)
    return GenerateConfig.model_validate(data)


class Recording(Reporter):
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.turn_tokens = 0
        self.ended: Summary | None = None

    def turn(self, tokens: int) -> None:
        self.turn_tokens += tokens

    def conversation(self, outcome: Outcome, summary: Summary) -> None:
        self.outcomes.append(outcome)

    def end(self, summary: Summary) -> None:
        self.ended = summary


def make_runner(tmp_path: Path, engine: ScriptedEngine, config: GenerateConfig, store: Store, *,
                out: str = "out.jsonl", reporter: Reporter | None = None, **kw) -> Runner:
    personas = PersonaRegistry.default().resolve(config.persona_names())
    output = OutputFile(tmp_path / out, config.format, config.fingerprint())
    return Runner(config, list(config.words), engine, store, personas, output, reporter=reporter, **kw)


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_every_topic_once_excluded_one_counted_not_written(tmp_path: Path) -> None:
    engine = ScriptedEngine(script(excluded_word="leaf"))
    with Store.open(tmp_path / "th.db") as store:
        reporter = Recording()
        runner = make_runner(tmp_path, engine, make_config(), store, reporter=reporter)
        summary = await runner.run()
        assert (summary.written, dict(summary.dropped), summary.stopped) == (2, {"excluded": 1}, False)
        assert [(o.topic, o.written, o.reason) for o in reporter.outcomes] == [
            ("bridge", True, None), ("leaf", False, "excluded"), ("pocket", True, None)]
        assert reporter.outcomes[1].detail == "contains 'relig'"
        lines = json_lines(tmp_path / "out.jsonl")
        assert len(lines) == 4  # one chat per participant per written conversation
        text = json.dumps(lines).casefold()
        assert "religious" not in text and "leaf" not in text
        assert '\\"bridge\\"' in json.dumps(lines) and '\\"pocket\\"' in json.dumps(lines)
        assert all(m["role"] in ("system", "user", "assistant") for line in lines for m in line["messages"])
        # every conversation, kept or dropped, is a session in the store; the dropped one says why
        sessions = store.list_sessions()
        assert len(sessions) == 3 and all(s.status == "finished" for s in sessions)
        assert [s.title for s in sessions if "leaf" in s.motion] == ["leaf [dropped: excluded]"]
        assert summary.tokens == reporter.turn_tokens > 0


async def test_agent_states_are_forgotten_between_topics(tmp_path: Path) -> None:
    engine = ScriptedEngine(script())
    forgotten: list[str] = []
    original = engine.forget
    engine.forget = lambda agent_id: (forgotten.append(agent_id), original(agent_id))  # type: ignore[method-assign]
    starts: list[int] = []

    class Watch(Recording):
        def conversation(self, outcome: Outcome, summary: Summary) -> None:
            starts.append(len(engine.requests))

    with Store.open(tmp_path / "th.db") as store:
        await make_runner(tmp_path, engine, make_config(words=["bridge", "leaf"]), store, reporter=Watch()).run()
    assert forgotten.count("Student") >= 3 and forgotten.count("Teacher") >= 3
    first_of_second = engine.requests[starts[0]]
    assert '"leaf"' in first_of_second.prompt and '"bridge"' not in first_of_second.prompt


async def test_rerun_with_same_config_and_output_skips_finished_topics(tmp_path: Path) -> None:
    with Store.open(tmp_path / "th.db") as store:
        first = await make_runner(tmp_path, ScriptedEngine(script()), make_config(), store, count=2).run()
        assert first.written == 2
        before = (tmp_path / "out.jsonl").read_bytes()
        engine = ScriptedEngine(script())
        reporter = Recording()
        second = await make_runner(tmp_path, engine, make_config(), store, reporter=reporter).run()
        assert (second.skipped, second.written) == (2, 1)
        assert [o.topic for o in reporter.outcomes] == ["pocket"]
        after = (tmp_path / "out.jsonl").read_bytes()
        assert after.startswith(before) and len(json_lines(tmp_path / "out.jsonl")) == 6
        third_engine = ScriptedEngine(script())
        third = await make_runner(tmp_path, third_engine, make_config(), store).run()
        assert (third.skipped, third.written, third_engine.requests) == (3, 0, [])
        assert (tmp_path / "out.jsonl").read_bytes() == after
        # another output, or another motion, is not "the same run": it starts over
        runner = make_runner(tmp_path, ScriptedEngine(script()), make_config(), store, out="o2.jsonl", count=1)
        other = await runner.run()
        changed = make_config(motion='Define "{word}".')
        moved = await make_runner(tmp_path, ScriptedEngine(script()), changed, store, count=1).run()
        assert (other.skipped, other.written, moved.skipped, moved.written) == (0, 1, 0, 1)


async def test_dropped_topic_is_retried_with_a_fresh_seed(tmp_path: Path) -> None:
    with Store.open(tmp_path / "th.db") as store:
        await make_runner(tmp_path, ScriptedEngine(script(excluded_word="leaf")), make_config(), store).run()
        reporter = Recording()
        summary = await make_runner(tmp_path, ScriptedEngine(script()), make_config(), store, reporter=reporter).run()
    assert [(o.topic, o.attempt, o.written) for o in reporter.outcomes] == [("leaf", 1, True)]
    assert reporter.outcomes[0].seed == conversation_seed(11, "leaf", 1) != conversation_seed(11, "leaf", 0)
    assert summary.written == 1


async def test_stop_hook_keeps_finished_conversations_and_never_half_writes(tmp_path: Path) -> None:
    engine = ScriptedEngine(script(), delay=0.001)
    holder: dict[str, Runner] = {}

    class StopInSecond(Recording):
        def turn(self, tokens: int) -> None:
            super().turn(tokens)
            if len(self.outcomes) == 1:  # first turn of the second conversation
                holder["runner"].stop()

    with Store.open(tmp_path / "th.db") as store:
        reporter = StopInSecond()
        runner = make_runner(tmp_path, engine, make_config(), store, reporter=reporter, forever=True)
        holder["runner"] = runner
        summary = await runner.run()
        assert summary.stopped and summary.written == 1 and not summary.dropped
        lines = json_lines(tmp_path / "out.jsonl")
        assert len(lines) == 2 and all('"bridge"' in line["messages"][0]["content"] for line in lines)
        stopped = [s for s in store.list_sessions() if s.status == "stopped"]
        assert len(stopped) == 1 and "leaf" in stopped[0].motion and stopped[0].turns >= 1
        ledger = [json.loads(l) for l in ledger_path(tmp_path / "out.jsonl").read_text().splitlines()]
        assert [(e["topic"], e["outcome"]) for e in ledger] == [("bridge", "written")]
        # the stopped topic was never recorded as done: the next run writes it
        again = await make_runner(tmp_path, ScriptedEngine(script()), make_config(), store, count=1).run()
        assert again.written == 1 and '"leaf"' in json_lines(tmp_path / "out.jsonl")[2]["messages"][0]["content"]


async def test_forever_cycles_topics_with_fresh_seeds_until_count(tmp_path: Path) -> None:
    reporter = Recording()
    with Store.open(tmp_path / "th.db") as store:
        config = make_config(words=["bridge", "leaf"])
        summary = await make_runner(tmp_path, ScriptedEngine(script()), config, store, reporter=reporter,
                                    forever=True, count=5).run()
    assert summary.written == 5
    assert [(o.topic, o.attempt) for o in reporter.outcomes] == [
        ("bridge", 0), ("leaf", 0), ("bridge", 1), ("leaf", 1), ("bridge", 2)]
    assert len({o.seed for o in reporter.outcomes}) == 5


async def test_too_short_conversations_are_dropped(tmp_path: Path) -> None:
    engine = ScriptedEngine(["Same words every time."])  # every later turn is a verbatim repeat
    with Store.open(tmp_path / "th.db") as store:
        summary = await make_runner(tmp_path, engine, make_config(words=["bridge"]), store).run()
    assert (summary.written, dict(summary.dropped)) == (0, {"too_short": 1})
    assert not (tmp_path / "out.jsonl").exists() or (tmp_path / "out.jsonl").read_text() == ""


async def test_repeated_engine_failures_abort_with_the_reason(tmp_path: Path) -> None:
    def broken(request: GenerationRequest) -> str:
        raise RuntimeError("the model fell over")

    with Store.open(tmp_path / "th.db") as store:
        summary = await make_runner(tmp_path, ScriptedEngine(broken), make_config(words=WORDS + ["room"]),
                                    store, max_failures=3).run()
    assert summary.dropped == {"error": 3} and summary.written == 0
    assert summary.aborted is not None and "the model fell over" in summary.aborted


async def test_sharegpt_and_txt_use_the_exports(tmp_path: Path) -> None:
    with Store.open(tmp_path / "th.db") as store:
        await make_runner(tmp_path, ScriptedEngine(script()), make_config(format="sharegpt"), store,
                          out="s.jsonl", count=2).run()
        rows = json_lines(tmp_path / "s.jsonl")
        assert len(rows) == 4 and {m["from"] for r in rows for m in r["conversations"]} == {"system", "human", "gpt"}
        await make_runner(tmp_path, ScriptedEngine(script()), make_config(format="txt"), store,
                          out="t.txt", count=2).run()
        text = (tmp_path / "t.txt").read_text()
        conversations = text.strip().split("\n\n\n")
        assert len(conversations) == 2 and conversations[0].startswith("Student: Remark 1 on the bridge")
        with pytest.raises(ConfigError, match="already holds sharegpt conversations; write txt to another file"):
            OutputFile(tmp_path / "s.jsonl", "txt", make_config().fingerprint())


async def test_a_truncated_output_is_not_trusted_as_done(tmp_path: Path) -> None:
    with Store.open(tmp_path / "th.db") as store:
        await make_runner(tmp_path, ScriptedEngine(script()), make_config(), store, count=2).run()
        (tmp_path / "out.jsonl").write_text("")  # the user emptied the file
        summary = await make_runner(tmp_path, ScriptedEngine(script()), make_config(), store).run()
    assert (summary.skipped, summary.written) == (0, 3)
    assert len(json_lines(tmp_path / "out.jsonl")) == 6


def test_plain_progress_lines_and_summary(tmp_path: Path) -> None:
    stream = io.StringIO()
    reporter = make_reporter(stream, tty=False)
    assert isinstance(reporter, PlainReporter)
    summary = Summary(out=tmp_path / "o.jsonl", format="jsonl")
    reporter.begin(total=2, skipped=1, topics=3, out=summary.out)
    summary.written = 1
    summary.tokens, summary.generation_s, summary.elapsed_s = 120, 4.0, 5.0
    reporter.conversation(Outcome("bridge\x1b[31m", 0, "abc", 1, True, None, "", 2, 3, 120, 4.0), summary)
    summary.dropped["excluded"] += 1
    reporter.conversation(Outcome("leaf", 0, "abd", 2, False, "excluded", "contains 'kill'", 0, 3, 0, 1.0), summary)
    reporter.end(summary)
    lines = stream.getvalue().splitlines()
    assert lines[0] == f"generate: 3 topics, 1 already done; 2 to go; writing to {summary.out}"
    assert lines[1] == "[1/2] bridge\ufffd[31m: written (2 lines, 3 turns, 120 tokens, 30.0 tok/s)"
    assert lines[2] == "[2/2] leaf: dropped, excluded (contains 'kill')"
    assert "dropped: 1 (excluded 1)" in lines and "tokens: 120 at 30.0 tok/s; elapsed 5s" in lines
