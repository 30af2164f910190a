"""Speaker tags, leaked instructions and roleplay narration out of generated turns.

The inputs are the shapes measured on SmolLM2-135M-Instruct and on SillyTavern's
roleplay cards (tag cascades, echoed system prompts, `*narration*`), re-typed here.
"""

from __future__ import annotations

import pytest

from townhall.debate.trimming import (
    clean_spoken,
    cut_inline_tags,
    leaks_instruction,
    strip_any_leading_tag,
    strip_leading_tags,
    strip_narration,
    talks_about_the_prompt,
)

NAMES = ("Margaret", "Walt", "Priya", "Jax", "Ines", "Audience")
SYSTEM = (
    "You are Margaret, the moderator, at a town hall meeting.\n"
    "Motion: The city should turn the old rail yard into a public park\n"
    "Margaret, open the meeting: state the motion and call on someone by name."
)


@pytest.mark.parametrize(
    ("text", "speaker", "left", "others"),
    [
        ("Priya: Walt: The yard floods every spring.", "Jax", "The yard floods every spring.", ("Priya", "Walt")),
        ("Jax: Priya: Walt: Parks cost money.", "Ines", "Parks cost money.", ("Jax", "Priya", "Walt")),
        ("Walt: I built that culvert.", "Walt", "I built that culvert.", ()),
        ("**Walt:** I built that culvert.", "Walt", "I built that culvert.", ()),
        ("walt (engineer): Count the bolts.", "Walt", "Count the bolts.", ()),
        ("Assistant: Sure, here is my view.", "Walt", "Sure, here is my view.", ("Assistant",)),
        ("Priya:", "Walt", "", ("Priya",)),
        ("Parking: that is what we lack.", "Walt", "Parking: that is what we lack.", ()),
        ("Walter: not a participant.", "Jax", "Walter: not a participant.", ()),
    ],
)
def test_leading_tags_are_stripped_and_impersonation_reported(
    text: str, speaker: str, left: str, others: tuple[str, ...]
) -> None:
    assert strip_leading_tags(text, speaker, NAMES) == (left, others)


def test_inline_tag_after_a_sentence_ends_the_turn_but_a_colon_in_speech_does_not() -> None:
    assert cut_inline_tags("A park pays back. Priya: No it won't.", "Walt", NAMES) == "A park pays back."
    assert cut_inline_tags("I agree with Priya: it floods.", "Walt", NAMES) == "I agree with Priya: it floods."
    assert cut_inline_tags("Walt said so. Walt: again.", "Walt", NAMES) == "Walt said so. Walt: again."


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ('*She smiles and folds her hands.* "A park heals a town." *She nods.*', "A park heals a town."),
        ("*Thistle's boots: muddy, green laces*", ""),
        ('"We need shade trees."', "We need shade trees."),
        ("Parks are **not** free.", "Parks are **not** free."),
        ('"Fine," she said, "but who mows it?"', '"Fine," she said, "but who mows it?"'),
        ("Three times 4 is 12, and 5*6 is 30.", "Three times 4 is 12, and 5*6 is 30."),
    ],
)
def test_roleplay_narration_is_dropped_and_speech_kept(text: str, spoken: str) -> None:
    assert strip_narration(text) == spoken


def test_a_turn_that_repeats_the_system_prompt_is_a_leak() -> None:
    assert leaks_instruction("You are Margaret, the moderator, at a town hall meeting.", SYSTEM)
    assert leaks_instruction("Margaret, open the meeting: state the motion and call on someone", SYSTEM)
    assert not leaks_instruction("Welcome all. Walt, what would the park cost to maintain?", SYSTEM)
    assert not leaks_instruction("The rail yard has sat empty for ten years.", SYSTEM)
    assert not leaks_instruction("", SYSTEM)


def test_clean_spoken_returns_empty_for_what_must_be_resampled() -> None:
    assert clean_spoken("Priya: Walt: Parks cost money.", "Jax", NAMES) == "Parks cost money."
    assert clean_spoken("Jax: *Jax grins.* \"Skate park or bust.\"", "Jax", NAMES) == "Skate park or bust."
    assert clean_spoken("Priya:", "Jax", NAMES) == ""
    assert clean_spoken("*Jax leans back in his chair.*", "Jax", NAMES) == ""
    echo = "Margaret: You are Margaret, the moderator, at a town hall meeting."
    assert clean_spoken(echo, "Margaret", NAMES, SYSTEM) == ""
    assert clean_spoken("Walt, what would upkeep cost?", "Margaret", NAMES, SYSTEM) == "Walt, what would upkeep cost?"


def test_any_leading_tag_goes_for_chat_replies() -> None:
    assert strip_any_leading_tag("Mike: Hey, Ines. You have a plan?") == "Hey, Ines. You have a plan?"
    assert strip_any_leading_tag("Town Clerk: The minutes are read.") == "The minutes are read."
    assert strip_any_leading_tag("Costs matter: ask Walt.") == "Costs matter: ask Walt."
    assert strip_any_leading_tag("We need a park.") == "We need a park."


@pytest.mark.parametrize(
    ("text", "meta"),
    [
        ("Margaret, I'll respond as Ines in one sentence.", True),
        ("I'll play a role that's been created by Ines.", True),
        ("As an AI, I cannot attend meetings.", True),
        ("Stay in character, Walt.", True),
        ("The park will play a role in flood control.", False),
        ("I respond to every letter the council sends.", False),
    ],
)
def test_turns_about_the_prompt_are_caught(text: str, meta: bool) -> None:
    assert talks_about_the_prompt(text) is meta
    assert (clean_spoken(text, "Walt", NAMES) == "") is meta
