"""Sides for every debate (debate.sides): balanced, the odd one undecided, what was given kept."""

from __future__ import annotations

from townhall.debate.sides import with_sides
from townhall.domain.personas import Persona
from townhall.domain.spec import spec_from_data


def persona(name: str, **extra: object) -> Persona:
    return Persona(name=name, title=f"{name} the tester", bio="Lives here.", style="plain", **extra)


PEOPLE = [persona(n) for n in ("Ann", "Bob", "Cy", "Dee", "Eve")] + [persona("Mo", moderator=True)]


def sides_of(participants: list[str], **fields: object) -> dict[str, str]:
    spec = spec_from_data({"motion": "Build a bridge.", "participants": participants, **fields}, "test")
    return {name: stance.side for name, stance in with_sides(spec, PEOPLE).stances.items()}


def test_a_motion_alone_gets_balanced_sides() -> None:
    assert sides_of(["Ann", "Bob", "Cy", "Dee"]) == {"Ann": "for", "Bob": "against", "Cy": "for", "Dee": "against"}


def test_an_odd_cast_leaves_the_last_one_undecided_and_the_moderator_out() -> None:
    got = sides_of(["Ann", "Bob", "Cy"], moderator="Mo")
    assert got == {"Ann": "for", "Bob": "against", "Cy": "undecided"}


def test_given_sides_are_kept_and_the_rest_balance_them() -> None:
    given = {"Ann": {"side": "against", "concern": "the toll"}, "Bob": {"side": "undecided", "concern": "noise"}}
    got = sides_of(["Ann", "Bob", "Cy", "Dee", "Eve"], stances=given)
    assert got["Ann"] == "against" and got["Bob"] == "undecided"
    assert sorted(got[n] for n in ("Cy", "Dee", "Eve")) == ["against", "for", "for"]


def test_a_personas_own_side_is_used_and_its_concern_carried() -> None:
    people = [persona("Ann", side="against", concern="the toll road"), persona("Bob")]
    spec = spec_from_data({"motion": "Build a bridge.", "participants": ["Ann", "Bob"]}, "test")
    stances = with_sides(spec, people).stances
    assert (stances["Ann"].side, stances["Ann"].concern) == ("against", "the toll road")
    assert stances["Bob"].side == "for" and stances["Bob"].concern == "what the motion means for a Bob the tester"


def test_a_conversation_without_a_ballot_gets_no_sides() -> None:
    assert sides_of(["Ann", "Bob"], ballot=False) == {}
