"""generate's prompt layout: the topic after everything the conversations have in common.

A batched local engine copies the KV cells of a prompt's start from any sequence holding
the same tokens, so the longer the common start of generate's first prompts, the less it
evaluates. A debate (`townhall`, `townhall run`) keeps its own layout.
"""

from __future__ import annotations

import os
from pathlib import Path

from test_generate_parallel import make_config, make_runner, script
from townhall.engine.scripted import ScriptedEngine
from townhall.domain.personas import Persona, PersonaRegistry
from townhall.debate.prompts import TranscriptFormat, topic_last_format
from townhall.domain.spec import TownHallSpec
from townhall.store import Store


def spec(word: str) -> TownHallSpec:
    return TownHallSpec(title=f"Word lesson: {word}", motion=f'The teacher conveys the meaning of "{word}".',
                        participants=["Student", "Teacher"])


def personas() -> list[Persona]:
    return PersonaRegistry.default().resolve(["Student", "Teacher"])


def test_the_topic_comes_after_all_that_conversations_share() -> None:
    people = personas()
    bridge, leaf = (topic_last_format(TranscriptFormat(spec(w), people)) for w in ("bridge", "leaf"))
    for persona in people:
        a, b = bridge.render(persona, None, []).prompt, leaf.render(persona, None, []).prompt
        common = os.path.commonprefix([a, b])
        assert common.endswith("Tonight's meeting: the Word lesson: ")
        assert f"About {persona.name}:" in common and "From the minutes of an earlier meeting" in common
        title, motion = a.index("Word lesson: bridge"), a.index('meaning of "bridge"')
        assert a.index(f"{persona.name} says things like:") < title < motion < a.index("Transcript of tonight's")
        assert a.count("bridge") == 2  # named once in the title, once in the motion, nowhere else


def test_a_debate_keeps_its_title_and_motion_first() -> None:
    people = personas()
    debate = TranscriptFormat(spec("bridge"), people)
    prompt = debate.render(people[0], None, []).prompt
    assert prompt.startswith("Minutes of the Word lesson: bridge, a public town hall meeting.\nMotion: ")
    assert "Tonight's meeting" not in prompt
    assert topic_last_format(topic_last_format(debate)).render(people[0], None, []).prompt.count("bridge") == 2


async def test_generate_sends_prompts_in_the_topic_last_layout(tmp_path: Path) -> None:
    engine = ScriptedEngine(script())
    with Store.open(tmp_path / "th.db") as store:
        summary = await make_runner(tmp_path, engine, make_config(), store, parallel=2).run()
    assert summary.written == 3
    firsts = [r.prompt for r in engine.requests if r.prompt.endswith("Transcript of tonight's meeting:\nStudent:")]
    assert len(firsts) == 3
    assert len({p.split("Tonight's meeting")[0] for p in firsts}) == 1  # one common start for all topics
    assert all(p.startswith("Minutes of a public town hall meeting.\nSpeakers:") for p in engine.requests
               for p in [p.prompt])
