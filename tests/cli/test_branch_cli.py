"""The branch commands on a real SQLite file: `fork`, `edit`, `sessions branches`, and `--branch`
on `sessions show`, `export` and `resume` (the engine the factory builds swapped for a scripted one)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from store_support import BRANCHED_ID, HOSTILE, record_branched, record_debate
from townhall.cli import app
from townhall.cli.store_cmds import branch_lines
from townhall.engine.scripted import ScriptedEngine
from townhall.store import Store
from townhall.domain.turns import WATCHER

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "branches.db"
    with Store.open(path) as store:
        asyncio.run(record_debate(store, "lin111", [("Ada", "one"), ("Bo", HOSTILE), ("Ada", "three")], end="stopped"))
        asyncio.run(record_branched(store))
    return path


def _ok(args: list[str], **kwargs: object) -> str:
    result = runner.invoke(app, args, **kwargs)  # type: ignore[arg-type]
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _fails(args: list[str], expected: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert expected in str(result.exception), result.exception


def test_fork_makes_a_current_branch_and_says_how_to_go_on(db: Path) -> None:
    out = _ok(["fork", "lin1", "--at", "1", "--db", str(db)])
    assert out.strip() == ("Made branch 2 of session lin111 from branch 1, keeping turns 0-1; it is now current: "
                           "`townhall resume lin111` goes on from turn 1.")
    with Store.open(db) as store:
        assert store.tree("lin111").current == 2 and len(store.turns("lin111")) == 2
    data = json.loads(_ok(["fork", "lin1", "--at", "0", "--branch", "1", "--db", str(db), "--json"]))
    assert data == {"session": "lin111", "branch": 3, "parent": 1, "at": 0}
    _fails(["fork", "lin1", "--at", "7", "--db", str(db)], "session lin111 has no turn 7 (its branch 3 has 1 turns")
    _fails(["fork", "lin1", "--at", "0", "--branch", "9", "--db", str(db)], "has no branch 9 (branches: 1, 2, 3)")


def test_a_branch_made_after_the_vote_says_it_has_none_yet(tmp_path: Path) -> None:
    path = tmp_path / "voted.db"
    with Store.open(path) as store:
        asyncio.run(record_debate(store, "vot111", [("Ada", "one"), ("Bo", "two")], outcome=True))
    out = _ok(["edit", "vot1", "1", "--text", "Two, said better.", "--db", str(path)])
    assert "this branch has none yet: `townhall vote vot111` holds it." in out
    with Store.open(path) as store:
        assert store.outcome_of("vot111") is None and store.outcome_of("vot111", 1) is not None
    out = _ok(["fork", "vot1", "--at", "0", "--branch", "1", "--db", str(path)])
    assert "`townhall vote vot111` holds it." in out
    unvoted = _ok(["fork", "vot1", "--at", "0", "--db", str(path)])  # from branch 2, which has no vote
    assert "townhall vote" not in unvoted


def test_edit_with_text_or_the_editor(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _ok(["edit", "lin1", "2", "--text", "Three, said better.", "--db", str(db)])
    assert out.startswith("Made branch 2 of session lin111: turn 2 (Ada) now says your text; it is current")
    assert "`townhall resume lin111` goes on from there" in out
    # no --text: $EDITOR gets the turn's text; this one appends a line to it
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nprintf "\\nand more" >> "$1"\n')
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("EDITOR", str(editor))
    monkeypatch.setenv("VISUAL", str(editor))
    _ok(["edit", "lin1", "0", "--branch", "1", "--db", str(db)])
    with Store.open(db) as store:
        [first] = store.turns("lin111")
        assert (first.content, first.author, first.branch) == ("one\n\nand more", WATCHER, 3)
        assert [t.content for t in store.turns("lin111", branch=2)][2] == "Three, said better."
    # an editor that changes nothing, or empty text, is one line and makes nothing
    editor.write_text("#!/bin/sh\ntrue\n")
    _fails(["edit", "lin1", "0", "--db", str(db)], "is the same as its current text")
    _fails(["edit", "lin1", "0", "--text", "   ", "--db", str(db)], "is empty")
    _fails(["edit", "lin1", "5", "--text", "x", "--db", str(db)], "session lin111 has no turn 5")
    with Store.open(db) as store:
        assert store.tree("lin111").numbers() == [1, 2, 3]
    assert os.environ["EDITOR"] == str(editor)


def test_sessions_branches_is_a_tree_that_fits_80_columns(db: Path) -> None:
    with Store.open(db) as store:
        store.edit_turn("lin111", 1, HOSTILE + " " + "long " * 30)
        store.fork(BRANCHED_ID, 3, branch=1)
    out = _ok(["sessions", "branches", BRANCHED_ID, "--db", str(db)])
    lines = out.splitlines()
    assert lines[1:] == [
        "1  start, 4 turns · #0 Ada: Steel bridges last",
        "├─ 2  regenerate of 1 after #1, 3 turns · #2 Ada: Concrete is the answer",
        "│  ├─ 3  regenerate of 2 after #1, 3 turns · #2 Ada: the the the the",
        "│  └─ 4  edit of 2 after #0, 2 turns · #1 Bo: Wood is cheaper and greener",
        "└─ 5 *  fork of 1 after #3, 4 turns · (nothing said yet)",
    ]
    hostile = _ok(["sessions", "branches", "lin111", "--db", str(db)]).splitlines()
    assert all(len(line) <= 80 for line in hostile)
    assert hostile[2].startswith("└─ 2 *  edit of 1 after #0, 2 turns · #1 Bo: <script>alert('x')</script>")
    assert hostile[2].endswith("…") and "\x1b" not in hostile[2]  # cut to fit, escapes neutralised
    data = json.loads(_ok(["sessions", "branches", BRANCHED_ID, "--db", str(db), "--json"]))
    assert data["current"] == 5 and [b["number"] for b in data["branches"]] == [1, 2, 3, 4, 5]
    assert data["branches"][3] == {**data["branches"][3], "parent": 2, "reason": "edit", "fork_index": 0, "turns": 2}
    assert data["branches"][3]["first_turn"]["content"] == "Wood is cheaper and greener"
    assert data["branches"][4]["first_turn"] is None


def test_branch_lines_keep_model_text_literal() -> None:
    from townhall.domain.branches import TurnTree
    from townhall.domain.turns import Turn, TurnKind

    tree = TurnTree.linear([Turn(0, "[bold]Ada[/bold]", TurnKind.AGENT, content="[red]x[/red] \x1b[2J")])
    assert branch_lines(tree) == ["1 *  start, 1 turns · #0 [bold]Ada[/bold]: [red]x[/red] \ufffd[2J"]


def test_show_and_export_take_a_branch(db: Path) -> None:
    current = _ok(["sessions", "show", BRANCHED_ID, "--db", str(db)])
    assert "Branch 4 of 4 (current)" in current and "Bo: Wood is cheaper and greener [edited by the watcher]" in current
    assert "Vote:" not in current  # branch 4 was never voted on
    second = _ok(["sessions", "show", BRANCHED_ID, "--branch", "2", "--db", str(db)])
    assert "Branch 2 of 4 (current: 4)" in second and "Ada: Concrete is the answer" in second
    assert "Vote: the motion tied" in second and "Minutes of the concrete branch." in second
    shown = json.loads(_ok(["sessions", "show", BRANCHED_ID, "--branch", "1", "--db", str(db), "--json"]))
    assert shown["branch"] == 1 and [t["content"] for t in shown["turns"]][2:] == ["Steel wins in floods",
                                                                                   "Floods are rare here"]
    assert shown["outcome"] is None and [s["turn_index"] for s in shown["stances"]] == [1, 3]
    text = _ok(["export", BRANCHED_ID, "-f", "txt", "--branch", "3", "--db", str(db)])
    assert text == "Ada: Steel bridges last\n\nBo: Wooden bridges are cheap\n"  # its degenerate turn is not spoken
    _fails(["export", "--all", "--branch", "2", "--db", str(db)], "does not work with --all")
    _fails(["sessions", "show", BRANCHED_ID, "--branch", "7", "--db", str(db)], "has no branch 7")


def test_resume_on_a_branch_switches_then_goes_on(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = ScriptedEngine(["Back on the concrete branch."])
    monkeypatch.setattr("townhall.engine.factory.build_engine", lambda config: engine)
    out = _ok(["resume", BRANCHED_ID, "--branch", "2", "--turns", "1", "--db", str(db)])
    assert "Back on the concrete branch." in out
    with Store.open(db) as store:
        tree = store.tree(BRANCHED_ID)
        assert tree.current == 2 and tree.numbers() == [1, 2, 3, 4]
        path = store.turns(BRANCHED_ID)
        assert [t.content.strip() for t in path][2:] == ["Concrete is the answer", "Back on the concrete branch."]
        assert path[3].branch == 2 and path[3].parent == path[2].node
        assert [t.content for t in store.turns(BRANCHED_ID, branch=4)] == ["Steel bridges last",
                                                                          "Wood is cheaper and greener"]


def test_search_names_the_branches_holding_a_hit(db: Path) -> None:
    out = _ok(["search", '"steel bridges"', "--db", str(db)])
    assert "turn 0 on branches 1, 2, 3, 4 · Ada" in out
    out = _ok(["search", "answer", "--db", str(db)])
    assert "turn 2 on branch 2 · Ada" in out
    assert " on branch" not in _ok(["search", "three", "--db", str(db)])  # a one-branch session says nothing
    hits = json.loads(_ok(["search", "greener", "--db", str(db), "--json"]))
    assert [(h["branch"], h["branches"]) for h in hits] == [(4, [4])]


def test_sessions_list_says_which_branch_is_current(db: Path) -> None:
    listed = {s["id"]: s for s in json.loads(_ok(["sessions", "list", "--db", str(db), "--json"]))}
    assert (listed[BRANCHED_ID]["turns"], listed[BRANCHED_ID]["current_branch"], listed[BRANCHED_ID]["branch_count"]) \
        == (2, 4, 4)
    assert (listed["lin111"]["turns"], listed["lin111"]["branch_count"]) == (3, 1)
    wide = runner.invoke(app, ["sessions", "list", "--db", str(db)], env={"COLUMNS": "160"})
    assert "branch" in wide.output and "4 of 4" in wide.output


def test_vote_on_a_branch_is_kept_with_that_branch(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from collections.abc import Sequence

    def lean(agent_id: str | None, prompt: str, choices: Sequence[str]) -> Sequence[float]:
        return [0.3, 0.1] if agent_id == "Ada" else [0.25, 0.05]

    engine = ScriptedEngine(["fine"], probe_script=lean)  # type: ignore[arg-type]
    monkeypatch.setattr("townhall.engine.factory.build_engine", lambda config: engine)
    out = json.loads(_ok(["vote", BRANCHED_ID, "--branch", "1", "--db", str(db), "--json"]))
    assert (out["result"], out["votes_for"], out["votes_against"]) == ("carried", 2, 0)
    assert all("Floods are rare here" in prompt for _, prompt, _ in engine.probes)  # branch 1's debate
    with Store.open(db) as store:
        first, second = store.outcome_of(BRANCHED_ID, branch=1), store.outcome_of(BRANCHED_ID, branch=2)
        assert first is not None and first.result == "carried" and store.tree(BRANCHED_ID).current == 1
        assert second is not None and second.result == "tied"  # the other branch's vote is untouched
        assert store.turns(BRANCHED_ID)[-1].speaker == "Cy" and len(store.turns(BRANCHED_ID, branch=2)) == 3
