"""Restored states rolled back on the real model: after an edit in the middle of a transcript
an agent evaluates only from the edit on, and what it then says is exactly what an engine
that evaluated the whole prompt says."""

from __future__ import annotations

from pathlib import Path

import pytest

from townhall.engine.base import GenerationRequest, SamplingParams
from townhall.engine.local import LocalEngine

pytestmark = pytest.mark.model

HEADER = (
    "Transcript of the Millbrook town hall. Motion: should the town build a new bridge?\n"
    "Ada is a retired civil engineer. Bram runs the bakery on Main Street.\n\n"
)
LINES = [
    "Bram: The bridge will bring customers to Main Street.",
    "Ada: The old piers will not carry a heavy deck for long.",
    "Bram: Then build new piers, the ferry costs us an hour a day.",
    "Ada: New piers cost twice what the council has set aside.",
]
GREEDY = SamplingParams(temperature=0.0, max_tokens=24, stop=("\n",))


def serve(engine: LocalEngine, agent: str, prompt: str):
    pieces: list[str] = []
    stats = engine.serve_blocking(GenerationRequest(agent, prompt, GREEDY), feed=pieces.append)
    return "".join(pieces), stats


def test_an_edit_in_the_middle_costs_only_the_tokens_after_it_and_stays_exact(model_path: Path) -> None:
    before = HEADER + "\n".join(LINES) + "\nAda:"
    edited = LINES[:2] + ["Bram: Then build new piers, whatever they cost."] + LINES[3:]
    after = HEADER + "\n".join(edited) + "\nAda:"
    eng = LocalEngine(model_path, n_ctx=2048)
    eng.load_blocking()
    try:
        serve(eng, "Ada", before)
        serve(eng, "Bram", HEADER + "Bram:")  # Ada is no longer resident: her state is restored
        text, stats = serve(eng, "Ada", after)
        shared = len(eng.tokenize(HEADER + "\n".join(LINES[:2]) + "\nBram: Then build new piers,"))
        assert stats.restore_ms > 0
        assert stats.reused_tokens >= shared - 1  # back to the edit, not to zero
        assert stats.prefill_tokens == stats.prompt_tokens - stats.reused_tokens
        assert stats.prefill_tokens <= stats.prompt_tokens - shared + 2
        # Ada still resident: a second edit further up rolls the live sequence back.
        _, live = serve(eng, "Ada", HEADER + LINES[0] + "\nAda:")
        assert live.restore_ms == 0 and live.reused_tokens >= len(eng.tokenize(HEADER + LINES[0])) - 1
    finally:
        eng._close_model()
    fresh = LocalEngine(model_path, n_ctx=2048)
    fresh.load_blocking()
    try:
        expected, whole = serve(fresh, "Ada", after)
    finally:
        fresh._close_model()
    assert whole.reused_tokens == 0
    assert text == expected and text.strip()
