"""A short seeded town hall on the real embedded model: phases in order, mostly clean turns."""

from __future__ import annotations

from pathlib import Path

import pytest

from townhall.bench.quality import bench_spec, load_motions, run_quality_bench
from townhall.engine.local import LocalEngine
from townhall.domain.personas import PersonaRegistry
from townhall.debate.policies import CLOSING, OPENING, QUESTIONS
from townhall.debate.quality import score_debate
from townhall.debate.scheduler import Scheduler

pytestmark = pytest.mark.model


async def test_seeded_agenda_debate_is_in_order_and_mostly_clean(model_path: Path) -> None:
    # 5 opening, 3 questions, 6 closing; no closing ballot (its announcement would be a 15th turn)
    spec = bench_spec(load_motions()[0], 14).model_copy(update={"ballot": False})
    registry = PersonaRegistry.default()
    people = registry.resolve([spec.moderator or "", *spec.participants])
    engine = LocalEngine(model_path, n_ctx=spec.n_ctx)
    try:
        scheduler = Scheduler(engine, spec, people)
        assert await scheduler.run() == "closing_phrase"
    finally:
        await engine.aclose()
    turns = scheduler.turns
    order = {OPENING: 0, QUESTIONS: 1, CLOSING: 2}
    ranks = [order[t.phase] for t in turns if t.phase]
    assert len(ranks) == len(turns) == 14 and ranks == sorted(ranks) and set(ranks) == {0, 1, 2}
    assert [t.speaker for t in turns[:5]] == [spec.moderator, *spec.participants]
    model_turns = [(t.speaker, t.content, not t.scripted) for t in turns]
    score, scored = score_debate(model_turns, [p.name for p in people])
    assert score.turns == 10
    assert score.clean_rate >= 0.75, [(s.speaker, s.text, s.reason) for s in scored]
    assert score.mean_words >= 8


async def test_quality_bench_writes_transcripts_and_figures(model_path: Path, tmp_path: Path) -> None:
    engine = LocalEngine(model_path, n_ctx=4096)
    try:
        summary = await run_quality_bench(
            engine, PersonaRegistry.default(), load_motions()[:1], turns=6, transcripts=tmp_path
        )
    finally:
        await engine.aclose()
    (debate,) = summary["debates"]
    # Six turns: the moderator's welcome, four openings, then the closing call (scripted).
    assert debate["turns"] == 4 and summary["overall"]["turns"] == 4
    assert 0 <= debate["clean_rate"] <= 1 and debate["seconds_per_turn"] > 0
    # Each clean opening was probed right after it was said; the closing ballot is timed apart.
    assert 1 <= debate["probes"] <= 4 and 0 < debate["probe/debate_pct"] < 100 and debate["ballot_s"] > 0
    assert summary["overall"]["probe/debate_pct"] == debate["probe/debate_pct"]
    (path,) = tmp_path.glob("*.txt")
    text = path.read_text()
    assert "-- opening --" in text and "-- closing --" in text and "Margaret: Good evening" in text
    assert "clean_rate:" in text
