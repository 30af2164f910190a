"""The branch keys (r regenerate, e edit, f fork, ← → flip), without Textual.

Each key picks a turn, checks it can act on it, and builds the operation; the operation
then goes to the running scheduler (applied at its next turn boundary), or, when the
debate has ended, it reopens the stored session (`session.plan_branch_op`) with the
operation queued first. Which of the two, and every warning on the way, is decided here;
the screen only picks the turn and shows what comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from townhall.debate.session import BranchKeyOp, SessionPlan, SessionScheduler, plan_branch_op
from townhall.domain.turns import Turn, TurnKind
from townhall.errors import TownhallError
from townhall.tui.view_model import DebateViewModel


@dataclass(frozen=True)
class Reopen:
    """An ended session to run again with `op` queued first: it applies the op, then ends."""

    plan: SessionPlan
    op: BranchKeyOp


class BranchKeys:
    """Turns a branch key into an op on the running scheduler, or into a `Reopen`.

    `scheduler` and `running` read the screen's current session (None while loading or
    after it was stopped); the view-model says why a key did nothing.
    """

    def __init__(
        self,
        model: DebateViewModel,
        scheduler: Callable[[], SessionScheduler | None],
        running: Callable[[], bool],
    ) -> None:
        self.model = model
        self.scheduler = scheduler
        self.running = running

    def target(self, index: int | None) -> Turn | None:
        """The turn at `index` (the selected one, or the last), as the scheduler holds it."""
        scheduler = self.scheduler()
        turns = scheduler.turns if scheduler is not None else []
        if index is None or index >= len(turns):
            self.model.view.say("No turn to act on yet.", severity="warning")
            return None
        return turns[index]

    def alternative(self, index: int | None, step: int, shown: Callable[[int], int]) -> Reopen | None:
        """Flip to the previous or next alternative; `shown(i)`: how many the transcript shows for turn i."""
        if (turn := self.target(index)) is None:
            return None
        if shown(turn.index) < 2:
            self.model.view.say(f"Turn #{turn.index} has no alternatives: r regenerates it.", severity="warning",
                                markup=False)
            return None
        at = turn.index
        return self._apply(lambda s: s.alternative(at, step), None)

    def regenerate(self, index: int | None) -> Reopen | None:
        if (turn := self.target(index)) is None:
            return None
        if turn.kind is TurnKind.AUDIENCE or turn.scripted:
            self.model.view.say(f"Turn #{turn.index} was not generated, so it cannot be regenerated: e edits it.",
                                severity="warning", markup=False)
            return None
        at = turn.index
        return self._apply(lambda s: s.regenerate(at),
                           f"Regenerating turn #{at}; the old one stays as an alternative (← →).")

    def edit(self, index: int, text: str | None, original: str) -> Reopen | None:
        """The edit dialog closed with `text` (None: cancelled) for turn `index`, which said `original`."""
        if text is None:
            return None
        if not text.strip():
            self.model.view.say("An empty turn is not saved: the turn is unchanged.", severity="warning")
        elif text.strip() == original.strip():
            self.model.view.say("Unchanged: nothing to save.", severity="warning")
        else:
            return self._apply(lambda s: s.edit(index, text.strip()),
                               f"Turn #{index} edited; the debate goes on from your version.")
        return None

    def fork(self, index: int | None) -> Reopen | None:
        if (turn := self.target(index)) is None:
            return None
        at = turn.index
        return self._apply(lambda s: s.fork(at), f"New branch after turn #{at}.")

    def _apply(self, op: BranchKeyOp, done: str | None) -> Reopen | None:
        """Queue `op` on the running scheduler, or reopen the ended session to apply it."""
        scheduler, say = self.scheduler(), self.model.view.say
        if scheduler is None or self.model.state in ("loading", "starting"):
            say("The debate is still loading.", severity="warning")
            return None
        if self.model.state in ("finished", "error") or not self.running():
            return self._reopen(op, done)
        try:
            op(scheduler)
        except TownhallError as exc:
            say(str(exc), severity="error", markup=False)
            return None
        if done:
            say(done, timeout=4, markup=False)
        return None

    def _reopen(self, op: BranchKeyOp, done: str | None) -> Reopen | None:
        """The stored session, with no turns left (`session.plan_branch_op`): the run applies
        the op and ends. A new turn on the path gets a new closing ballot (if the town hall
        holds one); a flip or a fork says nothing new, so the banner shows the chosen
        branch's recorded outcome."""
        store, session_id = self.model.store, self.model.session_id
        if store is None or session_id is None:
            self.model.view.say("The debate has ended and no database holds it, so it cannot go on.",
                                severity="warning")
            return None
        try:
            plan = plan_branch_op(store, session_id)
        except TownhallError as exc:
            self.model.view.show_error("Cannot go on with this session", str(exc))
            return None
        if done:
            self.model.view.say(done, timeout=4, markup=False)
        return Reopen(plan, op)
