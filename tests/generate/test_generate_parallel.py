"""generate with N conversations in flight, on a scripted engine and a real SQLite store.

The scripted engine serves one request at a time (like the local engine's queue), so
conversations interleave turn by turn; the order things happen in is read from the
engine's own request log, never from a clock.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from conftest import wait_until
from townhall.engine.base import Generation
from townhall.engine.scripted import ScriptedEngine
from townhall.errors import ConfigError
from townhall.generate.chats import shape_for
from townhall.generate.config import GenerateConfig, conversation_seed
from townhall.generate.output import OutputFile, ledger_path
from test_generate_runner import WORDS, script, word_of
from townhall.generate.runner import Outcome, Reporter, Runner, Summary
from townhall.domain.personas import PersonaRegistry
from townhall.store import Store

def make_config(**changes) -> GenerateConfig:
    data = dict(
        name="t", motion='Explain "{word}".', participants=["Student", "Teacher"], turns=3, min_turns=2,
        words=WORDS, exclude=["relig", "kill"], seed=11, n_ctx=2048, assistant="Teacher",
    )
    data.update(changes)
    return GenerateConfig.model_validate(data)


class Recording(Reporter):
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.began_with: int | None = None

    def begin(self, *, total, skipped, topics, out, parallel=1) -> None:
        self.began_with = parallel

    def conversation(self, outcome: Outcome, summary: Summary) -> None:
        self.outcomes.append(outcome)


def make_runner(tmp_path: Path, engine, config: GenerateConfig, store: Store, *, out: str = "out.jsonl",
                per_speaker: bool = False, **kw) -> Runner:
    personas = PersonaRegistry.default().resolve(config.persona_names())
    shape = shape_for(config.format, per_speaker=per_speaker, assistant=config.assistant_name())
    output = OutputFile(tmp_path / out, config.format, config.fingerprint(), shape)
    return Runner(config, list(config.words), engine, store, personas, output, **kw)


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def ledger(out: Path) -> list[dict]:
    return [json.loads(line) for line in ledger_path(out).read_text(encoding="utf-8").splitlines()]


def topic_of_line(line: dict) -> str:
    return next(w for w in WORDS if f'"{w}"' in line["messages"][0]["content"])


class HeldEngine(ScriptedEngine):
    """Holds every request of one topic until released: its conversation is mid-turn while others finish."""

    def __init__(self, held: str, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.held = held
        self.release = asyncio.Event()

    async def _run(self, generation: Generation) -> None:
        if f'"{self.held}"' in generation.request.prompt:
            await self.release.wait()
        await super()._run(generation)


async def test_conversations_overlap_but_are_written_in_topic_order(tmp_path: Path) -> None:
    engine = HeldEngine("bridge", script())
    reporter = Recording()
    with Store.open(tmp_path / "th.db") as store:
        task = asyncio.ensure_future(make_runner(tmp_path, engine, make_config(), store, parallel=3,
                                                 reporter=reporter).run())
        await wait_until(lambda: sum(s.status == "finished" for s in store.list_sessions()) == 2)
        engine.release.set()
        summary = await asyncio.wait_for(task, 30)
    assert summary.written == 3 and reporter.began_with == 3
    topics = [word_of(r) for r in engine.requests]
    # all three were in flight at once: the other topics were asked for between bridge's first and last turn
    first, last = topics.index("bridge"), len(topics) - 1 - topics[::-1].index("bridge")
    assert {"leaf", "pocket"} <= set(topics[first:last])
    assert topics[-1] == "bridge"  # ... and bridge, held back, finished last
    # yet the output, the ledger and the report follow the topic list, as a one-at-a-time run does
    lines = json_lines(tmp_path / "out.jsonl")
    assert [topic_of_line(line) for line in lines] == WORDS
    assert [e["topic"] for e in ledger(tmp_path / "out.jsonl")] == WORDS
    assert [o.topic for o in reporter.outcomes] == WORDS
    ends = [e["end"] for e in ledger(tmp_path / "out.jsonl")]
    assert ends == sorted(ends) and ends[-1] == (tmp_path / "out.jsonl").stat().st_size


async def test_concurrent_conversations_never_share_an_agent_state(tmp_path: Path) -> None:
    engine = ScriptedEngine(script())
    with Store.open(tmp_path / "th.db") as store:
        await make_runner(tmp_path, engine, make_config(), store, parallel=2).run()
    by_agent: dict[str, set[str]] = {}
    for request in engine.requests:
        if request.agent_id is not None:
            by_agent.setdefault(request.agent_id, set()).add(word_of(request))
    assert set(by_agent) <= {"0/Student", "0/Teacher", "1/Student", "1/Teacher"}
    # slot 0 ran bridge, slot 1 leaf; pocket took whichever slot freed first, after its states were forgotten
    assert by_agent["0/Teacher"] & {"bridge"} and by_agent["1/Teacher"] & {"leaf"}
    assert engine._states == {}  # every slot's states forgotten at the end


async def test_one_line_per_conversation_with_the_named_assistant(tmp_path: Path) -> None:
    with Store.open(tmp_path / "th.db") as store:
        await make_runner(tmp_path, ScriptedEngine(script()), make_config(), store, parallel=2, count=2).run()
        lines = json_lines(tmp_path / "out.jsonl")
        assert len(lines) == 2
        for line in lines:
            messages = line["messages"]
            assert messages[0]["role"] == "system" and messages[0]["content"].startswith("You are Teacher")
            roles = [m["role"] for m in messages[1:]]
            assert roles[0] == "user" and roles[-1] == "assistant"
            assert all(a != b for a, b in zip(roles, roles[1:]))  # alternating
            # the student is the only other speaker: their words stand without a name tag
            assert all(not m["content"].startswith("Student:") for m in messages if m["role"] == "user")
        assert all(e["shape"] == "conversation:Teacher" for e in ledger(tmp_path / "out.jsonl"))
        # Its system message says what the conversation is (the config's motion), never a "town hall debate".
        for line in lines:
            system = line["messages"][0]["content"]
            assert "town hall" not in system.casefold() and f'Explain "{topic_of_line(line)}".' in system
        # --per-speaker: one line per participant, as the exports write them
        await make_runner(tmp_path, ScriptedEngine(script()), make_config(), store, out="per.jsonl",
                          per_speaker=True, parallel=2, count=2).run()
        per = json_lines(tmp_path / "per.jsonl")
        assert len(per) == 4 and {p["messages"][0]["content"].split(",")[0] for p in per} == {
            "You are Student", "You are Teacher"}
        # one file never mixes the two shapes
        with pytest.raises(ConfigError, match="one line per speaker .*one line per conversation"):
            OutputFile(tmp_path / "per.jsonl", "jsonl", make_config().fingerprint(), "conversation:Teacher")


async def test_the_configs_system_message_is_written_with_the_word_filled_in(tmp_path: Path) -> None:
    config = make_config(system='You teach the word "{word}" to a child.')
    with Store.open(tmp_path / "th.db") as store:
        await make_runner(tmp_path, ScriptedEngine(script()), config, store, count=2).run()
    lines = json_lines(tmp_path / "out.jsonl")
    assert [line["messages"][0] for line in lines] == [
        {"role": "system", "content": f'You teach the word "{topic_of_line(line)}" to a child.'} for line in lines]
    assert make_config().fingerprint() != config.fingerprint()  # another system message is another run


async def test_exclusion_and_count_with_n_in_flight_match_a_sequential_run(tmp_path: Path) -> None:
    words = ["bridge", "leaf", "pocket"]
    results = {}
    for parallel in (1, 3):
        engine = ScriptedEngine(script(excluded_word="leaf"))
        reporter = Recording()
        with Store.open(tmp_path / f"th{parallel}.db") as store:
            summary = await make_runner(tmp_path, engine, make_config(words=words), store, out=f"o{parallel}.jsonl",
                                        parallel=parallel, count=2, reporter=reporter).run()
            sessions = len(store.list_sessions())
        results[parallel] = (summary.written, dict(summary.dropped), sessions,
                             [(o.topic, o.written, o.reason) for o in reporter.outcomes],
                             [(e["topic"], e["outcome"], e["seed"]) for e in ledger(tmp_path / f"o{parallel}.jsonl")])
    # leaf mentions religion and is dropped; pocket takes its place; nothing is generated to be thrown away
    assert results[3] == results[1]
    assert results[3][:4] == (2, {"excluded": 1}, 3, [
        ("bridge", True, None), ("leaf", False, "excluded"), ("pocket", True, None)])


async def test_forever_with_more_slots_than_topics_numbers_attempts_like_a_sequential_run(tmp_path: Path) -> None:
    reporter = Recording()
    with Store.open(tmp_path / "th.db") as store:
        summary = await make_runner(tmp_path, ScriptedEngine(script()), make_config(words=["bridge", "leaf"]), store,
                                    forever=True, count=5, parallel=3, reporter=reporter).run()
    assert summary.written == 5
    assert [(o.topic, o.attempt) for o in reporter.outcomes] == [
        ("bridge", 0), ("leaf", 0), ("bridge", 1), ("leaf", 1), ("bridge", 2)]
    assert [o.seed for o in reporter.outcomes] == [conversation_seed(11, o.topic, o.attempt) for o in reporter.outcomes]
    assert len({o.seed for o in reporter.outcomes}) == 5


async def test_stop_with_n_in_flight_writes_every_finished_conversation_whole(tmp_path: Path) -> None:
    engine = HeldEngine("bridge", script())
    reporter = Recording()
    out = tmp_path / "out.jsonl"
    with Store.open(tmp_path / "th.db") as store:
        runner = make_runner(tmp_path, engine, make_config(), store, parallel=3, reporter=reporter)
        task = asyncio.ensure_future(runner.run())
        # leaf and pocket finish while bridge, the first topic, waits in its first turn
        await wait_until(lambda: sum(s.status == "finished" for s in store.list_sessions()) == 2)
        assert not out.exists() or out.read_bytes() == b""  # held back behind bridge, not yet written
        runner.stop()  # Ctrl+C
        engine.release.set()
        summary = await asyncio.wait_for(task, 30)
        assert summary.stopped and summary.written == 2 and not summary.dropped
        # the finished ones are written, in topic order, each whole; the interrupted one is not
        assert [topic_of_line(line) for line in json_lines(out)] == ["leaf", "pocket"]
        assert [(e["topic"], e["outcome"]) for e in ledger(out)] == [("leaf", "written"), ("pocket", "written")]
        assert ledger(out)[-1]["end"] == out.stat().st_size
        assert [o.topic for o in reporter.outcomes] == ["leaf", "pocket"]
        statuses = {s.motion: s.status for s in store.list_sessions()}
        assert statuses == {'Explain "bridge".': "stopped", 'Explain "leaf".': "finished",
                            'Explain "pocket".': "finished"}
        # bridge was never recorded as done: the next run writes it, and only it
        again = Recording()
        await make_runner(tmp_path, ScriptedEngine(script()), make_config(), store, parallel=3, reporter=again).run()
        assert [o.topic for o in again.outcomes] == ["bridge"]
        assert [topic_of_line(line) for line in json_lines(out)] == ["leaf", "pocket", "bridge"]


async def test_cancelling_the_run_settles_every_session(tmp_path: Path) -> None:
    engine = HeldEngine("bridge", script())
    with Store.open(tmp_path / "th.db") as store:
        runner = make_runner(tmp_path, engine, make_config(), store, parallel=3)
        task = asyncio.ensure_future(runner.run())
        await wait_until(lambda: sum(s.status == "finished" for s in store.list_sessions()) == 2)
        task.cancel()
        engine.release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert "running" not in {s.status for s in store.list_sessions()}


def test_default_parallel_rule_from_the_machine() -> None:
    from townhall.engine.model_file import GGUFHeader
    from townhall.generate.parallel import cap_to_work, kv_bytes_per_token, local_parallel

    gemma = GGUFHeader(3, 0, {"general.architecture": "gemma3", "gemma3.block_count": 18,
                              "gemma3.attention.head_count": 4, "gemma3.attention.head_count_kv": 1,
                              "gemma3.attention.key_length": 256, "gemma3.attention.value_length": 256})
    assert kv_bytes_per_token(gemma) == 18 * 1 * 512 * 2  # 18 KiB a token, f16 keys and values
    assert kv_bytes_per_token(GGUFHeader(3, 0, {})) is None
    gib = 2**30
    assert local_parallel(cores=2, gpu=False, header=gemma, agents=2, n_ctx=2048, memory=20 * gib) == 8
    assert local_parallel(cores=1, gpu=False, header=gemma, agents=2, n_ctx=2048, memory=20 * gib) == 4
    assert local_parallel(cores=2, gpu=True, header=gemma, agents=2, n_ctx=2048, memory=20 * gib) == 16
    # memory caps it: three 2048-token states of 36 MiB per conversation, in half of 300 MiB
    assert local_parallel(cores=2, gpu=False, header=gemma, agents=2, n_ctx=2048, memory=300 * 2**20) == 1
    assert local_parallel(cores=2, gpu=False, header=None, agents=2, n_ctx=2048, memory=None) == 8
    assert cap_to_work(8, topics=3, count=None, forever=False) == 3
    assert cap_to_work(8, topics=30, count=2, forever=False) == 2
    assert cap_to_work(8, topics=2, count=None, forever=True) == 8
