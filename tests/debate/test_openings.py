"""Anchored openings and the plain reading of a declared side (debate.openings), without a model."""

from __future__ import annotations

import pytest

from townhall.debate.openings import AGAINST, FOR, RECENT, all_openings, choose_opening, contradicts, declared_sides


def test_an_opening_is_in_the_speakers_side_and_none_without_one() -> None:
    for seed in range(40):
        assert choose_opening("for", seed, []) in FOR
        assert choose_opening("against", seed, []) in AGAINST
    assert choose_opening("undecided", 1, []) == "" and choose_opening(None, 1, []) == ""


def test_the_same_seed_draws_the_same_opening_and_recent_ones_are_not_drawn_again() -> None:
    assert choose_opening("against", 7, ["x"]) == choose_opening("against", 7, ["x"])
    earlier = [f"{AGAINST[i]} something said." for i in range(RECENT)]
    for seed in range(40):
        assert choose_opening("against", seed, earlier) not in AGAINST[:RECENT]
    drawn = {choose_opening("for", seed, []) for seed in range(60)}
    assert len(drawn) >= len(FOR) - 1  # varied, not one formula


def test_a_reply_names_the_last_speaker_only_when_it_took_the_other_side() -> None:
    replies = {choose_opening("against", seed, [], ("Priya", "for")) for seed in range(60)}
    named = [r for r in replies if r.startswith("Priya, ") or "Priya," in r]
    assert named and all("against" in r or "oppose" in r for r in named)
    same_side = {choose_opening("against", seed, [], ("Walt", "against")) for seed in range(60)}
    assert not any("Walt" in r for r in same_side)


@pytest.mark.parametrize(
    ("text", "sides"),
    [
        ("Yes, I am for the motion.", {"for"}),
        ("I'm not against it at all.", {"for"}),
        ("We oppose this plan.", {"against"}),
        ("I don't support this.", {"against"}),
        ("I'm going to vote for it tomorrow.", {"for"}),
        ("The park is good for the kids.", set()),
        ("Priya is against it, but she is wrong.", set()),
    ],
)
def test_declared_sides_read_first_person_declarations(text: str, sides: set[str]) -> None:
    assert declared_sides(text) == sides


def test_a_turn_contradicts_only_the_opposite_declaration() -> None:
    assert contradicts("I'm for the motion. My dog will be at her house.", "against")
    assert not contradicts("I'm against this, because it costs too much.", "against")
    assert not contradicts("I'm for the motion.", None) and not contradicts("I'm for the motion.", "undecided")


def test_every_opening_declares_its_own_side_and_is_allowed_to_repeat() -> None:
    for opening in FOR:
        assert not contradicts(opening, "for")
    for opening in AGAINST:
        assert not contradicts(opening, "against")
    assert set(FOR) | set(AGAINST) <= set(all_openings())
