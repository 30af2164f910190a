"""Prompt formats: the transcript for base models, chat templates for instruct models."""

from __future__ import annotations

import pytest

from townhall.errors import ConfigError
from townhall.domain.personas import Persona
from townhall.debate.prompts import ChatFormat, Line, TranscriptFormat, choose_format, stop_strings
from townhall.domain.spec import TownHallSpec

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
    assert prompt.startswith("Minutes of a public town hall meeting.\nMotion: Build a bridge?\n"
                             "Speakers:\n- Ann, engineer.\n- Bob, baker.\n")
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
    messages = rendered.messages or ()
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"].startswith("You are Ann, engineer, at a town hall meeting.\nMotion: Build a bridge?")
    assert "Bob bakes" not in messages[0]["content"], "an agent sees only its own persona in full"
    assert messages[1]["content"] == "Bob: Bread first.\n\nAnn, your turn. Answer Bob in one or two sentences."
    assert messages[2]["content"] == "Bridges.", "the agent's own turns carry no tag"
    assert rendered.prompt.endswith(
        "<|im_start|>user\nBob: No.\n\nAnn, your turn. Answer Bob in one or two sentences.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_chat_prompts_only_grow_for_the_kv_state() -> None:
    fmt = ChatFormat(SPEC, [ANN, BOB], CHATML)
    bob_first = [Line("Bob", "Bread first."), Line("Ann", "Bridges."), Line("Bob", "No."), Line("Ann", "Yes.")]
    ann_first = [Line("Ann", "Bridges."), Line("Bob", "No."), Line("Ann", "Yes."), Line("Bob", "Fine.")]
    for lines, cuts in ((bob_first, (1, 3)), (ann_first, (0, 2))):
        for cut in cuts:  # Ann's prompt just before each of her turns
            before = fmt.render(ANN, None, lines[:cut]).prompt
            assert fmt.render(ANN, None, lines).prompt.startswith(before + lines[cut].text)


def test_chat_cues_for_the_first_speaker_and_the_moderator() -> None:
    mo = Persona(name="Mo", title="chair", bio="Mo chairs.", style="brief", moderator=True)
    spec = SPEC.model_copy(update={"participants": ["Mo", "Ann", "Bob"], "moderator": "Mo"})
    fmt = ChatFormat(spec, [mo, ANN, BOB], CHATML)
    first = "Ann, you speak first. Say where you stand on the motion and why."
    assert fmt.messages(ANN, None, [])[-1]["content"] == first
    opening = fmt.messages(mo, None, [])
    assert opening[0]["content"].startswith("You are Mo, the moderator,")
    assert opening[-1]["content"].startswith("Mo, open the meeting")
    later = fmt.messages(mo, "They argued.", [Line("Ann", "Bridges.")])
    assert later[-1]["content"] == (
        "(Earlier: They argued.)\nAnn: Bridges.\n\nMo, respond to Ann in one sentence, then call on someone by name."
    )


def test_chat_transcript_layout_puts_recent_lines_in_one_message() -> None:
    fmt = ChatFormat(SPEC, [ANN, BOB], CHATML, layout="transcript", window=2)
    messages = fmt.messages(ANN, None, [Line("Bob", "One."), Line("Ann", "Two."), Line("Bob", "Three.")])
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == "Ann: Two.\nBob: Three.\n\nAnn, your turn. Answer Bob in one or two sentences."


def test_chat_clean_turn_strips_tags_and_rejects_the_echoed_prompt() -> None:
    fmt = ChatFormat(SPEC, [ANN, BOB], CHATML)
    names = ["Ann", "Bob", "Audience"]
    assert fmt.clean_turn(ANN, "Bob: Ann: We build it in spring.", names) == "We build it in spring."
    assert fmt.clean_turn(ANN, "You are Ann, engineer, at a town hall meeting.", names) == ""
    assert fmt.clean_turn(ANN, "Ann, your turn. Answer Bob in one or two sentences.", names) == ""
    assert fmt.clean_turn(ANN, "Bob, the bridge pays for itself in ten years.", names) == (
        "Bob, the bridge pays for itself in ten years."
    )


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
    from townhall.debate.scheduler import Scheduler

    engine = ScriptedEngine(["Bridges now, and soon.", "Bread now, then bridges."], chat_template=CHATML)
    spec = SPEC.model_copy(update={"max_turns": 2})
    await Scheduler(engine, spec, [ANN, BOB]).run()
    second = engine.requests[1]
    assert second.messages is not None
    assert second.messages[-1]["content"] == ("Ann: Bridges now, and soon.\n\n"
                                              "Bob, your turn. Answer Ann in one or two sentences.")
    assert second.prompt.endswith("<|im_start|>assistant\n")


async def test_scheduler_trims_tags_and_resamples_a_leaked_prompt_in_chat() -> None:
    from townhall.engine.scripted import ScriptedEngine
    from townhall.debate.scheduler import Scheduler
    from townhall.domain.turns import TurnStatus

    replies = ["Bob: Ann: Bridges now, and soon.", "You are Bob, baker, at a town hall meeting.", "Bread now, Ann."]
    engine = ScriptedEngine(replies, chat_template=CHATML)
    scheduler = Scheduler(engine, SPEC.model_copy(update={"max_turns": 2}), [ANN, BOB])
    await scheduler.run()
    assert [t.content for t in scheduler.turns] == ["Bridges now, and soon.", "Bread now, Ann."]
    assert scheduler.turns[1].retries == 1 and scheduler.turns[1].status == TurnStatus.COMPLETE


def test_ballot_prompts_share_the_turn_prompts_prefix() -> None:
    lines = [Line("Bob", "Bread first."), Line("Ann", "Bridges first.")]
    fmt = TranscriptFormat(SPEC, [ANN, BOB])
    turn = fmt.render(ANN, None, lines).prompt
    ballot = fmt.render_ballot(ANN, None, lines)
    assert ballot == turn.removesuffix("Ann:") + "\nThe vote:\n- Ann, engineer:"
    # After her turn, Ann's state holds her prompt and her words: the ballot only adds the cue.
    assert ballot.startswith(fmt.render(ANN, None, lines[:1]).prompt + " Bridges first.\n")

    chat = ChatFormat(SPEC, [ANN, BOB], CHATML)
    said = chat.render(ANN, None, lines[:1]).prompt + "Bridges first."
    ballot = chat.render_ballot(ANN, None, lines + [Line("Bob", "Bread!")])
    assert ballot.startswith(said)
    assert ballot.endswith("<|im_start|>user\nBob: Bread!\n\nSecret ballot: do you vote for or against the motion? "
                           "Motion: Build a bridge?<|im_end|>\n<|im_start|>assistant\nI vote")
    first = chat.render_ballot(ANN, None, [])  # nobody spoke yet: the question alone
    assert "<|im_start|>user\nSecret ballot:" in first
