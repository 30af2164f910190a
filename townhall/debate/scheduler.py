"""The asyncio scheduler: takes turns among personas on one engine and publishes events.

PUBLIC API CONTRACT (other layers code against this; the debate work implements it):

    scheduler = Scheduler(engine, spec, personas, bus=EventBus(), session_id=None,
                          history=(), clock=time.time, pace=None)   # pace: a ReadingPace; None is flat out
    scheduler.subscribe(fn) -> unsubscribe          # fn(event) sync or async
    await scheduler.run() -> str                     # end reason; publishes SessionEnded
    scheduler.pause(); scheduler.resume(); scheduler.step()   # step = one turn, then pause
    scheduler.skip()        # skip the current/next speaker; a cut turn is TurnStatus.SKIPPED
    scheduler.interrupt()   # stop the turn being generated; its text is kept, INTERRUPTED
    scheduler.interject(text, speaker="Audience", source=None)   # queued; becomes the next turn
    scheduler.stop()        # watcher ends the session after the current turn is settled
    scheduler.call_vote()   # end after the current turn with the closing ballot and the minutes
    scheduler.regenerate(index=None)    # draw turn `index` (the last when None) again, on a new branch
    scheduler.edit(index, text)         # the watcher's text replaces turn `index`, on a new branch
    scheduler.fork(index)               # a new branch sharing turns 0..index; the debate goes on from it
    scheduler.alternative(index, step)  # step (+1/-1) through turn `index`'s alternatives; the branch follows
    scheduler.switch_branch(number)     # make another branch current
    scheduler.session_id: str
    scheduler.turns: list[Turn]             # the current branch's path: what every agent sees
    scheduler.tree: TurnTree                # every turn on every branch (townhall/domain/branches.py)
    scheduler.participants: list[Persona]   # speaking order (moderator included if any)
    scheduler.status: str   # "idle" | "running" | "paused" | "finished"
    scheduler.current_speaker: str | None
    scheduler.next_speaker: str | None

Notes on behaviour beyond the contract:
- Turn indices continue after `history`; `max_turns` and the token budget count the
  turns of this run only (skipped turns and audience lines are free, see
  `turns.uses_turn_budget`), so resuming a session always moves it forward;
  `session.plan_resume` decides a resumed run's budget.
- Events go out in order on the scheduler's loop: SessionStarted, then per turn
  [StrategyApplied] TurnStarted TokenStreamed* (TurnFinished | TurnFailed), Paused and
  Resumed between turns, SessionEnded last. A turn that is not clean (`townhall.debate.quality`)
  is resampled with a new seed, up to `MAX_RESAMPLES` times, inside the same
  TurnStarted/TurnFinished pair, so the streamed pieces may restart: views should show
  `turn.content` from TurnFinished as the final, trimmed text. Still unclean, it is
  recorded DEGENERATE and kept out of every prompt.
- Under the `agenda` policy each turn carries its phase (`Turn.phase`, `TurnStarted.phase`)
  and the moderator's lines are written from the agenda (`Turn.scripted`), not generated.
- Interjections are taken even while paused; they never wait for the model. `source` is
  recorded on the turn (`Turn.source`: "box", "file"...), and so is the participant it names
  (`Turn.addressed`, `debate/addressing.py`). That participant answers it next under every
  policy (`Turn.answers`, with a cue saying it answers the audience); a line naming the
  moderator or nobody is handed on by the moderator under the agenda (a scripted line) and
  answered by the next speaker under the others. The agenda then goes on where it was. A
  skip asked while an answer is due passes over the speaker after the answer.
- Branch operations (regenerate, edit, fork, alternative, switch_branch) are queued like
  interjections and applied at the next turn boundary, also while paused (a regenerate then
  generates its one turn and stays paused). Each publishes BranchCreated when it makes a
  branch, then BranchSwitched with the new path, then the new turn's events (an edit's turn
  is said at once, like a scripted line, with `Turn.author == WATCHER`). `history` (or
  `tree`, for a session with branches) is where a resumed run starts; `max_turns` counts the
  turns on the current path made in this run (an edit is one). A run whose budget is used up
  still applies the ops queued, then ends as usual (and holds the ballot again: the path
  changed). Ops queued before `run()` are applied before the first turn; `stop()` drops them.
  Bad arguments raise ConfigError at the call, by the rules of the branch service
  (`townhall.debate.branching`, which the CLI and the TUI share): no such turn, no text, an
  edit that leaves the text as it was, no such branch, no alternative to step to, and
  regenerating an audience line or a scripted agenda line (edit those). `alternative` wraps
  around at either end. A regenerated turn is the same speaker in the same phase with a new
  seed: seeds take the branch number as salt (branch 1 keeps the seeds of a session without
  branches), so a seeded session still repeats (`debate/seeds.py`).
  After the path changes, what follows from it is rebuilt: `turns`, any agent view that had
  dropped or summarised a turn that changed (it starts over), the policy, `stances` (replayed
  from the readings after each turn of the path), `outcome`/`minutes` (a ballot belongs to
  the path it was held on) and the closing phrase.
- With a reading pace (`reading_pace.ReadingPace`, handed in by the TUI and `run --pace`), each
  turn said stays on show for its reading time before anything else starts (`RunControl.read`);
  any request of the watcher's ends that hold at once and is handled as without one. Flat out
  (the default) never waits.
- The outcome (on when `spec.ballot` and the engine has a stance probe): right after each
  participant's turn (not the moderator's) its stance is read from its own state, which is
  still resident, so only the ballot cue is evaluated, and published as StanceMeasured
  (after TurnFinished). When the debate ends on its own (max_turns, a budget, the closing
  phrase) or by `call_vote()` (end reason "vote_called"), every participant is probed on
  its full current view, the moderator announces the result as a scripted turn, then
  OutcomeDecided and MinutesWritten go out, all before SessionEnded. `stop()` and errors
  end without a ballot.

Where each job lives (each class takes what it needs in its constructor and can be tested
alone): `run_control.RunControl` (the watcher's requests, pausing, the reading pace's holds, the queues),
`branching.BranchService` (changing the path), `turn_order.TurnOrder` (whose turn),
`turn_taker.TurnTaker` (saying a turn), `prompting.PromptBuilder` (each agent's prompt and
sampling), `voting.Voting` (stances, the ballot, the minutes), `clerk.Clerk` (one-off model
calls), `transcript.Transcript` (the path and the budget rule), `seeds.Seeds`. `Scheduler`
wires them and runs the loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import assert_never

from townhall.debate.announcing import Announcer
from townhall.debate.branching import BranchOp, BranchService, Regenerate
from townhall.debate.cast import Cast
from townhall.debate.clerk import Clerk
from townhall.debate.addressing import Answer
from townhall.debate.context import make_strategy
from townhall.debate.prompting import DEBATE_SAMPLING, PromptBuilder
from townhall.debate.prompts import AUDIENCE
from townhall.debate.reading_pace import ReadingPace
from townhall.debate.run_control import Floor, RunControl
from townhall.debate.run_parts import RunParts
from townhall.debate.seeds import Seeds, derive_seed
from townhall.debate.transcript import Transcript
from townhall.debate.turn_order import TurnOrder
from townhall.debate.turn_taker import MAX_RESAMPLES, SKIPPED, TurnFailure, TurnTaker
from townhall.debate.voting import ProbeCost, Voting
from townhall.domain.branches import TurnTree
from townhall.domain.events import (
    BranchCreated,
    BranchSwitched,
    EventBus,
    OutcomeDecided,
    Paused,
    Resumed,
    SchedulerStatus,
    SessionEnded,
    SessionStarted,
    Subscriber,
    TokenStreamed,
    TurnFinished,
    TurnStarted,
)
from townhall.domain.personas import Persona
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import Turn
from townhall.engine.base import Engine
from townhall.errors import TownhallError

__all__ = ["BALLOT_AFTER", "DEBATE_SAMPLING", "MAX_RESAMPLES", "SKIPPED", "VOTE_CALLED", "Scheduler", "derive_seed"]

log = logging.getLogger(__name__)

# End reasons after which the closing ballot is held: the debate ran its course, or was called.
VOTE_CALLED = "vote_called"
BALLOT_AFTER = frozenset({"max_turns", "token_budget", "time_budget", "closing_phrase", VOTE_CALLED})


class Scheduler:
    """Runs one town hall on one engine and publishes every step as an event.

    Dependencies come in: the engine (started here if it is not yet), the spec,
    the personas (any iterable or mapping holding everyone the spec names), an
    event bus, and a clock, so tests can hand in a scripted engine and fixed time.
    The jobs are its collaborators' (see the module docstring); this class wires them.
    """

    def __init__(
        self,
        engine: Engine,
        spec: TownHallSpec,
        personas: Iterable[Persona] | Mapping[str, Persona],
        bus: EventBus | None = None,
        session_id: str | None = None,
        history: Sequence[Turn] = (),
        clock: Callable[[], float] = time.time,
        agent_prefix: str = "",
        tree: TurnTree | None = None,
        topic_last: bool = False,
        pace: ReadingPace | None = None,
    ) -> None:
        self.engine = engine
        self.spec = spec
        self.agent_prefix = agent_prefix
        self.bus = bus if bus is not None else EventBus()
        self.session_id = session_id or uuid.uuid4().hex[:12]
        self.clock = clock
        if tree is not None and history and [t.node for t in history] != [t.node for t in tree.path()]:
            raise ValueError("history must be the tree's current path")
        # Every turn on every branch; `turns` is the current branch's path, what agents see.
        self.tree = tree if tree is not None else TurnTree.linear(list(history))
        self.transcript = Transcript(self.tree)
        self.resumed = bool(self.transcript.turns)
        self.cast = Cast.from_spec(spec, personas)
        self.moderator: Persona | None = self.cast.moderator
        self.speakers: list[Persona] = self.cast.speakers
        self.participants: list[Persona] = self.cast.participants
        self.status: SchedulerStatus = "idle"
        self.end_reason: str | None = None
        self.floor = Floor()
        self.control = RunControl(pace)  # flat out unless a front end hands in a reading pace
        self._out = out = Announcer(self.session_id, clock, self.bus)
        rng = random.Random(spec.seed) if spec.seed is not None else random.Random()
        seeds = Seeds(spec.seed, rng)
        run = RunParts(engine, spec, self.cast, self.transcript, out, self.agent_key)
        self.clerk = Clerk(run, seeds)
        strategy = make_strategy(spec.context_strategy)
        self.prompts = PromptBuilder(run, seeds, strategy, self.clerk.summarize, topic_last=topic_last)
        self.order = TurnOrder(spec, self.cast, self.transcript, rng, self._ask_moderator)
        self.turn_taker = TurnTaker(run, self.prompts, self.control, self.floor)
        self.voting = Voting(run, self.prompts, self.clerk, self.turn_taker)
        # One rule set for changing the path, shared with the CLI and the TUI (debate/branching.py).
        self.branches = BranchService(self.tree, self.session_id, clock, [p.name for p in self.participants])
        self._started_at = 0.0

    # -- what views read ------------------------------------------------------------------------
    @property
    def turns(self) -> list[Turn]:
        """The current branch's path: what every agent sees."""
        return self.transcript.turns

    @property
    def current_speaker(self) -> str | None:
        return self.floor.current_speaker

    @property
    def next_speaker(self) -> str | None:
        return self.floor.next_speaker

    @property
    def stances(self) -> dict[str, float]:
        """Each participant's latest P(for) on the current path."""
        return self.voting.stances

    @property
    def outcome(self) -> OutcomeDecided | None:
        return self.voting.outcome

    @property
    def minutes(self) -> str | None:
        return self.voting.minutes

    @property
    def probe_cost(self) -> ProbeCost:
        return self.voting.probe_cost

    @property
    def ballot_cost(self) -> ProbeCost:
        return self.voting.ballot_cost

    @property
    def probing(self) -> bool:
        """Whether this run reads stances and holds a ballot: the spec asks, the engine can."""
        return self.voting.probing

    def agent_key(self, name: str) -> str:
        """The engine's id for a participant's KV state. Sessions that share one engine at the
        same time (parallel `generate`) each pass their own `agent_prefix`, so states never mix."""
        return f"{self.agent_prefix}{name}"

    def subscribe(self, fn: Subscriber, *, critical: bool = False) -> Callable[[], None]:
        """`critical`: a subscriber whose failure is the run's (the record): the run stops before its next turn."""
        return self.bus.subscribe(fn, critical=critical)

    # -- the watcher's controls (sync, safe to call from any callback on the loop) --------------
    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def step(self) -> None:
        """Run one turn, then pause. While running: the current turn is that one."""
        self.control.step()

    def skip(self) -> None:
        """Drop the turn being generated (its text is discarded), else skip the next speaker."""
        self.control.skip()

    def interrupt(self) -> None:
        """Stop the turn being generated; the text so far is kept, marked INTERRUPTED."""
        self.control.interrupt()

    def interject(self, text: str, speaker: str = AUDIENCE, source: str | None = None) -> None:
        self.control.interject(text, speaker, source)
        self.floor.next_speaker = self.control.interjections[0].speaker

    def stop(self) -> None:
        self.control.stop()

    def call_vote(self) -> None:
        """End after the current turn with the closing ballot and the minutes (even while paused)."""
        self.control.call_vote()

    # -- branches: checked at the call by the branch service, applied at the next turn boundary --
    def regenerate(self, index: int | None = None) -> None:
        """Draw turn `index` (the last when None) again: the same speaker, a new seed, on a new
        branch from the turn before it; the original stays as an alternative."""
        self.control.queue(self.branches.regenerate_op(index))

    def edit(self, index: int, text: str) -> None:
        """The watcher's `text` replaces turn `index` on a new branch (the original stays as an
        alternative); the debate goes on from the edited turn."""
        self.control.queue(self.branches.edit_op(index, text))

    def fork(self, index: int) -> None:
        """A new branch sharing turns 0..index; the debate goes on from it."""
        self.control.queue(self.branches.fork_op(index))

    def alternative(self, index: int, step: int) -> None:
        """Step (+1 / -1) through turn `index`'s alternatives, oldest first; wraps around at
        either end. The branch that shows the chosen one becomes current."""
        self.control.queue(self.branches.alternative_op(index, step))

    def switch_branch(self, number: int) -> None:
        """Make branch `number` current (its path is what every agent sees from then on)."""
        self.control.queue(self.branches.switch_op(number))

    # -- running --------------------------------------------------------------------------------
    async def prepare(self) -> None:
        """Start the engine and pick the prompt format: what `run` does before its first turn."""
        await self.engine.start()
        self.prompts.choose_format()

    async def run(self) -> str:
        """Run until a stop condition; return the end reason (also in SessionEnded)."""
        if self.status != "idle":
            raise RuntimeError("a Scheduler runs once")
        self.status = "running"
        reason, error = "error", None
        try:
            try:
                await self.prepare()
                self._started_at = self.clock()
                await self._out.publish(SessionStarted(
                    session_id=self.session_id, spec=self.spec.model_dump(mode="json"),
                    participants=tuple(self.participants), engine=self.engine.info, at=self._started_at,
                    resumed=self.resumed,
                ))
                reason = await self._loop()
                self._check_record()
                # A run that said nothing new (one resumed only to flip, fork or switch after the
                # end) leaves the branch's recorded outcome as it was.
                if reason in BALLOT_AFTER and self.probing and (self.transcript.said_anything or reason == VOTE_CALLED):
                    try:
                        await self.hold_vote()
                    except TownhallError as failure:  # the debate itself ended well: keep its reason
                        log.warning("closing ballot failed: %s", failure)
                    self._check_record()
            except TurnFailure as failed:
                reason, error = "error", failed.error
            except TownhallError as failure:
                reason, error = "error", str(failure)
            except asyncio.CancelledError:
                reason = "stopped"
                raise
            except Exception as failure:  # noqa: BLE001 - report, never crash the watcher
                log.exception("scheduler failed")
                reason, error = "error", f"{type(failure).__name__}: {failure}"
        finally:
            self.status = "finished"
            self.floor.current_speaker = None
            self.floor.next_speaker = None
            self.end_reason = reason
            await self._out.publish(SessionEnded(self.session_id, reason, self.clock(), len(self.turns), error))
        return reason

    def _stop_reason(self) -> str | None:
        if self.control.stop_requested:
            return "stopped"
        if self.control.vote_called:
            return VOTE_CALLED
        return self.transcript.ended_by(self.spec, lambda: self.clock() - self._started_at)

    def _check_record(self) -> None:
        """A critical subscriber (the record) failed: the run ends here, before another turn."""
        if self.bus.failure is not None:
            raise self.bus.failure

    async def _loop(self) -> str:
        control = self.control
        while True:
            await control.read(self.transcript.last_said)  # the turn just said stays on show at the pace
            self._check_record()
            op = control.next_branch_op()
            if op is not None:
                await self._apply(op)
                continue
            reason = self._stop_reason()
            if reason:
                return reason
            if control.interjections:
                await self.turn_taker.interjection_turn(control.interjections.popleft())
                self._refresh_next()
                continue
            if control.pacing.held:
                await self._hold()
                continue
            if not control.pacing.paused and control.pause_announced:
                control.pause_announced = False
                await self._out.publish(Resumed(self.session_id, self.clock()))
            control.pacing.turn_begins()
            self.status = "running"
            await self._next_turn()
            control.pacing.turn_ends()
            self._settle_status()

    async def _hold(self) -> None:
        """Paused with no step granted: say so once, then sleep until a request comes."""
        self.status = "paused"
        self.floor.current_speaker = None
        self._refresh_next()
        if not self.control.pause_announced:
            self.control.pause_announced = True
            await self._out.publish(Paused(self.session_id, self.clock()))
        await self.control.wait_until_runnable()

    async def _next_turn(self) -> None:
        slot = self.order.slot()
        answer = self.order.answer()
        if answer is not None:
            await self._answer(answer, slot.phase if slot is not None else None)
            return
        speaker = await self.order.choose(self.control.take_skip())
        if slot is not None and slot.line is not None and slot.speaker == speaker.name:
            await self.turn_taker.scripted_turn(speaker, slot.line, slot.phase)
        else:
            await self._agent_turn(speaker, slot.phase if slot is not None else None)

    async def _answer(self, answer: Answer, phase: str | None) -> None:
        """The turn an audience line is due: the moderator's hand-off, or the answer itself."""
        question = answer.question.node
        if answer.line is not None and self.moderator is not None:
            await self.turn_taker.scripted_turn(self.moderator, answer.line, phase, answers=question,
                                                addressed=answer.to)
            return
        speaker = self.cast.persona(answer.speaker) if answer.speaker else await self.order.choose(False)
        await self._agent_turn(speaker, phase, answers=question)

    async def _agent_turn(self, speaker: Persona, phase: str | None, answers: str | None = None) -> None:
        await self.turn_taker.agent_turn(speaker, phase, answers=answers)
        if not self.control.stop_requested:
            await self.voting.after_turn(speaker)

    def _settle_status(self) -> None:
        """After a turn or an op: paused if a pause was asked meanwhile; the next speaker."""
        if self.status == "running" and self.control.pacing.paused:
            self.status = "paused"
        self._refresh_next()

    def _refresh_next(self) -> None:
        if self.control.interjections:
            self.floor.next_speaker = self.control.interjections[0].speaker
        else:
            self.floor.next_speaker = self.order.peek()

    async def _ask_moderator(self, candidates: Sequence[str]) -> str | None:
        """The moderator's pick among `candidates` (the moderator policy asks through this)."""
        head, lines = self.prompts.chair_context()
        return await self.clerk.pick_speaker(candidates, head, lines)

    # -- branch ops, applied between turns ------------------------------------------------------
    async def _apply(self, op: BranchOp) -> None:
        """One queued branch op. Regenerate and edit say their new turn at once; fork and the
        switches only change the path, and the debate (or the pause) goes on from there."""
        for event in self.branches.apply(op):
            match event:
                case BranchSwitched(from_index=start):
                    self._rebuild(start)
                case TurnStarted(node=node):  # the watcher's edited turn, already in the tree
                    self.transcript.took_place(self.tree.nodes[node])
                case BranchCreated() | TokenStreamed() | TurnFinished():
                    pass
                case _:
                    assert_never(event)
            await self._out.publish(event)
        if isinstance(op, Regenerate):
            turn = self.tree.nodes[op.node]
            self.branches.check_regenerable(turn)
            self.status = "running"
            await self._agent_turn(self.cast.persona(turn.speaker), turn.phase, answers=turn.answers)
        self._settle_status()

    def _rebuild(self, start: int) -> None:
        """Everything that follows from the path, for a path that differs from turn `start` on.

        The views that saw a changed turn start over; the policy is made afresh (its only
        state is a cached draw); stances and the ballot are those of the new path. The
        closing phrase is read from the path whenever it is asked (`Transcript.closed_by`).
        """
        self.transcript.reload()
        self.prompts.forget_views_from(start)
        self.order.reset()
        self.voting.follow_path()
        self._refresh_next()

    async def hold_vote(self) -> OutcomeDecided | None:
        """The closing ballot: every participant votes from a probe on its full current view;
        the moderator announces the result; then the minutes. None if no probe could be read.

        Public for `townhall vote ID`, which rebuilds a stored session's views and calls it
        after `prepare()`; a run calls it itself when the debate ends.
        """
        if not self.prompts.ready:
            await self.prepare()
        return await self.voting.hold()
