"""How a run tells its subscribers what happens: the announcer, and the events of a turn.

Every collaborator of the scheduler that publishes gets one `Announcer` (the session's id,
its clock, its bus) instead of three separate arguments, so events carry the same id and
clock wherever they are built.

Every turn opens with TurnStarted, which carries the turn's place in the tree of branches
(node, parent, branch) so the record can key it. A turn that is not drawn from the model (an
agenda line, the watcher's edit, an audience line) is said at once: TurnStarted, its whole
text as one TokenStreamed piece when it is spoken text, then TurnFinished. The scheduler and
the branch service both say turns that way, so both use `said_at_once`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from townhall.domain.events import Event, EventBus, TokenStreamed, TurnFinished, TurnStarted
from townhall.domain.turns import Turn, TurnStatus


@dataclass(frozen=True)
class Announcer:
    """Publishes one session's events on its bus, in order, on the scheduler's loop."""

    session_id: str
    clock: Callable[[], float]
    bus: EventBus

    async def publish(self, event: Event) -> None:
        await self.bus.apublish(event)


def turn_started(session_id: str, turn: Turn) -> TurnStarted:
    """The TurnStarted of `turn`, already placed in the tree (its node, parent and branch set)."""
    return TurnStarted(session_id, turn.index, turn.speaker, turn.kind, turn.started_at, turn.phase,
                       node=turn.node, parent=turn.parent, branch=turn.branch)


def said_at_once(
    session_id: str, turn: Turn, clock: Callable[[], float], *, streamed: bool = True
) -> Iterator[TurnStarted | TokenStreamed | TurnFinished]:
    """The events of a turn whose text is known before it starts.

    A generator on purpose: the turn is settled (COMPLETE, `finished_at`) only after the
    caller has handed on TurnStarted and the text, as a generated turn would be. `streamed`
    is False for audience lines, which views show whole and never stream.
    """
    yield turn_started(session_id, turn)
    if streamed:
        yield TokenStreamed(session_id, turn.index, turn.speaker, turn.content)
    turn.status = TurnStatus.COMPLETE
    turn.finished_at = clock()
    yield TurnFinished(session_id, turn)
