"""The asyncio scheduler: takes turns among personas on one engine and publishes events.

PUBLIC API CONTRACT (other layers code against this; the debate work implements it):

    scheduler = Scheduler(engine, spec, personas, bus=EventBus(), session_id=None,
                          history=(), clock=time.time)
    scheduler.subscribe(fn) -> unsubscribe          # fn(event) sync or async
    await scheduler.run() -> str                     # end reason; publishes SessionEnded
    scheduler.pause(); scheduler.resume(); scheduler.step()   # step = one turn, then pause
    scheduler.skip()        # skip the current/next speaker; a cut turn is TurnStatus.SKIPPED
    scheduler.interrupt()   # stop the turn being generated; its text is kept, INTERRUPTED
    scheduler.interject(text, speaker="Audience")   # queued; becomes the next turn
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
- Interjections are taken even while paused; they never wait for the model.
- Branch operations (regenerate, edit, fork, alternative, switch_branch) are queued like
  interjections and applied at the next turn boundary, also while paused (a regenerate then
  generates its one turn and stays paused). Each publishes BranchCreated when it makes a
  branch, then BranchSwitched with the new path, then the new turn's events (an edit's turn
  is said at once, like a scripted line, with `Turn.author == WATCHER`). `history` (or
  `tree`, for a session with branches) is where a resumed run starts; `max_turns` counts the
  turns on the current path made in this run (an edit is one). A run whose budget is used up
  still applies the ops queued, then ends as usual (and holds the ballot again: the path
  changed). Ops queued before `run()` are applied before the first turn; `stop()` drops them.
  Bad arguments raise ConfigError at the call: no such turn, no text, no such branch, no
  alternative to step to, and regenerating an audience line or a scripted agenda line (edit
  those). `alternative` wraps around at either end. A regenerated turn is the same speaker
  in the same phase with a new seed: seeds take the branch number as salt (branch 1 keeps
  the seeds of a session without branches), so a seeded session still repeats.
  After the path changes, what follows from it is rebuilt: `turns`, any agent view that had
  dropped or summarised a turn that changed (it starts over), the policy, `stances` (replayed
  from the readings after each turn of the path), `outcome`/`minutes` (a ballot belongs to
  the path it was held on) and the closing phrase.
- The outcome (on when `spec.ballot` and the engine has a stance probe): right after each
  participant's turn (not the moderator's) its stance is read from its own state, which is
  still resident, so only the ballot cue is evaluated, and published as StanceMeasured
  (after TurnFinished). When the debate ends on its own (max_turns, a budget, the closing
  phrase) or by `call_vote()` (end reason "vote_called"), every participant is probed on
  its full current view, the moderator announces the result as a scripted turn, then
  OutcomeDecided and MinutesWritten go out, all before SessionEnded. `stop()` and errors
  end without a ballot.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import assert_never

from townhall.debate.ballot import (
    VOTE_PHASE,
    MinutesEntry,
    Tally,
    clean_reason,
    completed_rounds,
    tally,
    vote_from,
    write_minutes,
)
from townhall.debate.branching import BranchOp, BranchService, Regenerate
from townhall.domain.branches import TurnTree
from townhall.debate.context import PROMPT_OVERHEAD, FitJob, make_strategy
from townhall.engine.base import Engine, Generation, GenerationRequest, ProbeResult, SamplingParams
from townhall.errors import ConfigError, TownhallError
from townhall.domain.events import (
    BranchCreated,
    BranchSwitched,
    Event,
    EventBus,
    MinutesWritten,
    OutcomeDecided,
    Paused,
    Resumed,
    SessionEnded,
    SessionStarted,
    SchedulerStatus,
    StanceMeasured,
    StrategyApplied,
    Subscriber,
    TokenStreamed,
    TurnFailed,
    TurnFinished,
    TurnStarted,
)
from townhall.domain.personas import Persona
from townhall.debate.policies import AgendaPolicy, PolicyContext, Slot, StanceView, TurnPolicy, make_policy, names_grammar
from townhall.debate.prompts import (
    AUDIENCE,
    BALLOT_CHOICES,
    AgentView,
    Line,
    PromptFormat,
    Rendered,
    choose_format,
    exemplar_lines,
    resolve_stance,
    stop_strings,
    topic_last_format,
    visible,
)
from townhall.debate.quality import check_turn
from townhall.domain.spec import TownHallSpec
from townhall.debate.trimming import clean_spoken, trim_turn
from townhall.domain.turns import Turn, TurnKind, TurnStatus, uses_turn_budget

log = logging.getLogger(__name__)

# A skipped turn is `TurnStatus.SKIPPED`; this note only rides along in `turn.error` for
# views that still test it (tui/app.py), until they test the status instead.
SKIPPED = "skipped by the watcher"
_SEED_SPACE = 2**31 - 1
MAX_RESAMPLES = 3  # a turn that is not clean is drawn again this many times, then kept as DEGENERATE
# Debate sampling, under the spec's and the persona's own overrides; tuned with
# `townhall bench --quality` on the embedded model (see README).
DEBATE_SAMPLING: dict[str, object] = {
    "temperature": 0.7,
    "max_tokens": 64,
    "no_repeat_ngram_size": 3,  # never repeat a token 3-gram already said in the debate
    "min_tokens": 12,  # a newline cannot end a turn before this many tokens
}


def derive_seed(base: int, index: int, retry: int, salt: int = 0) -> int:
    """A request's sampling seed from the session seed, so a seeded run repeats exactly."""
    return (base * 1_000_003 + index * 7_919 + retry * 104_729 + salt * 15_485_863) % _SEED_SPACE


# End reasons after which the closing ballot is held: the debate ran its course, or was called.
VOTE_CALLED = "vote_called"
BALLOT_AFTER = frozenset({"max_turns", "token_budget", "time_budget", "closing_phrase", VOTE_CALLED})
MINUTES_REASON_TOKENS = 40
# Room the closing probe needs beyond the turn prompt that `_fit` measures: the ballot cue
# replaces the `Name:` cue and is about a dozen tokens longer.
BALLOT_ROOM_TOKENS = 24


@dataclass
class ProbeCost:
    """What the stance probes of one run cost the engine, for the benchmark."""

    probes: int = 0
    evaluated_tokens: int = 0
    total_ms: float = 0.0

    def add(self, result: ProbeResult) -> None:
        self.probes += 1
        self.evaluated_tokens += result.evaluated_tokens
        self.total_ms += result.total_ms


@dataclass
class _Interjection:
    text: str
    speaker: str


class _EndSession(Exception):
    def __init__(self, reason: str, error: str | None = None) -> None:
        super().__init__(error or reason)
        self.reason = reason
        self.error = error


class Scheduler:
    """Runs one town hall on one engine and publishes every step as an event.

    Dependencies come in: the engine (started here if it is not yet), the spec,
    the personas (any iterable or mapping holding everyone the spec names), an
    event bus, and a clock, so tests can hand in a scripted engine and fixed time.
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
    ) -> None:
        self.engine = engine
        # generate's layout: the topic after the header (prompts.topic_last_format), so the
        # first prompts of many conversations begin alike and a batched engine shares them.
        self.topic_last = topic_last
        self.agent_prefix = agent_prefix
        self.spec = spec
        self.bus = bus if bus is not None else EventBus()
        self.session_id = session_id or uuid.uuid4().hex[:12]
        self.clock = clock
        if tree is not None and history and [t.node for t in history] != [t.node for t in tree.path()]:
            raise ValueError("history must be the tree's current path")
        # Every turn on every branch; `turns` is the current branch's path, what agents see.
        self.tree = tree if tree is not None else TurnTree.linear(list(history))
        self.turns: list[Turn] = self.tree.path()
        self.resumed = bool(self.turns)
        self._made: set[str] = set()  # the nodes of the turns this run said: `max_turns` counts these
        pool = list(personas.values()) if isinstance(personas, Mapping) else list(personas)
        by_key = {p.name.casefold(): p for p in pool}

        def find(name: str) -> Persona:
            persona = by_key.get(name.strip().casefold())
            if persona is None:
                raise ConfigError(f"town hall names '{name}', but no such persona was given")
            return persona

        self.moderator: Persona | None = find(spec.moderator) if spec.moderator else None
        speakers = [find(n) for n in spec.participants]
        if self.moderator is not None:
            speakers = [p for p in speakers if p.name != self.moderator.name]
        names = [p.name for p in speakers]
        if len(set(n.casefold() for n in names)) != len(names):
            raise ConfigError("participants: each persona may take part only once")
        if not speakers:
            raise ConfigError("participants: a town hall needs at least one participant besides the moderator")
        self.speakers: list[Persona] = speakers
        self.participants: list[Persona] = ([self.moderator] if self.moderator else []) + speakers
        self.policy = self._make_policy()
        self.strategy = make_strategy(spec.context_strategy)
        self.status: SchedulerStatus = "idle"
        self.current_speaker: str | None = None
        self.next_speaker: str | None = None
        self.end_reason: str | None = None
        self._rng = random.Random(spec.seed) if spec.seed is not None else random.Random()
        self._views: dict[str, AgentView] = {p.name: AgentView(p.name) for p in self.participants}
        self._format: PromptFormat | None = None
        self._interjections: deque[_Interjection] = deque()
        self._branch_ops: deque[BranchOp] = deque()
        # One rule set for changing the path, shared with the CLI and the TUI (debate/branching.py).
        self.branches = BranchService(self.tree, self.session_id, clock, [p.name for p in self.participants])
        self._stance_log: dict[str, dict[str, float]] = {}  # node -> the stances read right after it
        self._outcomes: dict[str, tuple[OutcomeDecided, str | None]] = {}  # path head -> its ballot
        self._paused = False
        self._paused_published = False
        self._steps = 0
        self._pause_after_turn = False
        self._stop_requested = False
        self._skip_next = False
        self._skip_current = False
        self._interrupt_current = False
        self._generation: Generation | None = None
        self._wake = asyncio.Event()
        self._started_at = 0.0
        self._closing = False
        self._allowed: tuple[str, ...] | None = None
        self._summaries: dict[tuple[str | None, tuple[Line, ...]], str] = {}
        self._vote_called = False
        self.stances: dict[str, float] = {}  # each participant's latest P(for)
        self.outcome: OutcomeDecided | None = None
        self.minutes: str | None = None
        self.probe_cost = ProbeCost()  # the probes after each turn (the live stance meter)
        self.ballot_cost = ProbeCost()  # the closing ballot's, each on the agent's full view

    def _make_policy(self) -> TurnPolicy:
        if self.spec.policy != AgendaPolicy.name:
            return make_policy(self.spec.policy)
        stances = {}
        for p in self.speakers:
            stance = resolve_stance(self.spec, p)
            if stance is not None:
                stances[p.name] = StanceView(*stance)
        return AgendaPolicy(motion=self.spec.motion, title=self.spec.title, stances=stances, total=self.spec.max_turns)

    # -- public control (sync, safe to call from any callback on the loop) ----
    def agent_key(self, name: str) -> str:
        """The engine's id for a participant's KV state. Sessions that share one engine at the
        same time (parallel `generate`) each pass their own `agent_prefix`, so states never mix."""
        return f"{self.agent_prefix}{name}"

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        return self.bus.subscribe(fn)

    def pause(self) -> None:
        self._paused = True
        self._steps = 0
        self._poke()

    def resume(self) -> None:
        self._paused = False
        self._steps = 0
        self._pause_after_turn = False
        self._poke()

    def step(self) -> None:
        """Run one turn, then pause. While running: the current turn is that one."""
        if self._paused:
            self._steps += 1
        else:
            self._pause_after_turn = True
        self._poke()

    def skip(self) -> None:
        """Drop the turn being generated (its text is discarded), else skip the next speaker."""
        if self._generation is not None:
            self._skip_current = True
            self._generation.cancel()
        else:
            self._skip_next = True
        self._poke()

    def interrupt(self) -> None:
        """Stop the turn being generated; the text so far is kept, marked INTERRUPTED."""
        if self._generation is not None:
            self._interrupt_current = True
            self._generation.cancel()

    def interject(self, text: str, speaker: str = AUDIENCE) -> None:
        text = text.strip()
        speaker = (speaker or AUDIENCE).strip()
        if not text:
            raise ConfigError("an interjection needs some text")
        if not speaker or any(ch in speaker for ch in ":\n\r\t") or len(speaker) > 40:
            raise ConfigError("the interjecting speaker's name must be one short line without ':'")
        self._interjections.append(_Interjection(text, speaker))
        self.next_speaker = self._interjections[0].speaker
        self._poke()

    def stop(self) -> None:
        self._stop_requested = True
        self._poke()

    def call_vote(self) -> None:
        """End after the current turn with the closing ballot and the minutes (even while paused)."""
        self._vote_called = True
        self._poke()

    # -- branches: checked at the call by the branch service, applied at the next turn boundary
    def _queue(self, op: BranchOp) -> None:
        self._branch_ops.append(op)
        self._poke()

    def regenerate(self, index: int | None = None) -> None:
        """Draw turn `index` (the last when None) again: the same speaker, a new seed, on a new
        branch from the turn before it; the original stays as an alternative."""
        self._queue(self.branches.regenerate_op(index))

    def edit(self, index: int, text: str) -> None:
        """The watcher's `text` replaces turn `index` on a new branch (the original stays as an
        alternative); the debate goes on from the edited turn."""
        self._queue(self.branches.edit_op(index, text))

    def fork(self, index: int) -> None:
        """A new branch sharing turns 0..index; the debate goes on from it."""
        self._queue(self.branches.fork_op(index))

    def alternative(self, index: int, step: int) -> None:
        """Step (+1 / -1) through turn `index`'s alternatives, oldest first; wraps around at
        either end. The branch that shows the chosen one becomes current."""
        self._queue(self.branches.alternative_op(index, step))

    def switch_branch(self, number: int) -> None:
        """Make branch `number` current (its path is what every agent sees from then on)."""
        self._queue(self.branches.switch_op(number))

    @property
    def probing(self) -> bool:
        """Whether this run reads stances and holds a ballot: the spec asks, the engine can."""
        return self.spec.ballot and self.engine.info.stance_probe is not None

    def _poke(self) -> None:
        self._wake.set()

    # -- running ----------------------------------------------------------------
    async def _publish(self, event: Event) -> None:
        await self.bus.apublish(event)

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
                await self._publish(
                    SessionStarted(
                        session_id=self.session_id,
                        spec=self.spec.model_dump(mode="json"),
                        participants=tuple(self.participants),
                        engine=self.engine.info,
                        at=self._started_at,
                        resumed=self.resumed,
                    )
                )
                reason = await self._loop()
                # A run that said nothing new (one resumed only to flip, fork or switch after the
                # end) leaves the branch's recorded outcome as it was.
                if reason in BALLOT_AFTER and self.probing and (self._made or reason == VOTE_CALLED):
                    try:
                        await self.hold_vote()
                    except TownhallError as failure:  # the debate itself ended well: keep its reason
                        log.warning("closing ballot failed: %s", failure)
            except _EndSession as end:
                reason, error = end.reason, end.error
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
            self.current_speaker = None
            self.next_speaker = None
            self.end_reason = reason
            await self._publish(
                SessionEnded(self.session_id, reason, self.clock(), len(self.turns), error)
            )
        return reason

    def _stop_reason(self) -> str | None:
        if self._stop_requested:
            return "stopped"
        if self._vote_called:
            return VOTE_CALLED
        if self._closing:
            return "closing_phrase"
        spoken = [t for t in self.turns if t.node in self._made and uses_turn_budget(t)]
        if self.spec.max_turns is not None and len(spoken) >= self.spec.max_turns:
            return "max_turns"
        if self.spec.token_budget is not None:
            used = sum(t.stats.generated_tokens for t in spoken if t.stats)
            if used >= self.spec.token_budget:
                return "token_budget"
        if self.spec.time_budget_s is not None and self.clock() - self._started_at >= self.spec.time_budget_s:
            return "time_budget"
        return None

    async def _loop(self) -> str:
        while True:
            if self._branch_ops and not self._stop_requested:
                await self._apply(self._branch_ops.popleft())
                continue
            reason = self._stop_reason()
            if reason:
                return reason
            if self._interjections:
                await self._interjection_turn(self._interjections.popleft())
                continue
            if self._paused and self._steps == 0:
                self.status = "paused"
                self.current_speaker = None
                self._refresh_next()
                if not self._paused_published:
                    self._paused_published = True
                    await self._publish(Paused(self.session_id, self.clock()))
                self._wake.clear()
                if (self._paused and self._steps == 0 and not self._interjections and not self._stop_requested
                        and not self._vote_called and not self._branch_ops):
                    await self._wake.wait()
                continue
            if not self._paused and self._paused_published:
                self._paused_published = False
                await self._publish(Resumed(self.session_id, self.clock()))
            if self._paused:
                self._steps -= 1
            self.status = "running"
            slot = self.policy.slot(self._policy_context()) if isinstance(self.policy, AgendaPolicy) else None
            speaker = await self._choose()
            if slot is not None and slot.line is not None and slot.speaker == speaker.name:
                await self._scripted_turn(speaker, slot)
            else:
                await self._agent_turn(speaker, slot.phase if slot is not None else None)
                await self._stance_after_turn(speaker)
            if self._pause_after_turn:
                self._pause_after_turn = False
                self._paused = True
            if self.status == "running" and self._paused:
                self.status = "paused"
            self._refresh_next()

    def _policy_context(self, exclude: frozenset[str] = frozenset()) -> PolicyContext:
        return PolicyContext(
            speakers=self.speakers,
            moderator=self.moderator,
            turns=self.turns,
            rng=self._rng,
            exclude=exclude,
            ask_model=self._ask_model,
        )

    def _refresh_next(self) -> None:
        if self._interjections:
            self.next_speaker = self._interjections[0].speaker
        else:
            self.next_speaker = self.policy.peek(self._policy_context())

    async def _choose(self) -> Persona:
        exclude: frozenset[str] = frozenset()
        if self._skip_next:
            self._skip_next = False
            skipped = self.policy.peek(self._policy_context())
            if skipped:
                exclude = frozenset({skipped})
        name = await self.policy.choose(self._policy_context(exclude))
        return next(p for p in self.participants if p.name == name)

    # -- branch ops, applied between turns ---------------------------------------------
    async def _apply(self, op: BranchOp) -> None:
        """One queued branch op. Regenerate and edit say their new turn at once; fork and the
        switches only change the path, and the debate (or the pause) goes on from there."""
        for event in self.branches.apply(op):
            match event:
                case BranchSwitched(from_index=start):
                    self._rebuild(start)
                case TurnStarted(node=node):  # the watcher's edited turn, already in the tree
                    self.turns.append(self.tree.nodes[node])
                    self._made.add(node)
                case BranchCreated() | TokenStreamed() | TurnFinished():
                    pass
                case _:
                    assert_never(event)
            await self._publish(event)
            if isinstance(event, TurnFinished):
                self._note_closing(event.turn)
        if isinstance(op, Regenerate):
            turn = self.tree.nodes[op.node]
            self.branches.check_regenerable(turn)
            persona = next(p for p in self.participants if p.name == turn.speaker)
            self.status = "running"
            await self._agent_turn(persona, turn.phase)
            await self._stance_after_turn(persona)
        if self.status == "running" and self._paused:
            self.status = "paused"
        self._refresh_next()

    def _rebuild(self, start: int) -> None:
        """Everything that follows from the path, for a path that differs from turn `start` on.

        A view that dropped or summarised a turn from `start` on starts over (the context
        strategy cuts it again if needed); the policy is made afresh (its only state is a
        cached draw); stances are replayed from the readings taken after each turn of the
        new path; a ballot belongs to the path it was held on.
        """
        self.turns = self.tree.path()
        for name, view in list(self._views.items()):
            if view.first > start:
                fresh = AgentView(name)
                fresh.rebuilds = view.rebuilds
                self._views[name] = fresh
        self.policy = self._make_policy()
        self.stances = {}
        for turn in self.turns:
            self.stances.update(self._stance_log.get(turn.node, {}))
        head = self.turns[-1].node if self.turns else ""
        self.outcome, self.minutes = self._outcomes.get(head, (None, None))
        self._closing = any(t.node in self._made and self._closes(t) for t in self.turns)
        self._refresh_next()

    # -- turns --------------------------------------------------------------------
    def _append(self, turn: Turn) -> None:
        """Put a new turn at the end of the current branch (its index, parent and branch set)."""
        self.tree.add(turn)
        self.turns.append(turn)
        self._made.add(turn.node)

    def _started(self, turn: Turn) -> TurnStarted:
        return TurnStarted(self.session_id, turn.index, turn.speaker, turn.kind, turn.started_at, turn.phase,
                           node=turn.node, parent=turn.parent, branch=turn.branch)

    async def _interjection_turn(self, item: _Interjection) -> None:
        now = self.clock()
        turn = Turn(
            index=len(self.turns),
            speaker=item.speaker,
            kind=TurnKind.AUDIENCE,
            content=item.text,
            status=TurnStatus.STREAMING,
            started_at=now,
        )
        self._append(turn)
        await self._publish(self._started(turn))
        turn.status = TurnStatus.COMPLETE
        turn.finished_at = self.clock()
        await self._publish(TurnFinished(self.session_id, turn))
        self._refresh_next()

    async def _scripted_turn(self, persona: Persona, slot: Slot) -> None:
        """The moderator's line from the agenda: said at once, streamed as one piece."""
        assert slot.line is not None
        index = len(self.turns)
        turn = Turn(
            index=index, speaker=persona.name, kind=TurnKind.MODERATOR, content=slot.line,
            started_at=self.clock(), phase=slot.phase, scripted=True,
        )
        self._append(turn)
        self.current_speaker = persona.name
        self.next_speaker = None
        await self._publish(self._started(turn))
        await self._publish(TokenStreamed(self.session_id, index, persona.name, slot.line))
        turn.status = TurnStatus.COMPLETE
        turn.finished_at = self.clock()
        self.current_speaker = None
        await self._publish(TurnFinished(self.session_id, turn))
        self._note_closing(turn)

    def _closes(self, turn: Turn) -> bool:
        return bool(
            turn.kind == TurnKind.MODERATOR
            and self.spec.closing_phrase
            and turn.status == TurnStatus.COMPLETE
            and self.spec.closing_phrase.casefold() in turn.content.casefold()
        )

    def _note_closing(self, turn: Turn) -> None:
        if self._closes(turn):
            self._closing = True

    def _unsayable(self, persona: Persona) -> tuple[str, ...]:
        if self._format is None or self._format.name != "transcript":
            return ()
        return exemplar_lines() + tuple(" ".join(e.split()) for e in persona.examples)

    def _sayable(self) -> tuple[str, ...]:
        """What every speaker may repeat despite the n-gram ban: the motion, the names, the sides, the concerns."""
        if self._allowed is None:
            texts = [self.spec.motion, self.spec.title or "", ", ".join(p.name for p in self.participants),
                     "I am for the motion. I am against the motion. I am undecided on the motion. I'm for the motion. "
                     "I'm against the motion. I'm undecided about the motion. I agree with you. I disagree with you."]
            for persona in self.speakers:
                stance = resolve_stance(self.spec, persona)
                if stance is not None:
                    texts.append(stance[1])
            self._allowed = tuple(" ".join(t.split()) for t in texts if t.strip())
        return self._allowed

    def _names(self) -> list[str]:
        extra = [t.speaker for t in self.turns if t.kind == TurnKind.AUDIENCE]
        return list(dict.fromkeys([p.name for p in self.participants] + [AUDIENCE] + extra))

    def _sampling(self, persona: Persona, index: int, retry: int) -> SamplingParams:
        base = SamplingParams().merged(DEBATE_SAMPLING, self.spec.sampling, persona.sampling)
        assert self._format is not None
        stops = stop_strings(
            persona.name, self._names(), self.engine.info.eos_markers, self._format.generic_stops
        ) + tuple(base.stop)
        if self.spec.seed is not None:
            # Branch 1 keeps the seeds of a session without branches; a regenerated turn is on a
            # new branch, so it draws anew, and a seeded session still repeats.
            seed = derive_seed(self.spec.seed, index, retry, salt=self.tree.current - 1)
        else:
            seed = self._rng.randrange(_SEED_SPACE)
        return base.merged({"seed": seed, "stop": tuple(dict.fromkeys(stops))})

    def _entries(self, view: AgentView) -> list[tuple[int, Line]]:
        return [
            (i, Line(t.speaker, " ".join(t.content.split())))
            for i, t in enumerate(self.turns)
            if i >= view.first and visible(t)
        ]

    def _render(self, persona: Persona, view: AgentView) -> Rendered:
        assert self._format is not None
        return self._format.render(persona, view.summary, [line for _, line in self._entries(view)])

    async def _fit(self, persona: Persona, max_tokens: int) -> Rendered:
        """Render the agent's prompt; if it would overflow, apply the context strategy."""
        view = self._views[persona.name]
        rendered = self._render(persona, view)
        n_ctx = self.engine.info.n_ctx
        needed = await self.engine.count_tokens(rendered.prompt)
        if needed + max_tokens + PROMPT_OVERHEAD <= n_ctx:
            return rendered
        empty = AgentView(persona.name)
        fixed = await self.engine.count_tokens(self._render_bare(persona, empty).prompt)

        async def measure(v: AgentView) -> int:
            return await self.engine.count_tokens(self._render(persona, v).prompt)

        job = FitJob(
            agent=persona.name,
            view=view,
            entries=self._entries(view),
            n_ctx=n_ctx,
            max_tokens=max_tokens,
            fixed_tokens=fixed,
            measure=measure,
            count=self.engine.count_tokens,
            summarize=self._summarize,
        )
        if fixed + max_tokens + PROMPT_OVERHEAD > n_ctx:
            raise job.too_small(fixed)
        detail = await self.strategy.fit(job)
        view.rebuilds += 1
        self.engine.forget(self.agent_key(persona.name))
        await self._publish(
            StrategyApplied(self.session_id, persona.name, self.strategy.name, detail, self.clock())
        )
        return self._render(persona, view)

    def _render_bare(self, persona: Persona, view: AgentView) -> Rendered:
        assert self._format is not None
        return self._format.render(persona, None, [])

    async def _agent_turn(self, persona: Persona, phase: str | None = None) -> None:
        index = len(self.turns)
        kind = TurnKind.MODERATOR if persona is self.moderator else TurnKind.AGENT
        sampling = self._sampling(persona, index, 0)
        rendered = await self._fit(persona, sampling.max_tokens)
        turn = Turn(index=index, speaker=persona.name, kind=kind, started_at=self.clock(), sampling=sampling, phase=phase)
        self._append(turn)
        self.current_speaker = persona.name
        self.next_speaker = None
        self._skip_current = self._interrupt_current = False
        await self._publish(self._started(turn))
        earlier = [t.content for t in self.turns[:index] if visible(t)]
        # For the engine's n-gram ban: the exemplar and the persona's own examples (a small
        # model copies them word for word), then everything said in the debate so far.
        banned = self._unsayable(persona) + tuple(" ".join(text.split()) for text in earlier)
        names = self._names()
        try:
            for retry in range(MAX_RESAMPLES + 1):
                if retry:
                    sampling = self._sampling(persona, index, retry)
                    turn.sampling = sampling
                    turn.retries = retry
                request = GenerationRequest(
                    agent_id=self.agent_key(persona.name), prompt=rendered.prompt, sampling=sampling, messages=rendered.messages,
                    banned_texts=banned, allowed_texts=self._sayable(),
                )
                generation = self.engine.generate(request)
                self._generation = generation
                try:
                    async for piece in generation:
                        await self._publish(TokenStreamed(self.session_id, index, persona.name, piece))
                except asyncio.CancelledError:
                    generation.cancel()
                    raise
                except Exception as failure:  # noqa: BLE001 - the engine's fault becomes a failed turn
                    turn.content = generation.text.strip()  # what was said before the fault is kept
                    turn.stats = generation.stats
                    await self._fail(turn, failure)
                finally:
                    self._generation = None
                turn.stats = generation.stats
                finish = generation.stats.finish_reason if generation.stats else "stop"
                if self._skip_current:
                    turn.content, turn.status, turn.error = "", TurnStatus.SKIPPED, SKIPPED
                    break
                cut_short = finish in ("length", "context")
                turn.content = trim_turn(
                    generation.text,
                    finish_reason="length" if cut_short else "stop",
                    names=names,
                    markers=self.engine.info.eos_markers,
                )
                assert self._format is not None
                clean = getattr(self._format, "clean_turn", None)  # chat: tags, narration, leaked prompt
                turn.content = clean(persona, turn.content, names) if clean else clean_spoken(
                    turn.content, persona.name, names, self._format.fixed_part(persona), resample_impersonation=True)
                if self._interrupt_current or finish == "cancelled":
                    turn.status = TurnStatus.INTERRUPTED
                    break
                if not check_turn(turn.content, persona.name, names, earlier).clean:
                    turn.status = TurnStatus.DEGENERATE
                    continue
                turn.status = TurnStatus.COMPLETE
                break
        except asyncio.CancelledError:
            turn.status = TurnStatus.INTERRUPTED
            turn.finished_at = self.clock()
            self.current_speaker = None
            await self._publish(TurnFinished(self.session_id, turn))
            raise
        turn.finished_at = self.clock()
        self.current_speaker = None
        await self._publish(TurnFinished(self.session_id, turn))
        self._note_closing(turn)

    async def _fail(self, turn: Turn, failure: BaseException) -> None:
        message = str(failure) if isinstance(failure, TownhallError) else f"{type(failure).__name__}: {failure}"
        turn.status = TurnStatus.FAILED
        turn.error = message
        turn.finished_at = self.clock()
        self.current_speaker = None
        await self._publish(TurnFailed(self.session_id, turn, message))
        raise _EndSession("error", f"{turn.speaker}'s turn failed: {message}")

    # -- the stance probe, the closing ballot, the minutes ------------------------------
    async def _read_stance(self, persona: Persona, cost: ProbeCost) -> ProbeResult | None:
        """P(for) from the agent's own state and current view; None if the probe failed."""
        assert self._format is not None
        view = self._views[persona.name]
        prompt = self._format.render_ballot(persona, view.summary, [line for _, line in self._entries(view)])
        try:
            result = await self.engine.probe(self.agent_key(persona.name), prompt, BALLOT_CHOICES)
        except TownhallError as failure:
            log.warning("stance probe for %s failed: %s", persona.name, failure)
            return None
        cost.add(result)
        self.stances[persona.name] = result.share(0)
        if self.turns:
            self._stance_log.setdefault(self.turns[-1].node, {})[persona.name] = result.share(0)
        return result

    def _round(self) -> int:
        spoken: dict[str, int] = {}
        for turn in self.turns:
            if turn.kind == TurnKind.AGENT and visible(turn):
                spoken[turn.speaker] = spoken.get(turn.speaker, 0) + 1
        return completed_rounds(spoken, [p.name for p in self.speakers])

    async def _publish_stance(self, persona: Persona, result: ProbeResult, turn_index: int) -> None:
        await self._publish(StanceMeasured(self.session_id, persona.name, self._round(), turn_index,
                                           result.share(0), result.method, self.clock()))

    async def _stance_after_turn(self, persona: Persona) -> None:
        """The speaker's stance right after its turn: its state is resident, only the cue is new."""
        turn = self.turns[-1]
        if (not self.probing or self._stop_requested or persona is self.moderator or turn.speaker != persona.name
                or not visible(turn)):
            return
        result = await self._read_stance(persona, self.probe_cost)
        if result is not None:
            await self._publish_stance(persona, result, turn.index)

    async def hold_vote(self) -> OutcomeDecided | None:
        """The closing ballot: every participant votes from a probe on its full current view;
        the moderator announces the result; then the minutes. None if no probe could be read.

        Public for `townhall vote ID`, which rebuilds a stored session's views and calls it
        after `prepare()`; a run calls it itself when the debate ends.
        """
        if self._format is None:
            await self.prepare()
        votes = []
        last = len(self.turns) - 1
        for persona in self.speakers:
            await self._fit(persona, BALLOT_ROOM_TOKENS)
            result = await self._read_stance(persona, self.ballot_cost)
            if result is None:
                continue
            await self._publish_stance(persona, result, last)
            votes.append(vote_from(persona.name, result.share(0)))
        if not votes:
            return None
        counted = tally(votes)
        if self.moderator is not None:
            await self._scripted_turn(self.moderator, Slot(phase=VOTE_PHASE, speaker=self.moderator.name,
                                                           line=counted.announcement))
        self.outcome = OutcomeDecided(self.session_id, counted.votes, counted.votes_for, counted.votes_against,
                                      counted.result, counted.announcement, self.clock())
        await self._publish(self.outcome)
        self.minutes = await self._write_minutes(counted)
        if self.turns:
            self._outcomes[self.turns[-1].node] = (self.outcome, self.minutes)
        await self._publish(MinutesWritten(self.session_id, self.minutes, self.clock()))
        return self.outcome

    async def prepare(self) -> None:
        """Start the engine and pick the prompt format: what `run` does before its first turn."""
        await self.engine.start()
        self._format = choose_format(self.spec, self.participants, self.engine.info.chat_template)
        if self.topic_last:
            self._format = topic_last_format(self._format)

    async def _write_minutes(self, counted: Tally) -> str:
        """The frame from what is certain; each participant's reason in the model's words."""
        entries = []
        for vote in counted.votes:
            persona = next(p for p in self.speakers if p.name == vote.agent)
            stance = resolve_stance(self.spec, persona)
            reason = await self._reason(persona, vote.choice)
            entries.append(MinutesEntry(persona.name, persona.title, stance[0] if stance else None, vote, reason))
        return write_minutes(self.spec.title, self.spec.motion, counted, entries)

    async def _reason(self, persona: Persona, choice: str) -> str:
        """One clause on why `persona` voted as it did, written from its own words in the debate."""
        own = [Line(t.speaker, " ".join(t.content.split())) for t in self.turns
               if t.speaker == persona.name and visible(t)]
        if not own:
            return ""
        head = f"Minutes of a town hall meeting.\nMotion: {self.spec.motion.strip()}\n\nWhat {persona.name} said:\n"
        tail = f"\nThe clerk's note: {persona.name} voted {choice} the motion because"
        prompt = await self._fit_lines(head, own, tail, MINUTES_REASON_TOKENS)
        seed = derive_seed(self.spec.seed, len(self.turns), 0, salt=3) if self.spec.seed is not None else (
            self._rng.randrange(_SEED_SPACE))
        sampling = SamplingParams(temperature=0.3, max_tokens=MINUTES_REASON_TOKENS, seed=seed,
                                  stop=("\n",) + tuple(self.engine.info.eos_markers))
        try:
            text = await self._oneoff(prompt, sampling)
        except TownhallError as failure:
            log.warning("minutes: %s's reason failed: %s", persona.name, failure)
            return ""
        return clean_reason(text)

    # -- stateless helpers: summaries and speaker choice ----------------------------
    async def _fit_lines(self, head: str, lines: Sequence[Line], tail: str, max_tokens: int) -> str:
        """A one-off prompt with as many of the latest `lines` as fit the context."""
        kept = list(lines)
        while True:
            prompt = head + "".join(f"{l.speaker}: {l.text}\n" for l in kept) + tail
            if not kept or await self.engine.count_tokens(prompt) + max_tokens <= self.engine.info.n_ctx:
                return prompt
            kept.pop(0)

    async def _oneoff(self, prompt: str, sampling: SamplingParams, grammar: str | None = None) -> str:
        generation = self.engine.generate(GenerationRequest(agent_id=None, prompt=prompt, sampling=sampling, grammar=grammar))
        return await generation.result()

    async def _summarize(self, previous: str | None, lines: Sequence[Line]) -> str:
        key = (previous, tuple(lines))
        if key in self._summaries:
            return self._summaries[key]
        max_tokens = max(24, min(80, self.engine.info.n_ctx // 8))
        head = f"Notes from a town hall meeting. Motion: {self.spec.motion.strip()}\n"
        if previous:
            head += f"Earlier: {previous.strip()}\n"
        head += "\n"
        tail = "\nSummary of what was said above, in two sentences:"
        prompt = await self._fit_lines(head, lines, tail, max_tokens)
        seed = derive_seed(self.spec.seed, len(self.turns), 0, salt=1) if self.spec.seed is not None else self._rng.randrange(_SEED_SPACE)
        sampling = SamplingParams(temperature=0.3, max_tokens=max_tokens, seed=seed,
                                  stop=("\n\n",) + tuple(f"\n{n}:" for n in self._names()) + tuple(self.engine.info.eos_markers))
        text = trim_turn(await self._oneoff(prompt, sampling), finish_reason="length", names=self._names(),
                         markers=self.engine.info.eos_markers)
        self._summaries[key] = text
        return text

    async def _ask_model(self, candidates: Sequence[str]) -> str | None:
        """The moderator's pick among `candidates`, constrained to their names by a grammar."""
        assert self.moderator is not None and self._format is not None
        lines = [line for _, line in self._entries(AgentView(self.moderator.name))][-8:]
        head = self._format.fixed_part(self.moderator) if self._format.name == "transcript" else ""
        if not head:
            head = f"Town hall meeting. Motion: {self.spec.motion.strip()}\n"
        tail = f"{self.moderator.name}: Thank you. Next I call on"
        prompt = await self._fit_lines(head, lines, tail, 16)
        seed = derive_seed(self.spec.seed, len(self.turns), 0, salt=2) if self.spec.seed is not None else self._rng.randrange(_SEED_SPACE)
        sampling = SamplingParams(temperature=0.7, max_tokens=16, seed=seed, stop=("\n",))
        try:
            answer = await self._oneoff(prompt, sampling, grammar=names_grammar(candidates))
        except TownhallError as failure:
            log.warning("speaker choice failed: %s", failure)
            return None
        return answer.strip().rstrip(".,!?")
