"""Batched decoding against one-at-a-time: the same greedy requests through LocalEngine(parallel=N).

Every request is submitted at once, as N concurrent conversations would; the engine with
parallel=1 serves them in turn, a batched one steps up to N together. Each request is forced
to the same length (`min_tokens` = `max_tokens` holds off every end), so the figures compare
the same work; the wall time includes tokenizing, prefill and state saves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from townhall.engine.base import GenerationRequest, SamplingParams
from townhall.engine.local import LocalEngine

Progress = Callable[[str], None]
_TOPICS = ("a new bridge", "a later school day", "a four-day week", "free buses", "a dog park",
           "a night market", "solar roofs", "a car-free Main Street")
_NAMES = ("Ada", "Bram", "Cleo", "Dev", "Esme", "Finn", "Gus", "Hana")


@dataclass
class BatchFigure:
    """One engine setting's run over the same requests."""

    parallel: int
    requests: int
    generated_tokens: int
    wall_s: float
    differ_from_first: int = 0  # requests whose text differs from the first setting's
    overhead_share: float = 0.0  # batched: the part of the batch loop's time spent outside llama_decode

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / max(self.wall_s, 1e-9)


def bench_requests(count: int, tokens: int) -> list[GenerationRequest]:
    """`count` distinct greedy requests of exactly `tokens` generated tokens each, one agent each."""
    sampling = SamplingParams(temperature=0.0, max_tokens=tokens, min_tokens=tokens)
    out = []
    for i in range(count):
        name, topic = _NAMES[i % len(_NAMES)], _TOPICS[(i // len(_NAMES) + i) % len(_TOPICS)]
        prompt = (f"Transcript of the Millbrook town hall, meeting {i + 1}. Motion: should the town "
                  f"try {topic}?\n{name} speaks first and says what the town should do, and why.\n\n{name}:")
        out.append(GenerationRequest(f"bench-{i}", prompt, sampling))
    return out


async def _run(engine: LocalEngine, requests: Sequence[GenerationRequest]) -> tuple[list[str], int, float]:
    await engine.start()
    engine.token_classes()  # scanned once per model; not part of the figure
    started = time.perf_counter()
    gens = [engine.generate(r) for r in requests]
    texts = await asyncio.gather(*(g.result() for g in gens))
    wall = time.perf_counter() - started
    return list(texts), sum(g.stats.generated_tokens for g in gens if g.stats), wall


def _overhead(engine: LocalEngine) -> float:
    batch = engine.batch
    if batch is None or batch.step_s <= 0:
        return 0.0
    return 1 - batch.decode_s / batch.step_s


def run_batch_bench(
    model_path: str | Path | None = None,
    *,
    parallel: Sequence[int] = (1, 4, 8),
    requests: int = 16,
    tokens: int = 48,
    n_ctx: int = 1024,
    threads: int | None = None,
    progress: Progress = lambda line: None,
) -> list[BatchFigure]:
    """Run the same requests on one engine per `parallel` value; the first value is the baseline."""
    work = bench_requests(requests, tokens)
    figures: list[BatchFigure] = []
    first: list[str] | None = None
    for n in parallel:
        engine = LocalEngine(model_path, n_ctx=n_ctx, threads=threads, parallel=n)

        async def once(engine: LocalEngine = engine) -> tuple[list[str], int, float, float]:
            try:
                texts, generated, wall = await _run(engine, work)
                return texts, generated, wall, _overhead(engine)
            finally:
                await engine.aclose()

        texts, generated, wall, overhead = asyncio.run(once())
        figure = BatchFigure(n, len(work), generated, wall, overhead_share=overhead)
        if first is None:
            first = texts
        else:
            figure.differ_from_first = sum(a != b for a, b in zip(first, texts, strict=True))
        figures.append(figure)
        progress(format_figure(figure, figures[0]))
    return figures


def format_figure(figure: BatchFigure, baseline: BatchFigure) -> str:
    ratio = figure.tokens_per_s / max(baseline.tokens_per_s, 1e-9)
    return (f"parallel {figure.parallel:>3}: {figure.generated_tokens} tokens in {figure.wall_s:6.2f} s = "
            f"{figure.tokens_per_s:6.1f} tok/s  x{ratio:.2f}  ({figure.differ_from_first} of "
            f"{figure.requests} texts differ from parallel {baseline.parallel}; "
            f"{figure.overhead_share:.1%} of the batch loop outside llama_decode)")


if __name__ == "__main__":
    run_batch_bench(progress=print)
