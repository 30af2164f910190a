"""Saying one turn: an agent's (drawn from the model, resampled until clean), a scripted
agenda line, an audience line. The scheduler decides whose turn it is; this says it.

An agent's turn streams its pieces as TokenStreamed between one TurnStarted and one
TurnFinished, however many draws it takes: a draw that is not clean (`debate.quality`) is
drawn again with a new seed, up to `MAX_RESAMPLES` times, then kept as DEGENERATE. The
watcher can cut a draw (RunControl.skip / interrupt); an engine fault fails the turn and,
through `TurnFailure`, ends the session.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from townhall.debate.addressing import addressed
from townhall.debate.announcing import said_at_once, turn_started
from townhall.debate.openings import contradicts
from townhall.debate.prompting import PromptBuilder
from townhall.debate.prompts import Rendered, visible
from townhall.debate.quality import check_turn, names_self
from townhall.debate.run_control import Floor, Interjection, RunControl
from townhall.debate.run_parts import RunParts
from townhall.debate.trimming import trim_turn
from townhall.domain.events import TokenStreamed, TurnFailed, TurnFinished
from townhall.domain.personas import Persona
from townhall.domain.turns import Turn, TurnKind, TurnStatus
from townhall.engine.base import GenerationRequest, SamplingParams
from townhall.errors import TownhallError

# A skipped turn is `TurnStatus.SKIPPED`; this note only rides along in `turn.error` for
# views that still test it, until they test the status instead.
SKIPPED = "skipped by the watcher"
MAX_RESAMPLES = 3  # a turn that is not clean is drawn again this many times, then kept as DEGENERATE


class TurnFailure(Exception):
    """An agent's turn failed in the engine: TurnFailed is out, and the session ends with `error`."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass(frozen=True)
class _Draft:
    """What every draw of one agent turn shares."""

    persona: Persona
    rendered: Rendered
    earlier: list[str]  # what was said before it (quality checks repeats against it)
    banned: tuple[str, ...]
    names: list[str]
    side: str | None  # the side the speaker argues; a draw that declares the other one is drawn again
    anchored: bool  # whether draws begin with an opening (debate.openings)


def join_opening(opening: str, said: str) -> str:
    """The turn as spoken: the opening, then what the model went on to say."""
    if not opening:
        return said
    if not said:
        return opening
    glue = "" if said[0] in ",.;:!?" else " "
    return f"{opening}{glue}{said}"


class TurnTaker:
    """Says the turn the scheduler chose; which turn comes next is never its business."""

    def __init__(self, run: RunParts, prompts: PromptBuilder, control: RunControl, floor: Floor) -> None:
        self.run = run
        self.prompts = prompts
        self.control = control
        self.floor = floor

    # -- said at once ---------------------------------------------------------------------------
    async def scripted_turn(self, persona: Persona, line: str, phase: str | None, *, answers: str | None = None,
                            addressed: str | None = None) -> None:
        """The moderator's line from the agenda, its hand-off of an audience line (`answers`, to
        `addressed`) or the ballot's announcement: said at once."""
        turn = Turn(index=len(self.run.transcript.turns), speaker=persona.name, kind=TurnKind.MODERATOR, content=line,
                    started_at=self.run.out.clock(), phase=phase, scripted=True, answers=answers, addressed=addressed)
        self.run.transcript.add(turn)
        self.floor.current_speaker, self.floor.next_speaker = persona.name, None
        for event in said_at_once(self.run.out.session_id, turn, self.run.out.clock):
            if isinstance(event, TurnFinished):
                self.floor.current_speaker = None
            await self.run.out.publish(event)

    async def interjection_turn(self, item: Interjection) -> None:
        """A line from the floor: it never waits for the model. The participant it names is
        recorded (`debate/addressing.py`): the turn order has them answer it next."""
        names = [p.name for p in self.run.cast.participants]
        turn = Turn(index=len(self.run.transcript.turns), speaker=item.speaker, kind=TurnKind.AUDIENCE,
                    content=item.text, status=TurnStatus.STREAMING, started_at=self.run.out.clock(),
                    source=item.source, addressed=addressed(item.text, names))
        self.run.transcript.add(turn)
        for event in said_at_once(self.run.out.session_id, turn, self.run.out.clock, streamed=False):
            await self.run.out.publish(event)

    # -- drawn from the model -------------------------------------------------------------------
    async def agent_turn(self, persona: Persona, phase: str | None = None, *, answers: str | None = None) -> None:
        """The persona's turn; `answers` (an audience line's node) makes it the answer to that
        line, and its prompt's cue says so."""
        index = len(self.run.transcript.turns)
        kind = TurnKind.MODERATOR if persona is self.run.cast.moderator else TurnKind.AGENT
        sampling = self.prompts.sampling(persona, index, 0)
        rendered = await self.prompts.fit(persona, sampling.max_tokens, answering=answers is not None)
        turn = Turn(index=index, speaker=persona.name, kind=kind, started_at=self.run.out.clock(), sampling=sampling,
                    phase=phase, answers=answers)
        self.run.transcript.add(turn)
        self.floor.current_speaker, self.floor.next_speaker = persona.name, None
        self.control.cut = None
        await self.run.out.publish(turn_started(self.run.out.session_id, turn))
        earlier = [t.content for t in self.run.transcript.turns[:index] if visible(t)]
        anchored = rendered.messages is None or self.run.engine.info.backend != "openai"
        draft = _Draft(persona, rendered, earlier, self.prompts.never_copy(persona, earlier),
                       self.run.cast.names(self.run.transcript.turns), self.prompts.side(persona), anchored)
        fallback = ""  # the last draw that did not say the other side, should every draw fail
        try:
            for retry in range(MAX_RESAMPLES + 1):
                if retry:
                    sampling = self.prompts.sampling(persona, index, retry)
                    turn.sampling = sampling
                    turn.retries = retry
                turn.error = None
                opening = self.prompts.opening(persona, index, retry, draft.anchored)
                if await self._draw(turn, sampling, draft, opening):
                    break
                if turn.error is None:
                    fallback = turn.content
            else:
                if turn.error is not None:  # the last draw said the other side: it is never kept
                    turn.content = fallback
        except asyncio.CancelledError:
            turn.status = TurnStatus.INTERRUPTED
            await self._finish(turn)
            raise
        await self._finish(turn)

    async def _draw(self, turn: Turn, sampling: SamplingParams, draft: _Draft, opening: str = "") -> bool:
        """One draw of `turn`; True when it is settled, False to draw again (not clean, or it
        declares the side opposite to the speaker's). `opening` is said first, the model goes on."""
        persona = draft.persona
        lead = (" " if draft.rendered.prompt.endswith(":") else "") + opening if opening else ""
        request = GenerationRequest(
            agent_id=self.run.agent_key(persona.name), prompt=draft.rendered.prompt + lead, sampling=sampling,
            messages=draft.rendered.messages if not opening else None, banned_texts=draft.banned,
            allowed_texts=self.prompts.repeatable(),
        )
        generation = self.run.engine.generate(request)
        self.control.generation = generation
        if opening:
            await self.run.out.publish(TokenStreamed(self.run.out.session_id, turn.index, persona.name, opening))
        try:
            async for piece in generation:
                await self.run.out.publish(TokenStreamed(self.run.out.session_id, turn.index, persona.name, piece))
        except asyncio.CancelledError:
            generation.cancel()
            raise
        except Exception as failure:  # noqa: BLE001 - the engine's fault becomes a failed turn
            turn.content = generation.text.strip()  # what was said before the fault is kept
            turn.stats = generation.stats
            await self._fail(turn, failure)
        finally:
            self.control.generation = None
        turn.stats = generation.stats
        finish = generation.stats.finish_reason if generation.stats else "stop"
        if self.control.cut == "skip":
            turn.content, turn.status, turn.error = "", TurnStatus.SKIPPED, SKIPPED
            return True
        cut_short = finish in ("length", "context")
        trimmed = trim_turn(generation.text, finish_reason="length" if cut_short else "stop", names=draft.names,
                            markers=self.run.engine.info.eos_markers)
        said = self.prompts.clean(persona, trimmed, draft.names)
        turn.content = join_opening(opening, said)
        if self.control.cut == "interrupt" or finish == "cancelled":
            turn.status = TurnStatus.INTERRUPTED
            return True
        if not said.strip() or not check_turn(turn.content, persona.name, draft.names, draft.earlier).clean:
            turn.status = TurnStatus.DEGENERATE
            return False
        if self.prompts.format.name == "chat" and names_self(said, persona.name):
            turn.status = TurnStatus.DEGENERATE  # "Priya, your turn." from Priya: drawn again
            return False
        if contradicts(said, draft.side):
            turn.status = TurnStatus.DEGENERATE
            turn.error = f"said the side opposite to {persona.name}'s"
            return False
        turn.status = TurnStatus.COMPLETE
        return True

    async def _finish(self, turn: Turn) -> None:
        if turn.status == TurnStatus.COMPLETE:
            turn.error = None
        turn.finished_at = self.run.out.clock()
        self.floor.current_speaker = None
        await self.run.out.publish(TurnFinished(self.run.out.session_id, turn))

    async def _fail(self, turn: Turn, failure: BaseException) -> None:
        message = str(failure) if isinstance(failure, TownhallError) else f"{type(failure).__name__}: {failure}"
        turn.status = TurnStatus.FAILED
        turn.error = message
        turn.finished_at = self.run.out.clock()
        self.floor.current_speaker = None
        await self.run.out.publish(TurnFailed(self.run.out.session_id, turn, message))
        raise TurnFailure(f"{turn.speaker}'s turn failed: {message}")
