"""Helpers the store, export, search and resume tests share: personas and a debate
published through a real EventBus into a real Store (the scheduler's events, by hand)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from townhall.engine.base import EngineInfo, GenerationRequest, GenerationStats, SamplingParams
from townhall.domain.events import (
    EventBus,
    MinutesWritten,
    OutcomeDecided,
    SessionEnded,
    SessionStarted,
    StanceMeasured,
    TokenStreamed,
    TurnFinished,
    TurnStarted,
    Vote,
)
from townhall.domain.personas import Persona
from townhall.domain.spec import TownHallSpec
from townhall.store import Store
from townhall.domain.turns import Turn, TurnKind, TurnStatus

HOSTILE = ("<script>alert('x')</script> & **bold** [link](http://evil) `code` # head \x1b[31mred\x1b[0m "
           "\"q\" ' ; DROP TABLE turns; --")


def personas() -> list[Persona]:
    return [
        Persona(name="Ada", title="Engineer", bio="Builds bridges.", style="Precise.", color="#ff0000"),
        Persona(name="Bo", title="Farmer", bio="Grows wheat.", style="Plain.", color="red;}</style><script>x</script>"),
        Persona(name="Cy", title="Chair", bio="Keeps order.", style="Brief.", moderator=True),
    ]


def spec(motion: str = "Build a new bridge over the river", **extra: object) -> TownHallSpec:
    return TownHallSpec(motion=motion, participants=["Ada", "Bo"], moderator="Cy", seed=7, **extra)


async def record_debate(
    store: Store,
    session_id: str,
    lines: list[tuple[str, str]],
    *,
    motion: str = "Build a new bridge over the river",
    end: str | None = "max_turns",
    engine: EngineInfo | None = None,
    start_at: float = 1_700_000_000.0,
    first_index: int = 0,
    resumed: bool = False,
    outcome: bool = False,
    minutes: str = "Minutes. Ada: for, because the ferry is slow. Bo: against, because of the cost.",
) -> None:
    """Publish a whole debate (one TurnStarted, tokens, TurnFinished per line) into `store`;
    with `outcome`, a stance reading of Ada and Bo after each of their turns, the closing ballot
    (Ada for, Bo against: a tie) and `minutes`."""
    bus = EventBus()
    unsubscribe = store.attach(bus)
    info = engine or EngineInfo(backend="scripted", model_name="scripted", n_ctx=4096, device="CPU")
    await bus.apublish(SessionStarted(session_id, spec(motion).model_dump(), tuple(personas()), info,
                                      start_at, resumed=resumed))
    for offset, (speaker, text) in enumerate(lines):
        index = first_index + offset
        at = start_at + index * 10
        kind = TurnKind.MODERATOR if speaker == "Cy" else TurnKind.AGENT
        await bus.apublish(TurnStarted(session_id, index, speaker, kind, at))
        for word in text.split(" "):
            await bus.apublish(TokenStreamed(session_id, index, speaker, word + " "))
        turn = Turn(index=index, speaker=speaker, kind=kind, content=text, status=TurnStatus.COMPLETE,
                    started_at=at, finished_at=at + 5,
                    stats=GenerationStats(prompt_tokens=100 + index, reused_tokens=90, prefill_tokens=10 + index,
                                          generated_tokens=len(text.split()), ttft_ms=12.5, decode_tps=47.0,
                                          total_ms=900.0),
                    sampling=SamplingParams(temperature=0.7, seed=7, stop=("\nAda:",)))
        await bus.apublish(TurnFinished(session_id, turn))
        if outcome and speaker in ("Ada", "Bo"):
            for agent, p in (("Ada", 0.8 - 0.01 * index), ("Bo", 0.3 + 0.01 * index)):
                await bus.apublish(StanceMeasured(session_id, agent, index // 2, index, p, "logits", at + 6))
    if outcome:
        at = start_at + 900
        votes = (Vote("Ada", "for", 0.7), Vote("Bo", "against", 0.35))
        await bus.apublish(OutcomeDecided(session_id, votes, 1, 1, "tied", "The vote is tied, 1 to 1.", at))
        await bus.apublish(MinutesWritten(session_id, minutes, at + 1))
    if end is not None:
        await bus.apublish(SessionEnded(session_id, end, start_at + 1000, len(lines)))
    unsubscribe()


def open_store(tmp_path: Path, name: str = "th.db") -> Store:
    return Store.open(tmp_path / name)


BRANCHED_ID = "tree01"


async def record_branched(store: Store, session_id: str = BRANCHED_ID) -> dict[str, Turn]:
    """Publish a debate with branches, in the scheduler's event order, into `store`:

    branch 1: Ada, Bo, Ada, Bo (stances after turns 1 and 3);
    branch 2: regenerates turn 2 (fork after turn 1), a stance after it, then
    branch 3: regenerates turn 2 again, degenerate; the watcher switches back to branch 2,
    which is voted on (outcome and minutes); then
    branch 4: the watcher edits turn 1 (fork after turn 0); it stays current.
    Returns the turns by name: t0, t1, t2, t3, t2b, t2c, t1e.
    """
    from townhall.domain.branches import TurnTree
    from townhall.domain.events import BranchCreated, BranchSwitched
    from townhall.domain.turns import WATCHER

    bus = EventBus()
    unsubscribe = store.attach(bus)
    info = EngineInfo(backend="scripted", model_name="scripted", n_ctx=4096, device="CPU")
    at = 1_700_000_000.0
    await bus.apublish(SessionStarted(session_id, spec().model_dump(), tuple(personas()), info, at))
    tree = TurnTree()
    made: dict[str, Turn] = {}

    async def say(name: str, speaker: str, text: str, status: TurnStatus = TurnStatus.COMPLETE,
                  author: str | None = None) -> None:
        nonlocal at
        at += 10
        turn = tree.add(Turn(index=0, speaker=speaker, kind=TurnKind.AGENT, started_at=at))
        await bus.apublish(TurnStarted(session_id, turn.index, speaker, TurnKind.AGENT, at, node=turn.node,
                                       parent=turn.parent, branch=turn.branch))
        for word in text.split(" "):
            await bus.apublish(TokenStreamed(session_id, turn.index, speaker, word + " "))
        turn.content, turn.status, turn.finished_at, turn.author = text, status, at + 5, author
        await bus.apublish(TurnFinished(session_id, turn))
        made[name] = turn

    async def branch(fork: str | None, reason: str) -> None:
        parent = tree.current
        new = tree.branch_from(fork, reason, at)
        await bus.apublish(BranchCreated(session_id, new.number, parent, fork, reason, at))
        await bus.apublish(BranchSwitched(session_id, new.number, tuple(tree.path()), len(tree.path()), at))

    async def stance(index: int, p: float) -> None:
        await bus.apublish(StanceMeasured(session_id, "Ada", 1, index, p, "logits", at + 6))

    await say("t0", "Ada", "Steel bridges last")
    await say("t1", "Bo", "Wooden bridges are cheap")
    await stance(1, 0.8)
    await say("t2", "Ada", "Steel wins in floods")
    await say("t3", "Bo", "Floods are rare here")
    await stance(3, 0.7)
    await branch(made["t1"].node, "regenerate")
    await say("t2b", "Ada", "Concrete is the answer")
    await stance(2, 0.6)
    await branch(made["t1"].node, "regenerate")
    await say("t2c", "Ada", "the the the the", status=TurnStatus.DEGENERATE)
    path = tree.switch(2)
    await bus.apublish(BranchSwitched(session_id, 2, tuple(path), 2, at))
    votes = (Vote("Ada", "for", 0.6), Vote("Bo", "against", 0.4))
    await bus.apublish(OutcomeDecided(session_id, votes, 1, 1, "tied", "The vote is tied, 1 to 1.", at + 7))
    await bus.apublish(MinutesWritten(session_id, "Minutes of the concrete branch.", at + 8))
    await branch(made["t0"].node, "edit")
    await say("t1e", "Bo", "Wood is cheaper and greener", author=WATCHER)
    await bus.apublish(SessionEnded(session_id, "stopped", at + 100, 2))
    unsubscribe()
    return made


def long_reply() -> Callable[[GenerationRequest], str]:
    """Turns long enough (about 4 KB) that each needs new pages of the database (the record-fault tests)."""
    count = iter(range(1, 10_000))

    def script(request: GenerationRequest) -> str:
        n = next(count)
        return " ".join(f"reason{n}x{i}" for i in range(400)) + "."

    return script
