"""Prompt formats: the transcript for base models, chat templates for instruct models."""

from __future__ import annotations

import pytest

from townhall.errors import ConfigError
from townhall.personas import Persona
from townhall.prompts import ChatFormat, Line, TranscriptFormat, choose_format, stop_strings
from townhall.spec import TownHallSpec

ANN = Persona(name="Ann", title="engineer", bio="Ann builds bridges.", style="precise", examples=("Count the bolts.",))
BOB = Persona(name="Bob", title="baker", bio="Bob bakes.", style="warm")
SPEC = TownHallSpec(motion="Build a bridge?", participants=["Ann", "Bob"])

# A ChatML-style template, as a GGUF would carry in tokenizer.chat_template.
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_transcript_header_persona_lines_and_cue() -> None:
    fmt = TranscriptFormat(SPEC, [ANN, BOB])
    prompt = fmt.render(ANN, None, [Line("Bob", "Bread first."), Line("Ann", "Bridges first.")]).prompt
    assert prompt.startswith("Minutes of a public town hall meeting.\nMotion: Build a bridge?\nSpeakers:\n- Ann, engineer.\n- Bob, baker.\n")
    assert "About Ann: Ann builds bridges." in prompt and "Ann: Count the bolts." in prompt
    assert "Bob bakes" not in prompt, "an agent sees only its own persona in full"
    assert prompt.endswith("Transcript of tonight's meeting:\nBob: Bread first.\nAnn: Bridges first.\nAnn:")
    with_summary = fmt.render(ANN, "They argued about bread.", [Line("Bob", "Still bread.")]).prompt
    assert "(Earlier in the meeting: They argued about bread.)\nBob: Still bread.\nAnn:" in with_summary


def test_transcript_prompts_only_grow() -> None:
    fmt = TranscriptFormat(SPEC, [ANN, BOB])
    lines = [Line("Ann", "One."), Line("Bob", "Two.")]
    before = fmt.render(ANN, None, []).prompt  # Ann's cue; she then says " One."
    after = fmt.render(ANN, None, lines).prompt
    assert after.startswith(before + " One.\nBob: Two.\n")


def test_stop_strings_cover_every_other_speaker_and_markers() -> None:
    stops = stop_strings("Ann", ["Ann", "Bob", "Mo"], ["<eos>"], ("\n",))
    assert {"\nBob:", "\nMo:", "\nAudience:", "<eos>", "\n"} <= set(stops)
    assert "\nAnn:" not in stops


def test_chat_format_renders_roles_from_the_agents_view() -> None:
    fmt = ChatFormat(SPEC, [ANN, BOB], CHATML)
    rendered = fmt.render(ANN, None, [Line("Bob", "Bread first."), Line("Ann", "Bridges."), Line("Bob", "No.")])
    roles = [m["role"] for m in rendered.messages or ()]
    assert roles == ["system", "user", "assistant", "user"]
    assert rendered.messages[1]["content"].endswith("Bob: Bread first.")
    assert rendered.prompt.endswith("<|im_start|>user\nBob: No.<|im_end|>\n<|im_start|>assistant\n")
    assert "You are Ann" in rendered.prompt


def test_chat_template_runs_sandboxed() -> None:
    evil = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(ConfigError, match="chat template"):
        ChatFormat(SPEC, [ANN, BOB], evil).render(ANN, None, [])
    with pytest.raises(ConfigError, match="does not parse"):
        ChatFormat(SPEC, [ANN, BOB], "{% for %}")


def test_format_is_chosen_by_the_model_and_overridable() -> None:
    assert choose_format(SPEC, [ANN, BOB], None).name == "transcript"
    assert choose_format(SPEC, [ANN, BOB], CHATML).name == "chat"
    forced = SPEC.model_copy(update={"prompt_format": "transcript"})
    assert choose_format(forced, [ANN, BOB], CHATML).name == "transcript"
    with pytest.raises(ConfigError, match="chat template"):
        choose_format(SPEC.model_copy(update={"prompt_format": "chat"}), [ANN, BOB], None)


async def test_scheduler_uses_the_chat_format_when_the_engine_has_a_template() -> None:
    from townhall.engine.scripted import ScriptedEngine
    from townhall.scheduler import Scheduler

    engine = ScriptedEngine(["Bridges now, and soon.", "Bread now, then bridges."], chat_template=CHATML)
    spec = SPEC.model_copy(update={"max_turns": 2})
    await Scheduler(engine, spec, [ANN, BOB]).run()
    second = engine.requests[1]
    assert second.messages is not None and second.messages[-1]["content"].endswith("\n\nAnn: Bridges now, and soon.")
    assert second.prompt.endswith("<|im_start|>assistant\n")
