"""The TUI on the real embedded model: streaming, the truthful header, the record, and latency."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import wait_until
from test_tui_support import SIZE, counter_clock, personas, screen_text, spec

from townhall.engine.base import SamplingOverrides
from townhall.domain.personas import PersonaRegistry
from townhall.store import Store
from townhall.tui.app import TownhallApp
from townhall.debate.session import SessionPlan
from townhall.bench.tui_latency import measure_key_latency
from townhall.tui.messages import TokensArrived
from townhall.domain.turns import TurnStatus

pytestmark = pytest.mark.model


def local_engine(model_path: Path):
    from townhall.engine.local import LocalEngine

    return LocalEngine(model_path, n_ctx=1024, threads=2)


async def test_real_model_streams_into_the_transcript_and_the_record(model_path: Path, tmp_path: Path) -> None:
    import llama_cpp

    engine = local_engine(model_path)
    store = Store.open(tmp_path / "th.db")
    # No ballot here: this test is about streaming and the record (the stance test below holds one).
    debate = SessionPlan(spec(turns=2, sampling=SamplingOverrides(max_tokens=16, seed=7), ballot=False), personas(),
                         session_id="real")
    app = TownhallApp(debate, engine=engine, store=store, available_personas=PersonaRegistry.default().all())
    batches: list[TokensArrived] = []
    try:
        async with app.run_test(size=SIZE,
                                message_hook=lambda m: batches.append(m) if isinstance(m, TokensArrived) else None
                                ) as pilot:
            assert app.debate_screen.header.state == "loading"  # first screen before the model is in
            await wait_until(lambda: app.debate_screen.state == "finished", timeout=120)
            await pilot.pause()
            device = app.debate_screen.header.device
            assert device == engine.info.device
            if llama_cpp.llama_supports_gpu_offload():
                assert device.startswith("GPU · ") and "CPU" not in device
            else:
                assert device.startswith("CPU") and "GPU" not in device
            views = list(app.debate_screen.transcript.views.values())
            assert len(views) == 2 and all(v.status is not TurnStatus.STREAMING for v in views)
            assert batches and sum(b.pieces for b in batches) >= len(batches)
            streamed = "".join(b.text for b in batches if b.index == 0)
            assert streamed.strip(), "the first turn streamed no text"
            assert app.debate_screen.roster.members["Stacy"].kv_tokens > 0  # the agent's KV state is held
    finally:
        await engine.aclose()
    turns = store.turns("real")
    store.close()
    assert [t.speaker for t in turns] == ["Stacy", "Walt"]
    assert all(t.stats and t.stats.generated_tokens > 0 for t in turns)


async def test_key_to_screen_latency_during_real_generation(model_path: Path) -> None:
    engine = local_engine(model_path)
    debate = SessionPlan(spec(turns=None, sampling=SamplingOverrides(max_tokens=48, seed=3)), personas(),
                         session_id="lat")
    app = TownhallApp(debate, engine=engine, clock=counter_clock())
    try:
        report = await measure_key_latency(app, presses=5)
    finally:
        await engine.aclose()
    print("\n" + report.line())
    assert len(report.samples_ms) >= 3
    assert report.token_batches > 0
    # A frame is ~16 ms; a blocked loop would show hundreds of ms (a whole decode step batch).
    assert report.median_ms < 250, report.line()


async def test_real_model_stance_bars_ballot_and_minutes(model_path: Path, tmp_path: Path) -> None:
    """The issue's watcher path on the real model: bars filled from each agent's own state after
    its turn, then the closing ballot in the banner and the minutes, all in the record."""
    from townhall.tui.widgets.roster import RosterEntry

    engine = local_engine(model_path)
    store = Store.open(tmp_path / "th.db")
    debate = SessionPlan(spec(turns=3, sampling=SamplingOverrides(max_tokens=12, seed=5)), personas(),
                         session_id="stance")
    app = TownhallApp(debate, engine=engine, store=store, available_personas=PersonaRegistry.default().all())
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = app.debate_screen
            await wait_until(lambda: screen.minutes is not None, timeout=300)
            await wait_until(lambda: screen.state == "finished", timeout=60)
            await pilot.pause()
            assert engine.info.stance_probe == "logits"
            for name in ("Stacy", "Walt", "Priya"):
                readings = screen._members[name].stances
                assert len(readings) >= 2 and all(0.0 <= p <= 1.0 for p in readings)  # after its turn, and the ballot
                entry = next(e for e in screen.roster.query(RosterEntry) if e.member.name == name)
                assert "% for" in entry.render().plain or "% against" in entry.render().plain
            outcome = screen.outcome
            assert outcome is not None and outcome.votes_for + outcome.votes_against == 3
            assert screen.banner.has_class(f"-{outcome.result}") and outcome.announcement in screen_text(app)
    finally:
        await engine.aclose()
    stored = store.outcome_of("stance")
    stances = store.stances_of("stance")
    store.close()
    assert stored is not None and stored.result == outcome.result and stored.minutes == screen.minutes
    assert {s.agent for s in stances} == {"Stacy", "Walt", "Priya"}


async def test_real_model_regenerates_a_turn_from_the_tui(model_path: Path, tmp_path: Path) -> None:
    """Issue 13 on the real model: r after the debate ended resumes it, the turn is drawn again
    on a new branch ("‹ 2/2 ›"), ← brings the first text back; the record holds both."""
    engine = local_engine(model_path)
    store = Store.open(tmp_path / "th.db")
    debate = SessionPlan(spec(turns=2, sampling=SamplingOverrides(max_tokens=12, seed=11), ballot=False), personas(),
                         session_id="regen")
    app = TownhallApp(debate, engine=engine, store=store, available_personas=PersonaRegistry.default().all())
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = app.debate_screen
            await wait_until(lambda: screen.state == "finished", timeout=180)
            await wait_until(lambda: len(screen.transcript.views) == 2
                             and screen.transcript.views[1].status is not TurnStatus.STREAMING)
            first, old = screen.session, screen.scheduler.turns[1]
            await pilot.press("r")  # the last turn: Walt's
            await wait_until(lambda: screen.session is not first and screen.state == "finished", timeout=180)
            view = screen.transcript.views[1]
            await wait_until(lambda: "‹ 2/2 ›" in view._label_text().plain and view.status is not TurnStatus.STREAMING,
                             timeout=30)
            new = screen.scheduler.turns[1]
            assert new.node != old.node and new.speaker == old.speaker == "Walt"
            assert new.stats is not None and new.stats.generated_tokens > 0
            await wait_until(lambda: view.text == new.content, timeout=10)  # as recorded (trimmed), not as streamed
            await pilot.press("up", "left")  # select it, back to the first alternative
            await wait_until(lambda: screen.state == "finished" and screen.scheduler.turns[1].node == old.node,
                             timeout=180)
            await wait_until(lambda: "‹ 1/2 ›" in screen.transcript.views[1]._label_text().plain, timeout=30)
            await wait_until(lambda: screen.transcript.views[1].text == old.content, timeout=10)
    finally:
        await engine.aclose()
    tree = store.tree("regen")
    store.close()
    assert [t.node for t in tree.alternatives(old)] == [old.node, new.node]
    assert tree.path()[1].node == old.node  # the choice is the record's current branch
