"""Pilot tests of every TUI action: real Scheduler, real SQLite store, scripted engine for order."""

from __future__ import annotations

import dataclasses
import itertools

import tomllib
from pathlib import Path

import pytest
from conftest import wait_until
from test_tui_support import SIZE, GatedEngine, SteadyEngine, make_app, screen_text
from textual.binding import Binding

from townhall.engine.scripted import ScriptedEngine
from townhall.errors import ModelFileError
from townhall.store import Store
from townhall.tui.app import TownhallApp
from townhall.tui.bindings import ACTIONS
from townhall.tui.config import TuiConfig, config_path, load_config
from townhall.tui.screens.debate_screen import DebateScreen
from townhall.tui.screens.error import ErrorScreen
from townhall.tui.widgets.header import TownhallHeader
from townhall.tui.widgets.interject import InterjectBox
from townhall.tui.widgets.transcript import Transcript
from townhall.domain.turns import TurnKind, TurnStatus

LONG = " ".join(f"word{i}" for i in range(400))


@pytest.fixture
def store(tmp_path: Path):
    store = Store.open(tmp_path / "townhall.db")
    yield store
    store.close()


def error_dialog_ready(app) -> bool:
    """The dialog is on top and has taken focus: keys pressed now reach it."""
    return isinstance(app.screen, ErrorScreen) and app.focused is not None and app.focused.screen is app.screen


def finished_turns(app) -> list:
    return [t for t in (app.debate_screen.scheduler.turns if app.debate_screen.scheduler else [])
            if t.status is not TurnStatus.STREAMING]


async def test_debate_runs_and_is_recorded(store: Store) -> None:
    app = make_app(store=store, turns=3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.debate_screen.state == "finished", timeout=20)
        await pilot.pause()
        header = app.query_one(TownhallHeader)
        assert header.device == "CPU · scripted"  # EngineInfo.device, verbatim
        assert header.turn == 3 and header.max_turns == 3
        views = app.query_one(Transcript).views
        assert [v.speaker for v in views.values()] == ["Stacy", "Walt", "Priya"]
        assert all(v.status is TurnStatus.COMPLETE for v in views.values())
        text = screen_text(app)
        assert "twenty years" in text and "finished" in text
        assert "Stacy" in text and "3 turns" not in text  # each spoke once
    turns = store.turns("tui-test")
    assert [t.speaker for t in turns] == ["Stacy", "Walt", "Priya"]
    assert all(t.status is TurnStatus.COMPLETE for t in turns)


async def test_pause_and_resume() -> None:
    app = make_app(ScriptedEngine(REPLIES_SLOW := ["one two three four five six"], delay=0.02), turns=None)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: len(finished_turns(app)) >= 1)
        await pilot.press("p")
        await wait_until(lambda: app.debate_screen.state == "paused")
        assert app.debate_screen.scheduler.status == "paused"
        count = len(app.debate_screen.scheduler.turns)
        await pilot.pause(0.4)
        assert len(app.debate_screen.scheduler.turns) == count  # nothing moves while paused
        assert "paused" in screen_text(app)
        await pilot.press("p")
        await wait_until(lambda: len(app.debate_screen.scheduler.turns) > count)
        assert app.debate_screen.state == "debating"
        assert REPLIES_SLOW


async def test_step_takes_exactly_one_turn() -> None:
    app = make_app(ScriptedEngine(["a b c"], delay=0.01), turns=None)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: len(finished_turns(app)) >= 1)
        await pilot.press("p")
        await wait_until(lambda: app.debate_screen.scheduler.status == "paused")
        before = len(finished_turns(app))
        await pilot.press("s")
        await wait_until(lambda: len(finished_turns(app)) == before + 1)
        await wait_until(lambda: app.debate_screen.scheduler.status == "paused")
        await pilot.pause(0.3)
        assert len(finished_turns(app)) == before + 1


async def test_interrupt_keeps_text_marked_interrupted(store: Store) -> None:
    app = make_app(ScriptedEngine([LONG], delay=0.01), store=store, turns=2)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: bool(app.query_one(Transcript).views)
                         and len(app.query_one(Transcript).views[0].text) > 20)
        await pilot.press("x")
        await wait_until(lambda: bool(finished_turns(app)))
        first = app.debate_screen.scheduler.turns[0]
        assert first.status is TurnStatus.INTERRUPTED
        assert first.content.startswith("word0 word1")
        await wait_until(lambda: app.query_one(Transcript).views[0].status is TurnStatus.INTERRUPTED)
        assert "[interrupted]" in screen_text(app)
        await pilot.press("q")
    assert store.turns("tui-test")[0].status is TurnStatus.INTERRUPTED


async def test_skip_drops_the_current_speaker() -> None:
    app = make_app(ScriptedEngine([LONG], delay=0.01), turns=2)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.debate_screen.scheduler is not None
                         and app.debate_screen.scheduler.current_speaker == "Stacy")
        await pilot.press("k")
        await wait_until(lambda: len(app.debate_screen.scheduler.turns) >= 2)
        skipped = app.debate_screen.scheduler.turns[0]
        assert skipped.speaker == "Stacy" and skipped.content == "" and skipped.error
        assert app.debate_screen.scheduler.turns[1].speaker == "Walt"
        await wait_until(lambda: "skipped" in screen_text(app))


async def test_interject_with_enter_and_newline_key(store: Store) -> None:
    app = make_app(ScriptedEngine(["a b c d"], delay=0.01), store=store, turns=None)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: len(finished_turns(app)) >= 1)
        await pilot.press("p")
        await wait_until(lambda: app.debate_screen.scheduler.status == "paused")
        await pilot.press("i")
        box = app.query_one(InterjectBox)
        assert app.focused is box
        await pilot.press(*"What about", "ctrl+j", *"parking?")
        assert box.text == "What about\nparking?"  # ctrl+j inserted a line, nothing sent
        await pilot.press("enter")
        await wait_until(lambda: any(t.kind is TurnKind.AUDIENCE for t in app.debate_screen.scheduler.turns))
        audience = next(t for t in app.debate_screen.scheduler.turns if t.kind is TurnKind.AUDIENCE)
        assert audience.content == "What about\nparking?" and audience.speaker == "Audience"
        assert box.text == ""
        await wait_until(lambda: "parking?" in screen_text(app))
        assert app.debate_screen.scheduler.status == "paused"  # an interjection does not unpause
    stored = [t for t in store.turns("tui-test") if t.kind is TurnKind.AUDIENCE]
    assert [t.content for t in stored] == ["What about\nparking?"]


async def test_model_text_is_never_markup() -> None:
    hostile = "Look: [bold red]not styled[/] <script>alert(1)</script> [link=x]y[/link]"
    app = make_app(ScriptedEngine([hostile]), turns=1)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.debate_screen.state == "finished")
        await pilot.pause()
        text = screen_text(app)
        assert app.debate_screen.scheduler.turns[0].content == hostile
        for piece in ("Look: [bold red]not styled[/]", "<script>alert(1)</script>", "[link=x]y[/link]"):
            assert piece in text, piece


async def test_transcript_follows_bottom_only_when_user_is_there() -> None:
    """Scrolling up stops the follow; End resumes it.

    Deterministic on a loaded machine: the test grants each turn (GatedEngine), and waits
    for conditions, never for a fixed time. Home releases the anchor at once, but Textual
    scrolls there smoothly (a second, starting after the next refresh), so the test waits
    for the view to arrive before checking that growing text leaves it there.
    """
    # Different words every turn: a turn that echoes an earlier one is resampled (which would
    # wait for a grant the test does not give).
    count = itertools.count()
    engine = GatedEngine(lambda request: (lambda k: " ".join(f"t{k}w{i}" for i in range(400)))(next(count)),
                         delay=0.002)
    app = make_app(engine, turns=None)
    async with app.run_test(size=SIZE) as pilot:
        transcript = app.query_one(Transcript)

        def finished() -> int:
            return sum(v.status is not TurnStatus.STREAMING for v in transcript.views.values())

        async def grow_past(height: int) -> None:
            """Grant turns one at a time until the scrollable height passes `height`."""
            while transcript.max_scroll_y <= height:
                engine.grant(1)
                await wait_until(lambda done=finished(): finished() > done, timeout=120)
                await pilot.pause()

        await grow_past(10)
        await wait_until(lambda: transcript.scroll_y >= transcript.max_scroll_y - 2, timeout=60)  # following
        assert app.focused is transcript
        engine.grant(1)  # a turn streams while the user reads
        await pilot.press("home")  # the user scrolls up to read
        await wait_until(lambda: transcript.scroll_y == 0 and transcript.scroll_target_y == 0, timeout=60)
        await grow_past(transcript.max_scroll_y + 5)
        assert transcript.scroll_y < 3  # not yanked back down
        await pilot.press("end")  # back at the bottom: follow again
        await wait_until(lambda: transcript.scroll_y >= transcript.max_scroll_y - 3, timeout=60)
        top = transcript.max_scroll_y
        await grow_past(top + 5)
        # following again: the view keeps up with the growing text (within a frame or two)
        await wait_until(lambda: transcript.scroll_y > top and transcript.scroll_y >= transcript.max_scroll_y - 3,
                         timeout=60)


async def test_narrow_terminal_gives_the_transcript_the_room() -> None:
    app = make_app(ScriptedEngine([LONG], delay=0.05), turns=None)  # turns of seconds: the marks have time to show
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.debate_screen
        await wait_until(lambda: screen.roster.speaking == "Stacy")
        await pilot.pause()
        assert screen.has_class("-narrow")
        assert screen.transcript.region.width >= 50
        assert screen.roster.region.width <= 18
        assert screen.stats.region.width == 0  # hidden: the right-hand pane does not fit

        def roster_column() -> list[str]:
            return [line[:18] for line in screen_text(app).splitlines()]

        # who speaks now (waited for: the roster redraws on its own schedule)
        await wait_until(lambda: any("▶" in line and (screen.roster.speaking or "?") in line
                                     for line in roster_column()))
        await pilot.press("p")
        await wait_until(lambda: screen.state == "paused" and screen.roster.next_up == "Walt")
        await pilot.pause()
        assert any("…" in line and "Walt" in line for line in roster_column())  # and who is next
        await pilot.press("ctrl+b")  # brings the stats back, below the transcript
        await pilot.pause()
        assert screen.body.has_class("-stats-bottom")
        assert screen.stats.region.y > screen.transcript.region.y and screen.transcript.region.width >= 50
        await pilot.press("ctrl+b")
        await pilot.pause()
        assert screen.body.has_class("-stats-hidden") and screen.stats.region.width == 0
        await pilot.press("ctrl+b")  # "right" would not fit: straight back to the bottom
        assert screen.body.has_class("-stats-bottom")


async def test_wide_terminal_keeps_all_three_columns() -> None:
    app = make_app(turns=1)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        screen = app.debate_screen
        assert screen.has_class("-wide") and not screen.has_class("-narrow")
        roster, transcript, stats = screen.roster.region, screen.transcript.region, screen.stats.region
        assert roster.width == 34 and stats.width == 36
        assert roster.right <= transcript.x and transcript.right <= stats.x


async def test_theme_switch_is_remembered() -> None:
    app = make_app(turns=1, save_settings=True)
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "townhall-night"
        assert {"townhall-night", "townhall-paper", "townhall-ember"} <= set(app.available_themes)
        assert not app.get_theme("townhall-paper").dark
        app.theme = "townhall-paper"
        await pilot.pause()
    assert tomllib.loads(config_path().read_text())["theme"] == "townhall-paper"
    again = make_app(turns=1, config=load_config())
    async with again.run_test(size=SIZE):
        assert again.theme == "townhall-paper"


async def test_theme_key_opens_the_theme_picker() -> None:
    app = make_app(turns=1)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+t")
        await pilot.pause()
        from textual.command import CommandPalette

        assert isinstance(app.screen, CommandPalette)


async def test_user_keymap_remaps_by_binding_id() -> None:
    config = TuiConfig(keymap={"townhall.pause": "f6"})
    app = make_app(ScriptedEngine(["a b c"], delay=0.01), turns=None, config=config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: len(finished_turns(app)) >= 1)
        await pilot.press("p")
        await pilot.pause(0.2)
        assert app.debate_screen.scheduler.status != "paused"  # the old key no longer pauses
        await pilot.press("f6")
        await wait_until(lambda: app.debate_screen.scheduler.status == "paused")


async def test_every_action_is_in_the_palette_with_an_id() -> None:
    app = make_app(turns=1)
    async with app.run_test(size=SIZE):
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for action in ACTIONS:
            assert action.id.startswith("townhall.")
            assert action.label in titles or action.id == "townhall.theme"
        assert "Theme" in titles
        bound = {b.id for b in [*TownhallApp.BINDINGS, *DebateScreen.BINDINGS] if isinstance(b, Binding)}
        assert {a.id for a in ACTIONS} <= bound


async def test_palette_command_runs_the_action() -> None:
    app = make_app(ScriptedEngine(["a b c"], delay=0.01), turns=None)
    async with app.run_test(size=SIZE):
        await wait_until(lambda: len(finished_turns(app)) >= 1)
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Pause")
        await command.callback()
        await wait_until(lambda: app.debate_screen.scheduler.status == "paused")


async def test_export_current_session(store: Store, tmp_path: Path) -> None:
    app = make_app(store=store, turns=2, exports_dir=tmp_path / "exports")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.debate_screen.state == "finished")
        await pilot.press("ctrl+e")
        await pilot.pause()
    exported = (tmp_path / "exports" / "townhall-tui-test.md").read_text()
    assert "rail yard" in exported and "Walt" in exported


async def test_new_townhall_dialog_validates_and_starts(store: Store) -> None:
    from townhall.tui.screens.new_townhall import NewTownhallScreen

    app = make_app(ScriptedEngine(["a b c"], delay=0.005), store=store, turns=2, session_id=None)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.debate_screen.state == "finished")
        first_session = app.debate_screen.session_id
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, NewTownhallScreen)
        motion = app.screen.query_one("#nt-motion")
        motion.value = ""
        await pilot.click("#nt-start")
        await pilot.pause()
        assert "Motion" in str(app.screen.query_one("#nt-error").render())
        assert isinstance(app.screen, NewTownhallScreen)  # still open, nothing lost
        motion.value = "Dogs should be allowed in the library."
        app.screen.query_one("#nt-turns").value = "2"
        await pilot.press("ctrl+s")
        await wait_until(lambda: app.debate_screen.session_id != first_session
                         and app.debate_screen.state == "finished")
        assert app.query_one(TownhallHeader).motion == "Dogs should be allowed in the library."
        assert len(app.query_one(Transcript).views) == 2
    sessions = {s.id: s for s in store.list_sessions()}
    assert len(sessions) == 2
    assert sessions[app.debate_screen.session_id].motion == "Dogs should be allowed in the library."


async def test_sessions_browser_open_export_delete_resume(store: Store, tmp_path: Path) -> None:
    from townhall.tui.screens.sessions import ReplayScreen, SessionsScreen

    # An old session to browse: recorded by a first app run.
    first = make_app(store=store, turns=2, session_id="old-one")
    async with first.run_test(size=SIZE):
        await wait_until(lambda: first.debate_screen.state == "finished")
    app = make_app(ScriptedEngine(["x y z"], delay=0.005), store=store, turns=1, session_id="new-one",
                   exports_dir=tmp_path / "ex")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.debate_screen.state == "finished")
        await pilot.press("ctrl+o")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SessionsScreen)
        assert screen.query_one("DataTable").row_count == 2
        assert "old-one" in screen_text(app) and "new-one ●" in screen_text(app)
        # Rows are newest first; move to the old session.
        table = screen.query_one("DataTable")
        table.move_cursor(row=[i for i in range(2) if table.coordinate_to_cell_key((i, 0))[0].value == "old-one"][0])
        await pilot.press("o")
        await wait_until(lambda: isinstance(app.screen, ReplayScreen) and app.screen.done)
        assert "twenty years" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        assert (tmp_path / "ex" / "townhall-old-one.md").read_text().count("Stacy") >= 1
        await pilot.press("u")  # resume the old session
        await wait_until(lambda: app.debate_screen.session_id == "old-one" and app.debate_screen.state == "finished")
        turns = store.turns("old-one")
        assert len(turns) == 4 and [t.speaker for t in turns[:2]] == ["Stacy", "Walt"]
        assert len(app.query_one(Transcript).views) == 4  # history shown, then two new turns
        await pilot.press("ctrl+o")
        await pilot.pause()
        table = app.screen.query_one("DataTable")
        table.move_cursor(row=[i for i in range(2) if table.coordinate_to_cell_key((i, 0))[0].value == "new-one"][0])
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        await wait_until(lambda: app.screen.query_one("DataTable").row_count == 1)
    assert [s.id for s in store.list_sessions()] == ["old-one"]


async def test_model_failure_shows_a_copyable_dialog_and_app_stays_usable() -> None:
    class Broken(ScriptedEngine):
        async def start(self) -> None:
            raise ModelFileError("/nowhere/model.gguf: model file not found")

    app = make_app(Broken(), turns=1)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: error_dialog_ready(app))
        assert app.screen.error_text == "/nowhere/model.gguf: model file not found"
        area = app.screen.query_one("#error-text")
        assert area.read_only and area.text == app.screen.error_text  # selectable, copyable
        await pilot.press("c")
        assert app.clipboard == app.screen.error_text
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ErrorScreen)
        assert app.query_one(TownhallHeader).state == "error"
        await pilot.press("p")  # no crash: just a notice
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert type(app.screen).__name__ == "NewTownhallScreen"


async def test_quit_key_stops_and_settles_the_record(store: Store) -> None:
    app = make_app(ScriptedEngine([LONG], delay=0.01), store=store, turns=None)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: bool(app.query_one(Transcript).views)
                         and len(app.query_one(Transcript).views[0].text) > 10)
        await pilot.press("q")
        await wait_until(lambda: app._exit_renderables is not None or not app.is_running, timeout=10)
    record = store.get_session("tui-test")
    assert record.summary.end_reason == "stopped"
    turns = store.turns("tui-test")
    assert turns and turns[0].status is TurnStatus.INTERRUPTED and turns[0].content.startswith("word0")


async def test_steady_engine_gives_fixed_stats() -> None:
    app = make_app(SteadyEngine(["a b c d"]), turns=2)
    async with app.run_test(size=SIZE):
        await wait_until(lambda: app.debate_screen.state == "finished")
        stats = [t.stats for t in app.debate_screen.scheduler.turns] if app.debate_screen.scheduler else []
    assert [s.decode_tps for s in stats] == [40.0, 40.0]


async def test_bench_latency_helper_on_the_default_town_hall() -> None:
    from townhall.bench.tui_latency import measure_engine_latency

    report = await measure_engine_latency(ScriptedEngine([LONG], delay=0.01), presses=3)
    assert len(report.samples_ms) == 3 and report.token_batches > 0
    assert 0 < report.median_ms < 1000 and report.device == "CPU · scripted"
    assert "median" in report.line()


async def test_first_screen_shows_while_the_model_loads() -> None:
    import asyncio

    release = asyncio.Event()

    class SlowLoad(ScriptedEngine):
        async def start(self) -> None:
            await release.wait()  # the model "loads" until the test says so

    app = make_app(SlowLoad(["a b"]), turns=1)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: "loading model" in screen_text(app), timeout=10)
        assert app.debate_screen.state == "loading"
        await pilot.press("p")  # keys work during loading: a notice, not a crash
        await wait_until(lambda: any("still loading" in n.message for n in app._notifications), timeout=10)
        release.set()
        await wait_until(lambda: app.debate_screen.state == "finished", timeout=10)


async def test_context_error_strategy_ends_in_a_dialog(store: Store) -> None:
    from test_tui_support import personas, spec

    from townhall.debate.session import SessionPlan

    app = TownhallApp(
        SessionPlan(spec(turns=3, context_strategy="error"), personas(), session_id="ctx"),
        engine=ScriptedEngine(["a b c"], n_ctx=160),
        store=store,
        save_settings=False,
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: error_dialog_ready(app), timeout=10)
        assert app.screen.error_text and "\n" not in app.screen.error_text.strip()
        await pilot.press("escape")
        await pilot.pause()
        assert app.debate_screen.state == "error"
        await pilot.press("ctrl+o")  # still usable: the record is browsable
        await pilot.pause()
        assert type(app.screen).__name__ == "SessionsScreen"
    assert store.get_session("ctx").summary.end_reason == "error"


async def test_unknown_keymap_id_is_reported() -> None:
    from townhall.tui.app import known_binding_ids

    assert {"townhall.pause", "townhall.sessions_delete", "townhall.interject_newline"} <= known_binding_ids()
    app = make_app(turns=1, config=TuiConfig(keymap={"townhall.paws": "f6"}))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert any("townhall.paws" in m for m in messages)


async def test_replay_at_a_chosen_speed(store: Store) -> None:
    from townhall.tui.screens.sessions import ReplayScreen

    first = make_app(store=store, turns=2, session_id="old-one")
    async with first.run_test(size=SIZE):
        await wait_until(lambda: first.debate_screen.state == "finished")
    app = make_app(store=store, turns=1, session_id="new-one")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.debate_screen.state == "finished")
        await pilot.press("ctrl+o")
        await pilot.pause()
        app.screen.query_one("#sessions-speed").value = 30.0
        table = app.screen.query_one("DataTable")
        table.move_cursor(row=[i for i in range(2) if table.coordinate_to_cell_key((i, 0))[0].value == "old-one"][0])
        await pilot.press("r")
        await wait_until(lambda: isinstance(app.screen, ReplayScreen))
        replay = app.screen
        assert replay.words_per_s == 30.0
        await pilot.pause(0.3)
        assert not replay.done  # ~30 words at 30 words/s takes about a second
        await pilot.press("space")  # pause the replay
        await pilot.pause(0.1)

        def shown() -> tuple[int, int]:
            views = replay.query_one(Transcript).views
            return len(views), sum(len(v.text) for v in views.values())

        before = shown()
        await pilot.pause(0.4)
        assert shown() == before and not replay.done
        await pilot.press("space")
        await wait_until(lambda: replay.done, timeout=10)
        assert "twenty years" in screen_text(app)


async def test_pause_mid_turn_says_so_at_once() -> None:
    app = make_app(ScriptedEngine([LONG], delay=0.05), turns=None)  # a turn of seconds, even on an idle CPU
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: bool(app.debate_screen.transcript.views)
                         and len(app.debate_screen.transcript.views[0].text) > 10)
        await pilot.press("p")
        header = app.debate_screen.header
        assert header.state == "pausing"  # before the turn ends, the key shows
        assert "pausing after this turn" in header.render().plain
        await wait_until(lambda: app.debate_screen.state == "paused")
        assert app.debate_screen.scheduler.turns[0].status is TurnStatus.COMPLETE  # the turn was allowed to finish
        # The transcript draws in its own queue, so its view may lag the state by a frame.
        await wait_until(lambda: app.debate_screen.transcript.views[0].status is TurnStatus.COMPLETE)


async def test_new_motion_drops_the_old_title(store: Store) -> None:
    """The old title named the old motion; keeping it would mislabel the new session."""
    from townhall.tui.screens.new_townhall import NewTownhallScreen

    app = make_app(ScriptedEngine(["a b c"], delay=0.005), store=store, turns=1, session_id=None)
    renamed = app.debate_screen.debate.spec.model_copy(update={"title": "Rail Yard Town Hall"})
    app.debate_screen.debate = dataclasses.replace(app.debate_screen.debate, spec=renamed)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.debate_screen.state == "finished")
        first_session = app.debate_screen.session_id
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, NewTownhallScreen)
        app.screen.query_one("#nt-motion").value = "Should the town ban leaf blowers?"
        await pilot.press("ctrl+s")
        await wait_until(lambda: app.debate_screen.session_id != first_session
                         and app.debate_screen.state == "finished")
    titles = {s.id: s.title for s in store.list_sessions()}
    assert titles[first_session] == "Rail Yard Town Hall"
    assert titles[app.debate_screen.session_id] != "Rail Yard Town Hall"
