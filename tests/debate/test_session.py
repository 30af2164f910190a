"""The one session runner (`townhall.debate.session`): the same resumed budget from every front end,
Ctrl+C, and the task API the TUI drives. Scripted engine, real SQLite files."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from store_support import personas, spec
from townhall.cli import app
from townhall.engine.base import EngineInfo
from townhall.engine.scripted import ScriptedEngine
from townhall.errors import ConfigError
from townhall.domain.events import (
    Event,
    EventBus,
    SessionEnded,
    SessionStarted,
    TokenStreamed,
    TurnFinished,
    TurnStarted,
)
from townhall.debate.session import NoTurnsLeft, Session, SessionPlan, plan_resume, run_session, turns_left
from townhall.store import Store
from townhall.domain.turns import Turn, TurnKind, TurnStatus

SESSION = "resume-me-0001"
# Stored: two spoken turns, one skipped, one audience line. With max_turns 5 the
# scheduler's rule leaves 3: skipped turns and audience lines use no budget.
HISTORY = [
    ("Ada", TurnKind.AGENT, TurnStatus.COMPLETE, "We need the bridge before winter."),
    ("Bo", TurnKind.AGENT, TurnStatus.SKIPPED, ""),
    ("Audience", TurnKind.AUDIENCE, TurnStatus.COMPLETE, "What about the ferry?"),
    ("Cy", TurnKind.MODERATOR, TurnStatus.COMPLETE, "Let us hear the cost first."),
]


async def _store_history(db: Path, max_turns: int = 5) -> None:
    """A stopped session as the recorder writes it, published through a real bus into a real file."""
    store = Store.open(db)
    bus = EventBus()
    detach = store.attach(bus)
    info = EngineInfo(backend="scripted", model_name="scripted", n_ctx=4096, device="CPU")
    at = 1_700_000_000.0
    await bus.apublish(SessionStarted(SESSION, spec(max_turns=max_turns).model_dump(), tuple(personas()), info, at))
    for index, (speaker, kind, status, text) in enumerate(HISTORY):
        await bus.apublish(TurnStarted(SESSION, index, speaker, kind, at + index))
        turn = Turn(index, speaker, kind, text, status, at + index, at + index + 0.5)
        await bus.apublish(TurnFinished(SESSION, turn))
    await bus.apublish(SessionEnded(SESSION, "stopped", at + 10, len(HISTORY)))
    detach()
    store.close()


def _engine() -> ScriptedEngine:
    counter = iter(range(1, 1000))
    # No echoes: the scheduler resamples those.
    def remark(request: object) -> str:
        n = next(counter)
        return f"Resumed remark {n} about item{n} and item{n + 1}."

    return ScriptedEngine(remark)


def _new_turns(db: Path) -> list[Turn]:
    with Store.open(db) as store:
        return store.turns(SESSION)[len(HISTORY):]


def _resume_from_cli(db: Path, monkeypatch: pytest.MonkeyPatch, more: int | None) -> None:
    """`townhall resume` as typed, with the engine the factory builds swapped for the scripted one."""
    monkeypatch.setattr("townhall.engine.factory.build_engine", lambda config: _engine())
    args = ["resume", SESSION[:9], "--db", str(db)] + (["--turns", str(more)] if more else [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ended: max_turns" in result.output


async def _resume_like_generate(db: Path, more: int | None) -> None:
    """What generate's Runner does per conversation: `Session(...).run()` with the store handed in."""
    with Store.open(db) as store:
        finished: list[Turn] = []
        watch = lambda e: finished.append(e.turn) if isinstance(e, TurnFinished) else None  # noqa: E731
        session = Session(_engine(), plan_resume(store, SESSION, more_turns=more), store=store, views=[watch])
        result = await session.run()
    assert result.reason == "max_turns" and result.session_id == SESSION
    assert [t.index for t in finished] == [t.index for t in result.turns[len(HISTORY):]]


async def _resume_like_the_tui(db: Path, more: int | None) -> None:
    """The TUI's way: the session as a task on the app's own loop, its views subscribed, then awaited."""
    with Store.open(db) as store:
        seen: list[Event] = []
        session = Session(_engine(), plan_resume(store, SESSION, more_turns=more), store=store, views=[seen.append])
        task = session.start()
        assert session.scheduler.session_id == SESSION  # the app reads the scheduler before it runs
        result = await asyncio.shield(task)
    assert result.reason == "max_turns" and isinstance(seen[-1], SessionEnded)
    assert result is session.result


@pytest.mark.parametrize("more", [None, 2])
def test_a_resumed_session_gets_the_same_budget_from_every_front_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, more: int | None
) -> None:
    original = tmp_path / "original.db"
    asyncio.run(_store_history(original))
    paths = {name: tmp_path / f"{name}.db" for name in ("cli", "generate", "tui")}
    for path in paths.values():
        shutil.copy(original, path)

    _resume_from_cli(paths["cli"], monkeypatch, more)
    asyncio.run(_resume_like_generate(paths["generate"], more))
    asyncio.run(_resume_like_the_tui(paths["tui"], more))

    expected = more if more is not None else 3  # max_turns 5, two turns used (skip and audience are free)
    added = {name: _new_turns(path) for name, path in paths.items()}
    for name, turns in added.items():
        assert [t.index for t in turns] == list(range(len(HISTORY), len(HISTORY) + expected)), name
        assert all(t.status == TurnStatus.COMPLETE for t in turns), name
    speakers = {name: [t.speaker for t in turns] for name, turns in added.items()}
    assert speakers["cli"] == speakers["generate"] == speakers["tui"]
    for path in paths.values():
        with Store.open(path) as store:
            summary = store.get_session(SESSION).summary
        assert summary.status == "finished" and summary.end_reason == "max_turns"


async def test_resuming_again_counts_against_the_original_max_turns(tmp_path: Path) -> None:
    db = tmp_path / "th.db"
    await _store_history(db)
    with Store.open(db) as store:
        result = await run_session(_engine(), plan_resume(store, SESSION, more_turns=1), store=store)
        assert result.reason == "max_turns"
        plan = plan_resume(store, SESSION)
        assert plan.spec.max_turns == 2 and plan.session_id == SESSION and len(plan.history) == len(HISTORY) + 1
        await run_session(_engine(), plan, store=store)
        with pytest.raises(NoTurnsLeft, match="already had its 5 turns; pass --turns N") as refused:
            plan_resume(store, SESSION)
        assert isinstance(refused.value, ConfigError) and refused.value.max_turns == 5
        assert store.get_session(SESSION).spec["max_turns"] == 5  # the record keeps the original


def test_turns_left_is_the_schedulers_rule() -> None:
    history = [Turn(i, s, k, text, st) for i, (s, k, st, text) in enumerate(HISTORY)]
    assert turns_left(5, history) == 3
    assert turns_left(5, history, more_turns=7) == 7
    assert turns_left(None, history) is None


async def test_first_ctrl_c_cuts_the_turn_and_stops_then_the_handler_is_gone(tmp_path: Path) -> None:
    engine = ScriptedEngine(lambda r: " ".join(f"w{i}" for i in range(40)), delay=0.005)
    plan = SessionPlan(spec(max_turns=10, sampling={"max_tokens": 300}), personas())

    def press_ctrl_c(event: Event) -> None:
        if isinstance(event, TokenStreamed) and event.index == 1 and event.text.strip() == "w3":
            os.kill(os.getpid(), signal.SIGINT)

    with Store.open(tmp_path / "th.db") as store:
        result = await run_session(engine, plan, store=store, views=[press_ctrl_c], ctrl_c=True)
        stored = store.turns(result.session_id)
        summary = store.get_session(result.session_id).summary
    assert result.reason == "stopped" and result.stopped_by_user
    assert [t.status for t in stored] == [TurnStatus.COMPLETE, TurnStatus.INTERRUPTED]
    assert "w0 w1 w2" in stored[1].content  # after the opening the scheduler wrote in Ada's side
    assert summary.status == "stopped"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


async def test_the_tui_api_steers_the_scheduler_and_end_settles_the_record(tmp_path: Path) -> None:
    engine = ScriptedEngine(lambda r: " ".join(f"w{i}" for i in range(200)), delay=0.01)
    plan = SessionPlan(spec(max_turns=None, sampling={"max_tokens": 300}), personas())
    with Store.open(tmp_path / "th.db") as store:
        events: list[Event] = []
        session = Session(engine, plan, store=store, views=[events.append])
        session.scheduler.pause()
        session.start()
        await _until(lambda: session.scheduler.status == "paused")
        session.scheduler.interject("Louder please.")
        session.scheduler.step()
        await _until(lambda: any(isinstance(e, TokenStreamed) for e in events))
        result = await session.end(timeout_s=10)
        assert result is not None and result.reason == "stopped" and not result.stopped_by_user
        stored = store.turns(session.session_id)
        assert stored[0].kind == TurnKind.AUDIENCE and stored[0].content == "Louder please."
        assert stored[-1].status == TurnStatus.INTERRUPTED
        assert store.get_session(session.session_id).summary.status == "stopped"
        count = len(events)
        await session.scheduler.bus.apublish(SessionEnded(session.session_id, "late", 0.0, 0))
        assert len(events) == count, "the views are detached when the session ends"


async def test_a_cancelled_caller_cancels_the_run_and_the_record_is_settled(tmp_path: Path) -> None:
    engine = ScriptedEngine(lambda r: " ".join(f"w{i}" for i in range(500)), delay=0.01)
    plan = SessionPlan(spec(max_turns=3, sampling={"max_tokens": 600}), personas())
    with Store.open(tmp_path / "th.db") as store:
        session = Session(engine, plan, store=store)
        caller = asyncio.ensure_future(session.run())
        await _until(lambda: session.scheduler.current_speaker is not None and len(engine.requests) == 1)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert session.result is not None and session.result.reason == "stopped"
        assert store.get_session(session.session_id).summary.status == "stopped"


async def test_a_shielded_run_outlives_its_cancelled_caller_until_end(tmp_path: Path) -> None:
    """The TUI's worker is cancelled when its screen goes; the run goes on until `end()` settles it."""
    engine = ScriptedEngine(lambda r: " ".join(f"w{i}" for i in range(500)), delay=0.01)
    plan = SessionPlan(spec(max_turns=3, sampling={"max_tokens": 600}), personas())
    with Store.open(tmp_path / "th.db") as store:
        session = Session(engine, plan, store=store)
        caller = asyncio.ensure_future(session.run_shielded())
        await _until(lambda: session.scheduler.current_speaker is not None and len(engine.requests) == 1)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert session.running
        result = await session.end(timeout_s=10)
        assert result is not None and result.reason == "stopped" and result.published_end
        assert result.unpublished_error is None
        assert store.get_session(session.session_id).summary.status == "stopped"


async def test_an_error_before_session_ended_is_the_one_no_view_saw() -> None:
    class Broken:
        session_id, turns = "broken", []

        def subscribe(self, view: object) -> Callable[[], None]:
            return lambda: None

        async def run(self) -> str:
            raise RuntimeError("no scheduler today")

    session = Session(ScriptedEngine(), SessionPlan(spec(), personas()), scheduler_factory=lambda *a, **k: Broken())
    result = await session.run_shielded()
    assert (result.reason, result.published_end) == ("error", False)
    assert result.unpublished_error == "RuntimeError: no scheduler today"


def test_a_bad_plan_fails_before_anything_runs(tmp_path: Path) -> None:
    plan = SessionPlan(spec(), [p for p in personas() if p.name != "Bo"])
    with Store.open(tmp_path / "th.db") as store:
        with pytest.raises(ConfigError, match="no such persona"):
            Session(ScriptedEngine(), plan, store=store)
        assert store.list_sessions() == []


@pytest.mark.model
async def test_the_runner_on_the_real_model(tmp_path: Path, model_path: Path) -> None:
    from townhall.engine.local import LocalEngine

    engine = LocalEngine(model_path, n_ctx=512, threads=2)
    plan = SessionPlan(spec(max_turns=2, sampling={"max_tokens": 12}), personas())
    with Store.open(tmp_path / "th.db") as store:
        result = await run_session(engine, plan, store=store, close_engine=True)
        stored = store.turns(result.session_id)
        outcome = store.outcome_of(result.session_id)
    assert result.reason == "max_turns" and result.error is None
    debate, announced = stored[:2], stored[2:]
    assert all(t.stats is not None and t.stats.generated_tokens > 0 for t in debate)
    assert [t.content for t in stored] == [t.content for t in result.turns]
    # The closing ballot: the chair (Cy) announces the recorded result in one scripted turn.
    assert outcome is not None and outcome.minutes
    assert [(t.speaker, t.kind, t.content) for t in announced] == [("Cy", TurnKind.MODERATOR, outcome.announcement)]
    assert result.turns[2].phase == "vote"


async def _until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    from conftest import wait_until

    await wait_until(predicate, timeout)
