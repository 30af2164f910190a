"""The debate screen's view-model without Textual: feed it events, read its state."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from townhall.debate.ballot import VOTE_PHASE
from townhall.domain.branches import TurnTree
from townhall.domain.events import (
    BranchSwitched,
    MinutesWritten,
    OutcomeDecided,
    Paused,
    Resumed,
    SessionEnded,
    SessionStarted,
    StanceMeasured,
    TurnFailed,
    TurnFinished,
    TurnStarted,
    Vote,
)
from townhall.domain.personas import Persona
from townhall.domain.turns import Turn, TurnKind, TurnStatus
from townhall.engine.scripted import ScriptedEngine
from townhall.tui.branch_keys import BranchKeys
from townhall.tui.view_model import DebateViewModel, TurnMark, counts_as_debate_turn, next_stats_position, turn_marks

SID = "vm"


class RecordingView:
    """A `DebateView` that writes down what it was asked to draw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.states: list[str] = []

    def start_turn(self, event: TurnStarted, look: tuple[str, str]) -> None:
        self.calls.append(("start", event.index))

    def finish_turn(self, turn: Turn, look: tuple[str, str]) -> None:
        self.calls.append(("finish", turn.index))

    def redraw_from(self, index: int, turns: list[Turn]) -> None:
        self.calls.append(("redraw", index))

    def show_marks(self, marks: dict[str, TurnMark]) -> None:
        self.calls.append(("marks", len(marks)))

    def show_turn_stats(self, turn: Turn) -> None:
        self.calls.append(("stats", turn.index))

    def say(self, text: str, **how: Any) -> None:
        self.calls.append(("say", text))

    def show_error(self, title: str, text: str) -> None:
        self.calls.append(("error", (title, text)))

    def show_record_error(self, session_id: str, text: str) -> None:
        self.calls.append(("record_error", (session_id, text)))

    def show_state(self, model: DebateViewModel) -> None:
        self.states.append(model.state)

    def said(self) -> list[str]:
        return [what for kind, what in self.calls if kind == "say"]


class FakeScheduler:
    """What the view-model reads of a scheduler: the path, the tree, who speaks next."""

    session_id = SID

    def __init__(self) -> None:
        self.turns: list[Turn] = []
        self.tree = TurnTree.linear([])
        self.next_speaker: str | None = "Walt"
        self.status = "running"
        self.steered: list[str] = []

    def agent_key(self, name: str) -> str:
        return name.casefold()

    def say(self, turn: Turn) -> None:
        self.turns.append(turn)
        self.tree = TurnTree.linear(self.turns)

    def pause(self) -> None:
        self.steered.append("pause")

    def resume(self) -> None:
        self.steered.append("resume")

    def call_vote(self) -> None:
        self.steered.append("vote")


def persona(name: str, moderator: bool = False) -> Persona:
    return Persona(name=name, title=f"{name} of Elm Street", bio="Lives here.", style="Plain.", moderator=moderator)


def attached(ballot: bool = True, probe: str | None = "logits") -> tuple[DebateViewModel, RecordingView, FakeScheduler]:
    view, scheduler = RecordingView(), FakeScheduler()
    model = DebateViewModel(view, clock=iter(range(100)).__next__)
    model.start_run(reopened=False)
    model.set_members([persona("Margaret", moderator=True), persona("Stacy"), persona("Walt")], chair="Margaret")
    model.engine_ready(probe, ballot)
    model.attach(scheduler, ScriptedEngine(["x"]))  # type: ignore[arg-type]
    model.handle(SessionStarted(SID, {}, (), ScriptedEngine(["x"]).info, 0.0))
    return model, view, scheduler


def said(scheduler: FakeScheduler, model: DebateViewModel, speaker: str, text: str = "a few words",
         kind: TurnKind = TurnKind.AGENT, **extra: Any) -> Turn:
    """One whole turn through the view-model: started, then finished."""
    turn = Turn(len(scheduler.turns), speaker, kind, text, TurnStatus.COMPLETE, started_at=1.0, finished_at=3.0,
                **extra)
    model.handle(TurnStarted(SID, turn.index, speaker, kind, 0.0, phase=turn.phase, node=turn.node))
    scheduler.say(turn)
    model.handle(TurnFinished(SID, turn))
    return turn


def test_a_turn_moves_the_count_the_roles_and_the_members() -> None:
    model, view, scheduler = attached()
    assert model.state == "debating" and model.probing
    said(scheduler, model, "Stacy", "four words said here")
    assert model.turn == 1 and model.counted == 1
    assert (model.speaking, model.next_up) == (None, "Walt")
    stacy = model.members["Stacy"]
    assert (stacy.turns, stacy.words, stacy.talk_s) == (1, 4, 2.0)
    assert [kind for kind, _ in view.calls] == ["start", "marks", "finish", "stats", "marks"]
    assert view.states[-1] == "debating"


def test_turn_started_shows_the_next_number_before_it_is_said() -> None:
    model, _, _ = attached()
    model.handle(TurnStarted(SID, 0, "Stacy", TurnKind.AGENT, 0.0))
    assert model.turn == 1 and model.counted == 0 and model.speaking == "Stacy"


def test_what_turn_i_of_n_counts() -> None:
    assert counts_as_debate_turn(Turn(0, "Stacy", TurnKind.AGENT))
    assert counts_as_debate_turn(Turn(0, "Margaret", TurnKind.MODERATOR))
    assert not counts_as_debate_turn(Turn(0, "Margaret", TurnKind.MODERATOR, phase=VOTE_PHASE))
    assert not counts_as_debate_turn(Turn(0, "audience", TurnKind.AUDIENCE))
    assert not counts_as_debate_turn(Turn(0, "Stacy", TurnKind.AGENT, status=TurnStatus.SKIPPED))
    assert not counts_as_debate_turn(Turn(0, "clerk", TurnKind.SUMMARY))


def test_a_skipped_turn_counts_for_nobody_and_a_failed_one_says_why() -> None:
    model, view, scheduler = attached()
    skipped = Turn(0, "Stacy", TurnKind.AGENT, "", TurnStatus.SKIPPED)
    scheduler.say(skipped)
    model.handle(TurnFinished(SID, skipped))
    assert model.members["Stacy"].turns == 0 and model.turn == 0
    failed = Turn(1, "Walt", TurnKind.AGENT, "", TurnStatus.FAILED, error="boom")
    scheduler.say(failed)
    model.handle(TurnFailed(SID, failed, "boom"))
    assert "boom" in view.said() and model.members["Walt"].turns == 1


def test_pause_resume_and_the_end() -> None:
    model, view, _ = attached()
    model.handle(Paused(SID, 0.0))
    assert model.state == "paused"
    model.handle(Resumed(SID, 0.0))
    assert model.state == "debating"
    model.handle(SessionEnded(SID, "max_turns", 0.0, 3))
    assert model.state == "finished" and model.end_reason == "max_turns"
    assert model.steerable() is None and view.said()[-1] == "The debate is not running."


def test_an_ended_run_with_an_error_says_it_once() -> None:
    model, view, _ = attached()
    model.handle(SessionEnded(SID, "error", 0.0, 0, error="RuntimeError: no"))
    assert model.state == "error" and ("error", ("The debate ended: error", "RuntimeError: no")) in view.calls
    model.finished(SID, "error", None)  # SessionEnded has shown it: nothing more
    assert [c for c in view.calls if c[0] == "error"] == [("error", ("The debate ended: error", "RuntimeError: no"))]


def test_a_late_finish_of_another_session_changes_nothing() -> None:
    model, _, _ = attached()
    model.finished("old", "max_turns", None)
    assert model.state == "debating"


def test_events_of_another_session_are_ignored() -> None:
    model, _, _ = attached()
    model.handle(Paused("someone-else", 0.0))
    assert model.state == "debating"


def test_stances_outcome_and_minutes() -> None:
    model, view, _ = attached()
    model.handle(StanceMeasured(SID, "Walt", 1, 1, 0.7, "logits", 0.0))
    model.handle(StanceMeasured(SID, "Margaret", 1, 1, 0.7, "logits", 0.0))  # the chair takes no side
    assert model.members["Walt"].stances == [0.7] and model.members["Margaret"].stances == []
    assert model.can_call_vote()
    model.call_vote()
    assert model.vote_called and not model.can_call_vote()
    outcome = OutcomeDecided(SID, (Vote("Walt", "for", 0.7),), 1, 0, "carried", "The motion carries, 1 to 0.", 0.0)
    model.handle(outcome)
    model.handle(MinutesWritten(SID, "Minutes", 0.0))
    assert model.outcome is outcome and model.minutes == "Minutes"
    assert "The minutes are written: press m to read them." in view.said()


def test_no_vote_without_a_ballot() -> None:
    model, view, scheduler = attached(ballot=False)
    assert not model.probing and not model.can_call_vote()
    model.call_vote()
    assert scheduler.steered == []
    assert view.said()[-1] == "No vote to call: this town hall holds no ballot (ballot = false)."


def test_toggle_pause_says_pausing_while_a_turn_runs() -> None:
    model, _, scheduler = attached()
    model.toggle_pause()
    assert scheduler.steered == ["pause"] and model.state == "pausing"
    model.toggle_pause()
    assert scheduler.steered == ["pause", "resume"] and model.state == "debating"


def test_a_branch_switch_recounts_from_the_new_path() -> None:
    model, view, scheduler = attached()
    first = said(scheduler, model, "Stacy", "one two")
    said(scheduler, model, "Walt", "three")
    model.handle(BranchSwitched(SID, 2, (first,), 1, 0.0))
    assert model.turn == 1 and model.members["Walt"].words == 0 and model.members["Stacy"].words == 2
    assert ("redraw", 1) in view.calls


def test_reopening_keeps_what_this_screen_counted() -> None:
    model, _, scheduler = attached()
    turns = [said(scheduler, model, "Stacy"), said(scheduler, model, "Walt")]
    model.start_run(reopened=True)
    assert model.turn == 2 and model.state == "loading"  # until the recount, the header keeps its number
    model.recount(turns)
    assert model.turn == 2 and model.counted == 2
    model.start_run(reopened=False)
    model.recount(turns)
    assert model.turn == 0  # another session's turns were not said here


def test_marks_number_the_alternatives() -> None:
    a = Turn(0, "Stacy", TurnKind.AGENT)
    b = Turn(0, "Stacy", TurnKind.AGENT, author="watcher")
    tree = TurnTree.linear([a])
    tree.nodes[b.node] = b
    assert turn_marks(tree, [b])[b.node] == TurnMark(2, 2, True)


def test_branch_keys_queue_on_a_running_scheduler_and_refuse_what_cannot_change() -> None:
    model, view, scheduler = attached()
    said(scheduler, model, "Stacy")
    scripted = said(scheduler, model, "Margaret", kind=TurnKind.MODERATOR, scripted=True)
    ops: list[str] = []
    scheduler.fork = lambda index: ops.append(f"fork {index}")  # type: ignore[attr-defined]
    keys = BranchKeys(model, lambda: scheduler, lambda: True)  # type: ignore[arg-type,return-value]
    assert keys.fork(0) is None and ops == ["fork 0"] and view.said()[-1] == "New branch after turn #0."
    assert keys.regenerate(scripted.index) is None
    assert view.said()[-1].startswith("Turn #1 was not generated")
    assert keys.target(7) is None and view.said()[-1] == "No turn to act on yet."
    assert keys.edit(0, "a few words", "a few words") is None and view.said()[-1] == "Unchanged: nothing to save."


def test_branch_keys_after_the_end_need_a_database() -> None:
    model, view, scheduler = attached()
    said(scheduler, model, "Stacy")
    model.handle(SessionEnded(SID, "max_turns", 0.0, 1))
    keys = BranchKeys(model, lambda: scheduler, lambda: False)  # type: ignore[arg-type,return-value]
    assert keys.fork(0) is None
    assert view.said()[-1] == "The debate has ended and no database holds it, so it cannot go on."


def test_the_stats_pane_cycles_and_skips_the_right_when_narrow() -> None:
    cycle = [next_stats_position(p, narrow=False) for p in ("right", "bottom", "hidden")]
    assert cycle == ["bottom", "hidden", "right"]
    assert next_stats_position("right", narrow=True) == "bottom"  # shown hidden: the next is the bottom
    assert next_stats_position("hidden", narrow=True) == "bottom"


def test_the_view_model_loads_no_textual() -> None:
    code = "import sys, townhall.tui.view_model, townhall.tui.branch_keys; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
