"""`townhall bench --generate`: the same conversations one at a time and N at a time, in one process.

What `generate --parallel N` buys. The workload is generate's own (two speakers, one
topic word each, the student/teacher motion, generate's topic-last prompt layout), greedy,
so every run is repeatable for a given N; each N gets a fresh engine built for it (`make_engine(N)`: the local engine
with `parallel=N`, or N streams to a server) and the same conversations, run as
sessions N at a time with per-slot agent prefixes, as the generate runner does. It
reports tokens/s over wall time, the ratio to N=1, how many conversations' text
differ from N=1 (llama.cpp does not promise the same floats across batch sizes, so a
greedy pick can flip) and how many are broken (an error, an empty turn, nothing said)
or unclean by `townhall.debate.quality`.

No store and no output file: those are the generate runner's, and a benchmark of
decoding must not time SQLite.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from townhall.engine.base import Engine, SamplingOverrides
from townhall.domain.personas import Persona
from townhall.debate.quality import check_turn
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import Turn, TurnKind, TurnStatus

MOTION = 'A conversation between a student and a teacher, where the teacher conveys the meaning of "{word}".'
SPEAKERS = ("Student", "Teacher")
TOPICS = (
    "bridge", "leaf", "pocket", "bear", "promise", "room", "village", "camera", "river", "ladder", "window",
    "garden", "lantern", "harbour", "orchard", "compass", "kettle", "meadow", "thread", "anchor", "pebble",
    "candle", "tunnel", "market", "feather", "island", "blanket", "engine", "mirror", "ticket", "basket", "cloud",
)


def bench_specs(count: int, *, turns: int, tokens: int, n_ctx: int, seed: int = 7) -> list[TownHallSpec]:
    """`count` conversations on distinct topics, greedy, `turns` turns of at most `tokens` tokens."""
    if not 1 <= count <= len(TOPICS):
        raise ValueError(f"between 1 and {len(TOPICS)} conversations")
    sampling = SamplingOverrides(temperature=0.0, max_tokens=tokens)
    return [
        TownHallSpec(
            title=f"Word lesson: {word}", motion=MOTION.replace("{word}", word), participants=list(SPEAKERS),
            max_turns=turns, seed=seed + i, sampling=sampling, n_ctx=n_ctx, context_strategy="truncate",
            ballot=False,
        )
        for i, word in enumerate(TOPICS[:count])
    ]


@dataclass
class RunFigures:
    """One N: what it produced and how fast."""

    parallel: int
    unshared: bool  # run with prefix sharing turned off (batching alone)
    seconds: float
    tokens: int
    texts: list[list[str]]  # per conversation, its turns' text
    broken: int
    unclean_turns: int
    turns: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def _broken(reason: str, turns: Sequence[Turn]) -> bool:
    spoken = [t for t in turns if t.kind in (TurnKind.AGENT, TurnKind.MODERATOR)]
    if reason == "error" or not spoken:
        return True
    return any(t.status == TurnStatus.COMPLETE and not t.content.strip() for t in spoken)


def _unclean(turns: Sequence[Turn]) -> int:
    names = list(SPEAKERS)
    earlier: list[str] = []
    unclean = 0
    for turn in turns:
        if turn.kind == TurnKind.AGENT and turn.status == TurnStatus.COMPLETE:
            unclean += not check_turn(turn.content, turn.speaker, names, earlier).clean
        if turn.content:
            earlier.append(turn.content)
    return unclean


def _stop_sharing(engine: Engine) -> None:
    """Turn the batched local engine's prefix sharing off (a baseline: batching alone)."""
    batch = getattr(engine, "batch", None)
    if batch is not None:
        batch.sharing = False


async def run_conversations(
    engine: Engine, specs: Sequence[TownHallSpec], personas: Sequence[Persona], parallel: int, *, share: bool = True
) -> RunFigures:
    """Every spec as a session, `parallel` at a time on `engine` (started here, not closed),
    in generate's prompt layout (topic last); `share=False` turns prefix sharing off."""
    from townhall.debate.scheduler import Scheduler
    from townhall.debate.session import Session, SessionPlan, SessionResult, SessionScheduler

    await engine.start()
    if not share:
        _stop_sharing(engine)
    free = list(range(parallel))
    gate = asyncio.Semaphore(parallel)

    async def one(spec: TownHallSpec) -> SessionResult:
        async with gate:
            slot = free.pop(0)
            prefix = f"{slot}/" if parallel > 1 else ""

            def scheduler(engine: Engine, spec: TownHallSpec, personas: list[Persona], **kw: Any) -> SessionScheduler:
                return Scheduler(engine, spec, personas, agent_prefix=prefix, topic_last=True, **kw)

            try:
                return await Session(engine, SessionPlan(spec, personas), scheduler_factory=scheduler).run()
            finally:
                for persona in personas:
                    engine.forget(f"{prefix}{persona.name}")
                free.append(slot)

    started = time.perf_counter()
    results = await asyncio.gather(*(one(spec) for spec in specs))
    seconds = time.perf_counter() - started
    tokens = sum(t.stats.generated_tokens for r in results for t in r.turns if t.stats is not None)
    return RunFigures(
        parallel=parallel,
        unshared=not share,
        seconds=seconds,
        tokens=tokens,
        texts=[[t.content for t in r.turns] for r in results],
        broken=sum(_broken(r.reason, r.turns) for r in results),
        unclean_turns=sum(_unclean(r.turns) for r in results),
        turns=sum(1 for r in results for t in r.turns if t.kind == TurnKind.AGENT),
    )


async def run_generate_bench(
    make_engine: Callable[[int], Engine],
    specs: Sequence[TownHallSpec],
    personas: Sequence[Persona],
    parallels: Sequence[int],
    *,
    progress: Callable[[str], None] = lambda line: None,
    close: Callable[[Engine], Awaitable[None]] | None = None,
    unshared: Sequence[int] = (),
) -> dict[str, Any]:
    """Each N in `parallels` (1 first, added if missing) on its own engine; figures against N=1.

    Each N in `unshared` runs once more with prefix sharing off, so the table shows what
    batching alone buys and what sharing the prompts' common start adds."""
    order = [(1, True)] + [(n, True) for n in dict.fromkeys(parallels) if n != 1]
    order += [(n, False) for n in dict.fromkeys(unshared) if n != 1]
    runs: list[RunFigures] = []
    for n, share in order:
        engine = make_engine(n)
        try:
            run = await run_conversations(engine, specs, personas, n, share=share)
        finally:
            await (close(engine) if close is not None else engine.aclose())
        runs.append(run)
        label = n if share else f"{n} without sharing"
        progress(f"N={label}: {run.tokens} tokens in {run.seconds:.1f}s, {run.tokens_per_s:.1f} tok/s")
    base = runs[0]
    rows = []
    for run in runs:
        differ = sum(a != b for a, b in zip(base.texts, run.texts, strict=True))
        rows.append({
            "parallel": run.parallel,
            "unshared": run.unshared,
            "seconds": round(run.seconds, 2),
            "tokens": run.tokens,
            "tokens_per_s": round(run.tokens_per_s, 1),
            "speedup": round(run.tokens_per_s / base.tokens_per_s, 2) if base.tokens_per_s else None,
            "differ_from_1": differ,
            "broken": run.broken,
            "unclean_turns": run.unclean_turns,
            "turns": run.turns,
        })
    return {"conversations": len(specs), "runs": rows}


def report_lines(summary: dict[str, Any]) -> list[str]:
    """A table: one row per N."""
    n = summary["conversations"]
    lines = [f"{n} conversations, greedy; each N on its own engine",
             f"{'N':>4} {'seconds':>8} {'tokens':>7} {'tok/s':>7} {'vs N=1':>7} {'differ':>7} {'broken':>7} "
             f"{'unclean':>8}"]
    for row in summary["runs"]:
        speedup = "-" if row["speedup"] is None else f"{row['speedup']:.2f}x"
        label = f"{row['parallel']}*" if row.get("unshared") else f"{row['parallel']}"
        lines.append(
            f"{label:>4} {row['seconds']:>8.1f} {row['tokens']:>7} {row['tokens_per_s']:>7.1f} "
            f"{speedup:>7} {row['differ_from_1']:>4}/{n:<2} {row['broken']:>7} "
            f"{row['unclean_turns']:>4}/{row['turns']:<3}"
        )
    lines.append("differ: conversations whose text is not N=1's (llama.cpp's floats vary with the batch size)")
    if any(row.get("unshared") for row in summary["runs"]):
        lines.append("N*: batched without prefix sharing (every prompt evaluated in full)")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m townhall.bench.generate`: the local engine only, with rows without sharing."""
    import argparse

    from townhall.engine.local import LocalEngine
    from townhall.domain.personas import PersonaRegistry

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--parallel", default="1,4,8", help="the Ns, comma-separated")
    parser.add_argument("--unshared", default="8", help="Ns to run again without prefix sharing ('' for none)")
    parser.add_argument("--conversations", type=int, default=8)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    specs = bench_specs(args.conversations, turns=args.turns, tokens=args.tokens, n_ctx=args.n_ctx)
    personas = PersonaRegistry.default().resolve(list(SPEAKERS))

    def numbers(text: str) -> list[int]:
        return [int(n) for n in text.split(",") if n.strip()]

    summary = asyncio.run(run_generate_bench(
        lambda n: LocalEngine(args.model, n_ctx=args.n_ctx, parallel=n), specs, personas, numbers(args.parallel),
        progress=lambda line: print(line, flush=True), unshared=numbers(args.unshared)))
    for line in report_lines(summary):
        print(line)


if __name__ == "__main__":
    main()
