"""The stance meter, the tally, the closing ballot and the minutes as the watcher sees them.

A real Scheduler runs on a scripted engine; the probe's readings, the outcome and the
minutes are published into the screen the way the scheduler publishes them (the
screen's own listener), so each test decides the numbers and checks what is drawn.
"""

from __future__ import annotations

import dataclasses

from conftest import wait_until
from rich.style import Style
from test_tui_support import SIZE, make_app, screen_text
from textual.widgets import TextArea

from townhall.engine.scripted import ScriptedEngine
from townhall.domain.events import MinutesWritten, OutcomeDecided, StanceMeasured, Vote
from townhall.tui.screens.minutes import MinutesScreen
from townhall.tui.screens.tally import TallyScreen, TallyTable
from townhall.tui.tally import leaning, side_of, tally
from townhall.tui.widgets.header import TownhallHeader
from townhall.tui.widgets.outcome import OutcomeBanner
from townhall.tui.widgets.roster import RosterEntry
from townhall.tui.widgets.stance import StanceChart, StanceStyles, sparkline, stance_line

PLAIN = StanceStyles(Style(), Style(), Style())


# -- the words and the marks --------------------------------------------------------
def test_leaning_names_the_side_and_its_share() -> None:
    assert leaning(0.62) == "62% for"
    assert leaning(0.2) == "80% against"
    assert leaning(0.5) == "50% against" and side_of(0.5) == "against"  # the ballot's rule: for needs more than half
    assert leaning(0.0) == "100% against" and leaning(1.0) == "100% for"


def test_tally_counts_latest_sides_and_skips_the_unmeasured() -> None:
    t = tally([("Stacy", 0.9), ("Walt", 0.1), ("Priya", 0.6), ("pogi", None)])
    assert (t.votes_for, t.votes_against, t.result) == (2, 1, "carried")
    assert t.summary == "The motion would carry, 2 to 1. (1 not measured yet)"
    assert tally([("Walt", 0.3), ("Priya", 0.7)]).result == "tied"
    assert tally([("Walt", 0.3)]).summary == "The motion would be defeated, 1 to 0."
    assert tally([("Walt", None)]).summary == "No stance has been measured yet."


def test_stance_line_has_a_bar_and_words_or_words_alone_when_narrow() -> None:
    wide = stance_line(0.75, 28, PLAIN).plain
    assert wide.endswith(" 75% for")
    bar = wide[: -len(" 75% for")]
    assert len(bar) == 20 and bar.count("█") == 15 and bar.count("░") == 5
    assert stance_line(0.25, 13, PLAIN).plain == "75% against"  # no room for a bar: the words stay
    assert stance_line(None, 28, PLAIN).plain == "stance not measured yet"
    assert stance_line(None, 13, PLAIN).plain == "no stance yet"


def test_sparkline_scale_is_fixed() -> None:
    assert sparkline([0.0, 0.5, 0.99, 1.0], PLAIN).plain == "▁▅██"
    assert sparkline([0.5, 0.5], PLAIN).plain == "▅▅"  # a flat line stays mid-height


# -- live in the debate screen ---------------------------------------------------------
def _reading(app, agent: str, p_for: float, round_: int = 1, session_id: str | None = None) -> StanceMeasured:
    screen = app.debate_screen
    return StanceMeasured(session_id or screen.session_id, agent, round_, round_ * 3, p_for, "logits", 0.0)


def _entry(app, name: str) -> RosterEntry:
    return next(e for e in app.debate_screen.roster.query(RosterEntry) if e.member.name == name)


def _entry_text(app, name: str) -> str:
    return _entry(app, name).render().plain


async def _finished(app, pilot) -> None:
    await wait_until(lambda: app.debate_screen.state == "finished", timeout=20)
    await pilot.pause()


async def test_stance_bars_move_with_each_reading() -> None:
    app = make_app(turns=3)
    async with app.run_test(size=SIZE) as pilot:
        await _finished(app, pilot)
        screen = app.debate_screen
        assert "no stance probe" in _entry_text(app, "Walt")  # a scripted engine without a probe script
        screen._on_scheduler_event(_reading(app, "Walt", 0.3))
        await wait_until(lambda: "70% against" in _entry_text(app, "Walt"))
        first = _entry_text(app, "Walt").splitlines()[1].count("█")
        screen._on_scheduler_event(_reading(app, "Walt", 0.8, round_=2))
        await wait_until(lambda: "80% for" in _entry_text(app, "Walt"))
        assert _entry_text(app, "Walt").splitlines()[1].count("█") > first  # the bar grew toward "for"
        await pilot.pause()
        assert "80% for" in screen_text(app)
        chart = screen.stats.query_one(StanceChart)
        assert [(r.name, r.values) for r in chart.rows] == [("Stacy", ()), ("Walt", (0.3, 0.8)), ("Priya", ())]
        assert "80% for" in chart.render().plain.splitlines()[1]
        # another session's reading (a replaced debate finishing late) changes nothing
        screen._on_scheduler_event(_reading(app, "Walt", 0.1, session_id="someone-else"))
        await pilot.pause(0.1)
        assert screen._members["Walt"].stances == [0.3, 0.8]


async def test_moderator_carries_no_stance_bar() -> None:
    app = make_app(turns=1, names=("Margaret", "Stacy", "Walt"))
    chaired = app.debate_screen.debate.spec.model_copy(update={"moderator": "Margaret"})
    app.debate_screen.debate = dataclasses.replace(app.debate_screen.debate, spec=chaired)
    async with app.run_test(size=SIZE) as pilot:
        await _finished(app, pilot)
        assert "moderator" in _entry_text(app, "Margaret") and "stance" not in _entry_text(app, "Margaret")
        assert "no stance probe" in _entry_text(app, "Stacy")
        assert [r.name for r in app.debate_screen.stats.query_one(StanceChart).rows] == ["Stacy", "Walt"]


async def test_chairs_announcement_is_no_debate_turn_in_the_header() -> None:
    engine = ScriptedEngine(None, delay=0.002, probe_script=_drifting_probe())
    app = make_app(engine, turns=3, names=("Margaret", "Stacy", "Walt"))
    chaired = app.debate_screen.debate.spec.model_copy(update={"moderator": "Margaret"})
    app.debate_screen.debate = dataclasses.replace(app.debate_screen.debate, spec=chaired)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.debate_screen
        await wait_until(lambda: screen.state == "finished" and screen.minutes is not None, timeout=30)
        await pilot.pause()
        last = screen.scheduler.turns[-1]
        assert (last.speaker, last.phase) == ("Margaret", "vote") and len(screen.scheduler.turns) == 4
        assert screen.header.turn == 3  # "turn 3 of 3", not 4 of 3


async def test_narrow_roster_shows_the_stance_in_words() -> None:
    app = make_app(turns=3)
    async with app.run_test(size=(80, 24)) as pilot:
        await _finished(app, pilot)
        app.debate_screen._on_scheduler_event(_reading(app, "Priya", 0.25))
        await wait_until(lambda: app.debate_screen._members["Priya"].stances == [0.25])
        await pilot.pause()
        column = [line[:18] for line in screen_text(app).splitlines()]
        at = next(i for i, line in enumerate(column) if "Priya" in line)
        assert "75% against" in column[at + 1]


async def test_tally_key_shows_each_stance_and_the_would_be_result() -> None:
    app = make_app(turns=3)
    async with app.run_test(size=SIZE) as pilot:
        await _finished(app, pilot)
        screen = app.debate_screen
        for name, p in (("Stacy", 0.9), ("Walt", 0.35), ("Priya", 0.55)):
            screen._on_scheduler_event(_reading(app, name, p))
        await wait_until(lambda: all(m.stances for m in screen._members.values()))
        await pilot.press("t")
        await wait_until(lambda: isinstance(app.screen, TallyScreen))
        dialog = app.screen
        assert (dialog.tally.votes_for, dialog.tally.votes_against, dialog.tally.result) == (2, 1, "carried")
        await pilot.pause()
        text = screen_text(app)
        assert "The motion would carry, 2 to 1." in text
        assert "0.90" in text and "0.35" in text and "65% against" in text and "55% for" in text
        assert not dialog.can_vote  # the debate is over: nothing to call
        await pilot.press("t")
        await wait_until(lambda: app.screen is screen)


async def test_outcome_banner_and_minutes_never_markup() -> None:
    minutes = "Minutes.\n[bold red]Walt[/] said <b>no</b>.\n" + "\n".join(f"point {i}" for i in range(60))
    app = make_app(turns=3)
    async with app.run_test(size=SIZE) as pilot:
        await _finished(app, pilot)
        screen = app.debate_screen
        await pilot.press("m")  # nothing yet: a warning, no dialog
        await pilot.pause()
        assert app.screen is screen
        votes = (Vote("Stacy", "for", 0.9), Vote("Walt", "against", 0.2), Vote("Priya", "against", 0.4))
        sid = screen.session_id
        screen._on_scheduler_event(OutcomeDecided(sid, votes, 1, 2, "defeated", "The motion is defeated, 2 to 1.", 0.0))
        await wait_until(lambda: screen.banner.has_class("-defeated"))
        await pilot.pause()
        text = screen_text(app)
        assert "THE MOTION IS DEFEATED" in text and "1 for · 2 against" in text
        assert "The motion is defeated, 2 to 1." in text and "minutes are being written" in text
        await pilot.press("t")  # the ballot as counted, not recomputed from the bars
        await wait_until(lambda: isinstance(app.screen, TallyScreen))
        table = app.screen.query_one(TallyTable)
        assert table.outcome is not None and "Result: DEFEATED, 1 for, 2 against" in screen_text(app)
        await pilot.press("escape")
        await wait_until(lambda: app.screen is screen)
        screen._on_scheduler_event(MinutesWritten(sid, minutes, 0.0))
        await wait_until(lambda: screen.minutes == minutes)
        await pilot.pause()
        assert "read the minutes" in screen_text(app)
        await pilot.press("m")
        await wait_until(lambda: isinstance(app.screen, MinutesScreen))
        await pilot.pause()
        assert app.screen.query_one(TextArea).text == minutes
        assert "[bold red]Walt[/] said <b>no</b>." in screen_text(app)  # shown as written
        await pilot.press("m")
        await wait_until(lambda: app.screen is screen)
    assert isinstance(screen.banner, OutcomeBanner)


async def test_header_says_when_the_probe_has_no_probabilities() -> None:
    engine = ScriptedEngine(["a b c"])
    engine._info = dataclasses.replace(engine.info, stance_probe="choice")
    app = make_app(engine, turns=1)
    async with app.run_test(size=SIZE) as pilot:
        await _finished(app, pilot)
        header = app.query_one(TownhallHeader)
        assert header.stance_probe == "choice"
        line = screen_text(app).splitlines()[1]
        assert "no probabilities from server: stance by one-token choice" in line and "finished" in line


async def test_header_keeps_the_state_in_view_on_a_narrow_terminal() -> None:
    engine = ScriptedEngine(["a b c"])
    engine._info = dataclasses.replace(engine.info, stance_probe="choice")
    app = make_app(engine, turns=1)
    async with app.run_test(size=(80, 24)) as pilot:
        await _finished(app, pilot)
        assert "finished" in screen_text(app).splitlines()[1]


async def test_stance_colours_differ_in_every_theme() -> None:
    app = make_app(turns=1)
    async with app.run_test(size=SIZE) as pilot:
        await _finished(app, pilot)
        app.debate_screen._on_scheduler_event(_reading(app, "Walt", 0.6))
        for theme in ("townhall-night", "townhall-ember", "townhall-paper", "textual-dark", "textual-light"):
            app.theme = theme
            await pilot.pause()
            styles = StanceStyles.of(_entry(app, "Walt"))
            assert styles.for_.color is not None and styles.against.color is not None
            assert styles.for_.color != styles.against.color, theme


# -- the sessions browser ---------------------------------------------------------------
MINUTES = ("Minutes of the town hall meeting\nResult: The motion carries, 2 to 1.\n"
           "- Walt voted against, because [b]upkeep[/b].")


def _voted_copy(store, source_id: str, new_id: str) -> None:
    """A recorded session copied with stances and a ballot, through the store's own import."""
    from townhall.store import OutcomeRecord

    record = store.get_session(source_id)
    record = dataclasses.replace(record, summary=dataclasses.replace(record.summary, id=new_id))
    readings = [
        StanceMeasured(new_id, agent, r, r, p, "logits", 0.0)
        for r, row in enumerate([(0.6, 0.4, 0.5), (0.7, 0.3, 0.6), (0.9, 0.2, 0.7)])
        for agent, p in zip(("Stacy", "Walt", "Priya"), row)
    ]
    votes = (Vote("Stacy", "for", 0.9), Vote("Walt", "against", 0.2), Vote("Priya", "for", 0.7))
    outcome = OutcomeRecord(new_id, votes, 2, 1, "carried", "The motion carries, 2 to 1.", 1.0, MINUTES, 2.0)
    store.insert_session(record, store.turns(source_id), stances=readings, outcome=outcome)


async def test_sessions_browser_shows_result_minutes_and_stance_chart(tmp_path) -> None:
    from townhall.store import Store
    from townhall.tui.screens.sessions import ReplayScreen, SessionsScreen

    store = Store.open(tmp_path / "townhall.db")
    try:
        app = make_app(store=store, turns=3, session_id="plain")
        async with app.run_test(size=SIZE) as pilot:
            await _finished(app, pilot)
            _voted_copy(store, "plain", "voted")
            await pilot.press("ctrl+o")
            await wait_until(lambda: isinstance(app.screen, SessionsScreen))
            await pilot.pause()
            browser = app.screen
            table = browser.query_one("DataTable")
            rows = {table.coordinate_to_cell_key((i, 0))[0].value: i for i in range(table.row_count)}
            assert "carried 2–1" in screen_text(app)
            assert str(table.get_row_at(rows["voted"])[3]) == "carried 2–1"
            table.move_cursor(row=rows["voted"])
            await pilot.pause()
            detail = screen_text(app)  # under the table: the result and the minutes, as written
            assert "Result: carried, 2 for, 1 against" in detail and "because [b]upkeep[/b]." in detail
            await pilot.press("m")
            await wait_until(lambda: isinstance(app.screen, MinutesScreen))
            assert app.screen.query_one(TextArea).text == MINUTES
            await pilot.press("escape")
            await wait_until(lambda: app.screen is browser)
            await pilot.press("o")
            await wait_until(lambda: isinstance(app.screen, ReplayScreen) and app.screen.done)
            await pilot.pause()
            chart = app.screen.query_one(StanceChart)
            assert [(r.name, r.values) for r in chart.rows] == [
                ("Stacy", (0.6, 0.7, 0.9)), ("Walt", (0.4, 0.3, 0.2)), ("Priya", (0.5, 0.6, 0.7))]
            text = screen_text(app)
            assert "Result: carried, 2 for, 1 against" in text and "80% against" in text
            await pilot.press("m")  # the minutes from the replay too
            await wait_until(lambda: isinstance(app.screen, MinutesScreen))
            await pilot.press("escape")
            await pilot.press("escape")
            await wait_until(lambda: app.screen is browser)
            table.move_cursor(row=rows["plain"])
            await pilot.press("m")
            await pilot.pause()
            assert app.screen is browser  # no minutes for a session that never voted: a warning only
    finally:
        store.close()


# -- the whole path: a real Scheduler probing a scripted engine ------------------------------
def _drifting_probe():
    """Walt warms to the motion a little with each reading; Stacy is sure; Priya doubts."""
    seen: dict[str, int] = {}

    def script(agent_id, prompt, choices):
        name = next(n for n in ("Stacy", "Walt", "Priya") if agent_id and agent_id.endswith(n))
        seen[name] = seen.get(name, 0) + 1
        p = {"Stacy": 0.9, "Walt": min(0.95, 0.2 + 0.15 * seen[name]), "Priya": 0.3}[name]
        return [p, 1 - p]

    return script


async def test_call_vote_key_ends_with_the_ballot_and_the_minutes(tmp_path) -> None:
    from townhall.store import Store

    store = Store.open(tmp_path / "townhall.db")
    try:
        # The default script says something new each turn: a repeated reply would be degenerate, and unprobed.
        engine = ScriptedEngine(None, delay=0.01, probe_script=_drifting_probe())
        app = make_app(engine, store=store, turns=None, session_id="voting")
        async with app.run_test(size=SIZE) as pilot:
            screen = app.debate_screen
            walt = lambda: screen._members["Walt"].stances  # noqa: E731
            await wait_until(lambda: len(walt()) >= 2, timeout=30)
            assert walt()[1] > walt()[0]  # read after each of Walt's turns, and moving
            await wait_until(lambda: f"{round(walt()[-1] * 100)}% for" in _entry_text(app, "Walt")
                             or "against" in _entry_text(app, "Walt"))
            await pilot.press("v")
            assert screen.vote_called and screen.banner.has_class("-shown")  # "Vote called…", or already the result
            await wait_until(lambda: screen.minutes is not None, timeout=30)
            await wait_until(lambda: screen.state == "finished", timeout=30)
            await pilot.pause()
            outcome = screen.outcome
            assert outcome is not None and outcome.result == "carried"
            assert [(v.agent, v.choice) for v in outcome.votes] == [
                ("Stacy", "for"), ("Walt", "for"), ("Priya", "against")]
            text = screen_text(app)
            assert "THE MOTION CARRIES" in text and "2 for · 1 against" in text
            await pilot.press("m")
            await wait_until(lambda: isinstance(app.screen, MinutesScreen))
            assert app.screen.query_one(TextArea).text == screen.minutes
            await pilot.press("escape")
            await pilot.press("v")  # a second call does nothing: the ballot is over
            await pilot.pause()
            assert screen.outcome is outcome
        stored = store.outcome_of("voting")
        assert stored is not None and stored.result == "carried" and stored.minutes == screen.minutes
        assert [s.p_for for s in store.stances_of("voting") if s.agent == "Walt"][:2] == walt()[:2]
    finally:
        store.close()


async def test_vote_called_from_the_tally_dialog_while_a_turn_is_held() -> None:
    """The engine holds each turn until the test grants it, so "Vote called" is seen before the ballot."""
    from test_tui_support import GatedEngine

    engine = GatedEngine(lambda request: f"Reply number {len(engine.requests)} has new words.")
    engine.probe_script = _drifting_probe()
    engine._info = dataclasses.replace(engine.info, stance_probe="scripted")
    engine.grant(2)
    app = make_app(engine, turns=None)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.debate_screen
        await wait_until(lambda: len(screen._members["Walt"].stances) == 1 and screen.roster.speaking == "Priya")
        await pilot.press("t")
        await wait_until(lambda: isinstance(app.screen, TallyScreen))
        assert app.screen.can_vote and "Call the vote (v)" in screen_text(app)
        dialog = app.screen
        assert (dialog.tally.measured, dialog.tally.result) == (2, "tied")  # Priya is still speaking
        assert "not measured yet" in screen_text(app)
        await pilot.press("v")
        await wait_until(lambda: app.screen is screen and screen.vote_called)
        await pilot.pause()
        assert "Vote called: the closing ballot follows the turn in progress" in screen_text(app)
        assert screen.check_action("call_vote", ()) is None  # dimmed: called once
        engine.grant(20)  # Priya's turn, the moderator-less announcement, the minutes
        await wait_until(lambda: screen.minutes is not None and screen.state == "finished", timeout=30)
        assert screen.outcome is not None and len(screen.outcome.votes) == 3


async def test_resumed_session_keeps_its_stored_readings(tmp_path) -> None:
    from townhall.debate.session import plan_resume
    from townhall.store import Store
    from townhall.debate.session import SessionPlan

    store = Store.open(tmp_path / "townhall.db")
    try:
        first = make_app(ScriptedEngine(None, probe_script=_drifting_probe()), store=store, turns=3, session_id="again")
        async with first.run_test(size=SIZE) as pilot:
            await _finished(first, pilot)
        stored = [s.p_for for s in store.stances_of("again") if s.agent == "Walt"]
        assert stored
        plan = plan_resume(store, "again", more_turns=3)
        engine = ScriptedEngine(None, delay=0.01, probe_script=_drifting_probe())
        app = make_app(engine, store=store, turns=3)
        app.debate_screen.debate = SessionPlan(plan.spec, list(plan.personas), session_id="again",
                                               history=list(plan.history))
        async with app.run_test(size=SIZE) as pilot:
            screen = app.debate_screen
            await wait_until(lambda: len(screen._members["Walt"].stances) > len(stored), timeout=30)
            assert screen._members["Walt"].stances[: len(stored)] == stored  # the chart goes on from the record
    finally:
        store.close()


async def test_no_vote_to_call_without_a_probe() -> None:
    app = make_app(ScriptedEngine(None, delay=0.01), turns=None)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.debate_screen
        await wait_until(lambda: screen.state == "debating" and len(screen.scheduler.turns) >= 1)
        assert not screen.probing and screen.check_action("call_vote", ()) is None
        await pilot.press("v")
        await pilot.pause(0.2)
        assert not screen.vote_called and screen.state == "debating"  # the debate goes on
        assert "no stance probe" in _entry_text(app, "Walt")
        await pilot.press("t")
        await wait_until(lambda: isinstance(app.screen, TallyScreen))
        await pilot.pause()
        assert not app.screen.can_vote and "No stance probe on this engine" in screen_text(app)


async def test_probing_engine_promises_a_reading() -> None:
    from test_tui_support import GatedEngine

    engine = GatedEngine(["a b c"])  # no turn granted: the first speaker holds the floor
    engine.probe_script = _drifting_probe()
    engine._info = dataclasses.replace(engine.info, stance_probe="scripted")
    app = make_app(engine, turns=1)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.debate_screen.roster.speaking == "Stacy")
        await pilot.pause()
        assert app.debate_screen.probing
        assert "stance not measured yet" in _entry_text(app, "Priya")
        assert app.debate_screen.check_action("call_vote", ()) is True
