"""Pilot tests of the branch keys: select a turn, regenerate, flip alternatives, edit, fork,
and the same keys after the debate ended. Real Scheduler, real SQLite store, scripted engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import wait_until
from test_tui_support import SIZE, make_app, screen_text
from textual.widgets import TextArea

from townhall.engine.scripted import ScriptedEngine
from townhall.store import Store
from townhall.tui.screens.edit_turn import EditTurnScreen
from townhall.tui.widgets.transcript import TurnView
from townhall.domain.turns import WATCHER, TurnStatus

# Replies cycle: every generation takes the next one, so a regenerated turn reads differently.
LINES = [f"Line {n}: [bold]x{n}[/] and more words" for n in range(1, 40)]


@pytest.fixture
def store(tmp_path: Path):
    store = Store.open(tmp_path / "townhall.db")
    yield store
    store.close()


def views(app) -> dict[int, TurnView]:
    return app.debate_screen.transcript.views


def settled(app, count: int) -> bool:
    """`count` turns on the path, each drawn as recorded."""
    screen = app.debate_screen
    shown = views(app)
    return (
        screen.scheduler is not None
        and len(screen.scheduler.turns) == count
        and len(shown) == count
        and all(v.status is not TurnStatus.STREAMING for v in shown.values())
    )


def label(app, index: int) -> str:
    return views(app)[index]._label_text().plain


async def paused_after(app, pilot, turns: int) -> None:
    """Pause a running debate once `turns` turns are said (the scheduler pauses between turns)."""
    screen = app.debate_screen
    await wait_until(lambda: screen.scheduler is not None and len(screen.scheduler.turns) >= 1)
    await pilot.press("p")
    await wait_until(lambda: screen.scheduler.status == "paused", timeout=20)
    await wait_until(lambda: settled(app, len(screen.scheduler.turns)))


async def test_selection_moves_with_keys_and_click_and_not_while_typing() -> None:
    app = make_app(ScriptedEngine(LINES, delay=0.001), turns=3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.debate_screen.state == "finished", timeout=20)
        await wait_until(lambda: settled(app, 3))
        transcript = app.debate_screen.transcript
        assert transcript.selected is None and transcript.target() == 2  # nothing selected: the last
        await pilot.press("up")
        assert transcript.selected == 2 and views(app)[2].has_class("-selected")
        await pilot.press("left_square_bracket")
        assert transcript.selected == 1
        assert views(app)[1].has_class("-selected") and not views(app)[2].has_class("-selected")
        await pilot.press("down", "down")  # past the last: follow the debate again
        assert transcript.selected is None and not any(v.has_class("-selected") for v in views(app).values())
        await pilot.click(views(app)[0])
        assert transcript.selected == 0
        await pilot.press("i")  # into the interjection box: the arrows move its cursor instead
        await pilot.press("up")
        assert transcript.selected == 0
        await pilot.press("escape", "escape")  # leave the box, then drop the selection
        assert transcript.selected is None


async def test_regenerate_then_flip_back(store: Store) -> None:
    app = make_app(ScriptedEngine(LINES, delay=0.001), store=store, turns=None)
    async with app.run_test(size=SIZE) as pilot:
        await paused_after(app, pilot, 2)
        screen = app.debate_screen
        count = len(screen.scheduler.turns)
        last = count - 1
        old = screen.scheduler.turns[last].content
        assert "‹" not in label(app, last)
        await pilot.press("r")  # the last turn (nothing selected)
        await wait_until(lambda: "‹ 2/2 ›" in label(app, last) and settled(app, count), timeout=20)
        new = screen.scheduler.turns[last].content
        assert new != old and views(app)[last].text == new
        assert new in screen_text(app) or new.split()[0] in screen_text(app)
        assert screen.scheduler.status == "paused"  # a regenerate while paused stays paused
        await pilot.press("up")  # select it, then flip back to the first alternative
        await pilot.press("left")
        await wait_until(lambda: "‹ 1/2 ›" in label(app, last) and views(app)[last].text == old, timeout=20)
        assert screen.scheduler.turns[last].content == old
        await pilot.press("right")
        await wait_until(lambda: "‹ 2/2 ›" in label(app, last) and views(app)[last].text == new, timeout=20)
        # Model text with markup characters shows literally, in the alternative too.
        assert "[bold]x" in screen_text(app)


async def test_edit_through_the_dialog_marks_the_turn() -> None:
    app = make_app(ScriptedEngine(LINES, delay=0.001), turns=None)
    async with app.run_test(size=SIZE) as pilot:
        await paused_after(app, pilot, 1)
        screen = app.debate_screen
        await pilot.press("up")  # select the last turn
        index = screen.transcript.selected
        assert index is not None
        original = screen.scheduler.turns[index].content
        await pilot.press("e")
        await wait_until(lambda: isinstance(app.screen, EditTurnScreen))
        area = app.screen.query_one(TextArea)
        assert area.text == original
        await pilot.press("ctrl+s")  # unchanged: nothing happens but a notice
        await wait_until(lambda: not isinstance(app.screen, EditTurnScreen))
        assert len(screen.scheduler.tree.branches) == 1
        await pilot.press("e")
        await wait_until(lambda: isinstance(app.screen, EditTurnScreen))
        app.screen.query_one(TextArea).text = "The watcher says: [red]keep[/red] the yard\nas it is."
        await pilot.press("ctrl+s")
        await wait_until(lambda: "✎ edited" in label(app, index), timeout=20)
        turn = screen.scheduler.turns[index]
        assert turn.author == WATCHER and turn.content.startswith("The watcher says: [red]keep[/red]")
        assert views(app)[index].text == turn.content
        assert "[red]keep[/red]" in screen_text(app)
        assert "‹ 2/2 ›" in label(app, index)  # the original is kept as an alternative
        assert "branch 2 of 2" in screen_text(app)


async def test_fork_shows_the_branch_in_the_header() -> None:
    app = make_app(ScriptedEngine(LINES, delay=0.001), turns=None)
    async with app.run_test(size=SIZE) as pilot:
        await paused_after(app, pilot, 1)
        screen = app.debate_screen
        assert "branch" not in screen.header.render().plain
        await pilot.press("up")
        await pilot.press("f")
        await wait_until(lambda: screen.header.branch == "branch 2 of 2", timeout=20)
        assert "branch 2 of 2" in screen_text(app)
        assert screen.scheduler.tree.current == 2


async def test_regenerate_after_the_debate_ended_resumes(store: Store) -> None:
    app = make_app(ScriptedEngine(LINES, delay=0.001), store=store, turns=3)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.debate_screen
        await wait_until(lambda: screen.state == "finished", timeout=20)
        await wait_until(lambda: settled(app, 3))
        old = screen.scheduler.turns[2].content
        first = screen.session
        await pilot.press("r")
        await wait_until(lambda: screen.session is not first and screen.state == "finished", timeout=30)
        await wait_until(lambda: "‹ 2/2 ›" in label(app, 2), timeout=20)
        assert views(app)[2].text != old and views(app)[2].text == screen.scheduler.turns[2].content
        assert len(views(app)) == 3  # applied, then ended: no turn beyond the op's own
    tree = store.tree("tui-test")
    assert len(tree.branches) == 2 and tree.current == 2
    assert [t.content for t in store.turns("tui-test", branch=1)][2] == old


async def test_sessions_browser_opens_and_resumes_any_branch(store: Store) -> None:
    """The tree lists each branch (model text literal); open shows the highlighted branch's
    turns, resume makes it current in the record and goes on from it."""
    from textual.widgets import Tree

    from townhall.tui.screens.sessions import ReplayScreen, SessionsScreen

    app = make_app(ScriptedEngine(LINES, delay=0.001), store=store, turns=3)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.debate_screen
        await wait_until(lambda: screen.state == "finished", timeout=20)
        await wait_until(lambda: settled(app, 3))
        first_text = screen.scheduler.turns[2].content
        first = screen.session
        await pilot.press("r")  # turn 2 again, on branch 2 (after the end: through resume)
        await wait_until(lambda: screen.session is not first and screen.state == "finished", timeout=30)
        await wait_until(lambda: "‹ 2/2 ›" in label(app, 2))
        second_text = screen.scheduler.turns[2].content
        await pilot.press("ctrl+o")
        await wait_until(lambda: isinstance(app.screen, SessionsScreen))
        await pilot.pause()
        tree = app.screen.query_one(Tree)
        rows = [node for node in tree.root.children] + [c for node in tree.root.children for c in node.children]
        labels = {node.data: node.label.plain for node in rows}
        assert set(labels) == {1, 2}
        assert labels[2].startswith("● branch 2 · regenerate from #2 · 3 turns")
        assert "[bold]x" in labels[1] or "[bold]x" in labels[2]  # first words as written, no markup
        assert tree.cursor_node is not None and tree.cursor_node.data == 2  # the current one
        tree.move_cursor(next(node for node in rows if node.data == 1))
        await pilot.press("o")
        await wait_until(lambda: isinstance(app.screen, ReplayScreen) and app.screen.done)
        text = screen_text(app)
        assert first_text.split(":")[0] in text and second_text.split(":")[0] not in text
        await pilot.press("escape")
        await wait_until(lambda: isinstance(app.screen, SessionsScreen))
        await pilot.press("u")  # resume branch 1
        await wait_until(lambda: app.screen is screen and screen.state == "finished" and screen.session is not None,
                         timeout=30)
        await wait_until(lambda: settled(app, len(screen.scheduler.turns)))
        assert store.tree("tui-test").current == 1
        assert screen.scheduler.turns[2].content == first_text
        assert views(app)[2].text == first_text and "‹ 1/2 ›" in label(app, 2)


async def test_flip_after_the_end_holds_no_new_ballot_and_shows_the_branch_outcome(store: Store) -> None:
    """A regenerate after the end gets its own ballot; flipping back says nothing new, so no
    second announcement, and the banner shows branch 1's recorded result again."""
    from townhall.engine.scripted import even_odds

    app = make_app(ScriptedEngine(LINES, delay=0.001, probe_script=even_odds), store=store, turns=2)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.debate_screen
        await wait_until(lambda: screen.state == "finished" and screen.outcome is not None, timeout=30)
        await wait_until(lambda: settled(app, len(screen.scheduler.turns)))
        path = [t.node for t in screen.scheduler.turns]
        decided = store.outcome_of("tui-test", branch=1)
        assert decided is not None and decided.decided_at is not None
        first = screen.session
        await pilot.press("up", "up")  # the second debate turn (the last is the chair's announcement)
        index = screen.transcript.selected
        await pilot.press("r")
        await wait_until(lambda: screen.session is not first and screen.state == "finished", timeout=30)
        await wait_until(lambda: index in views(app) and "‹ 2/2 ›" in label(app, index), timeout=20)
        assert screen.outcome is not None  # branch 2's own ballot
        second = screen.session
        await pilot.press("left")
        await wait_until(lambda: screen.session is not second and screen.state == "finished", timeout=30)
        await wait_until(lambda: "‹ 1/2 ›" in label(app, index), timeout=20)
        await wait_until(lambda: settled(app, len(path)))
        assert [t.node for t in screen.scheduler.turns] == path  # the same path, nothing added
        again = store.outcome_of("tui-test", branch=1)
        assert again is not None and again.decided_at == decided.decided_at  # no second ballot on branch 1
        assert screen.outcome is not None and screen.banner.has_class("-shown")
        assert screen.outcome.announcement in screen_text(app)
