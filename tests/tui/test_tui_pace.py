"""The reading pace in the TUI: each finished turn held for its words at the pace, the keys, the header.

Assertions are on the holds the app computes (`ReadingPace.holds`), not on wall time: the
clock is fixed, so every turn counts as shown for no time and is held for its whole
reading time; a high pace keeps the test fast.
"""

from __future__ import annotations

import tomllib

from conftest import wait_until
from test_tui_support import SIZE, make_app

from townhall.debate.reading_pace import STEPS, ReadingPace, reading_seconds
from townhall.engine.scripted import ScriptedEngine
from townhall.tui.config import TuiConfig, config_path

REPLIES = ["one two three four five six", "seven eight nine", "ten eleven twelve thirteen"]
FIXED = 1_767_225_600.0


def header_text(app) -> str:
    return app.debate_screen.header.render().plain


async def test_the_gap_between_turns_follows_the_words_and_the_pace() -> None:
    pace = ReadingPace(3_000)
    app = make_app(ScriptedEngine(REPLIES, delay=0.001), turns=3, clock=lambda: FIXED, pace=pace)
    on_hold: list[tuple[int, int]] = []  # (the turn held, how many turns exist) as each hold begins

    def seen() -> None:
        if pace.holding is not None and (scheduler := app.debate_screen.scheduler) is not None:
            on_hold.append((pace.holding.index, len(scheduler.turns)))

    pace.subscribe(seen)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.debate_screen.state == "finished", timeout=20)
        await pilot.pause()
        turns = app.debate_screen.scheduler.turns
        assert [h.node for h in pace.holds] == [t.node for t in turns]
        assert [(h.words, h.shown) for h in pace.holds] == [(6, 0.0), (3, 0.0), (4, 0.0)]
        assert [h.seconds for h in pace.holds] == [reading_seconds(n, 3_000) for n in (6, 3, 4)]
        # Each hold comes after its turn ends and before the next one starts.
        assert on_hold == [(0, 1), (1, 2), (2, 3)]
        assert "3000 wpm" in header_text(app)


async def test_keys_change_the_pace_and_the_header_shows_it() -> None:
    pace = ReadingPace(60)  # six words: a six-second hold, ended here by the keys
    app = make_app(ScriptedEngine(REPLIES, delay=0.001), turns=2, clock=lambda: FIXED, pace=pace, save_settings=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: pace.holding is not None, timeout=20)
        await wait_until(lambda: "60 wpm · reading 6s" in header_text(app), timeout=5)
        assert len(app.debate_screen.scheduler.turns) == 1, "the next speaker waits for the reader"
        await pilot.press("equals_sign")
        assert pace.wpm == STEPS[0]
        await wait_until(lambda: "120 wpm · reading 3s" in header_text(app), timeout=5)
        await pilot.press("0")  # flat out: the hold ends, the debate runs on
        await wait_until(lambda: app.debate_screen.state == "finished", timeout=20)
        await pilot.pause()
        assert pace.flat_out and "flat out" in header_text(app)
        assert len(pace.holds) == 1
        await pilot.press("minus")
        assert pace.wpm == STEPS[-1]
        await pilot.press("plus")
        assert pace.flat_out
        await pilot.press("0")
        assert pace.wpm == STEPS[-1], "flat out toggles back to the pace before"
        await pilot.pause()
        assert "900 wpm" in header_text(app)
    assert tomllib.loads(config_path().read_text())["pace_wpm"] == 900, "a pace set by the keys is remembered"


def test_the_tui_paces_by_default_and_a_window_built_without_a_pace_is_flat_out() -> None:
    from townhall.debate.session import SessionPlan
    from townhall.tui.app import TownhallApp
    from test_tui_support import personas, spec

    assert TuiConfig().reading_pace().wpm == 240, "`townhall tui` paces by default"
    assert TuiConfig(pace_wpm=0).reading_pace().flat_out
    app = TownhallApp(SessionPlan(spec(turns=1), personas()), engine=ScriptedEngine(REPLIES), save_settings=False)
    assert app.pace.flat_out
