"""Sides for every debate: a town hall whose speakers were given no side gets balanced ones.

A motion alone (`townhall run --motion "..."`) would otherwise seat everyone `undecided`,
and a room where nobody holds a side does not debate. Each speaker the town hall gives no
stance takes its persona's own side if it has one; the rest alternate for and against in
speaking order, so the room is balanced, and where their number is odd the last one is
undecided. The sides are written into the spec's `stances` before the session starts, so
they are shown, recorded with the session and resumed as they were. A side given in the
town hall (including an explicit `undecided`) is never changed, and a town hall with no
ballot (generate's conversations) is not a debate and gets none.
"""

from __future__ import annotations

from collections.abc import Sequence

from townhall.domain.personas import Persona, Side
from townhall.domain.spec import Stance, TownHallSpec


def default_concern(persona: Persona) -> str:
    return (persona.concern or f"what the motion means for a {persona.title}").rstrip(".")


def with_sides(spec: TownHallSpec, personas: Sequence[Persona]) -> TownHallSpec:
    """`spec` with a stance for every speaker (the moderator takes none). A town hall that holds
    no vote (`ballot = false`: generate's conversations) is a conversation, not a debate: unchanged."""
    if not spec.ballot:
        return spec
    by_key = {p.name.casefold(): p for p in personas}
    moderator = (spec.moderator or "").casefold()
    speakers = [by_key[n.casefold()] for n in spec.participants if n.casefold() in by_key and n.casefold() != moderator]
    unsided = [p for p in speakers if spec.stance_for(p.name) is None]
    if not unsided:
        return spec
    stances = dict(spec.stances)
    sides = [stance.side for stance in spec.stances.values()] + [p.side for p in unsided if p.side]
    counts = {"for": sides.count("for"), "against": sides.count("against")}
    open_seats = [p for p in unsided if not p.side]
    # The open seats first even out the sides already taken; of the rest, an odd one out is undecided.
    leftover = len(open_seats) - min(len(open_seats), abs(counts["for"] - counts["against"]))
    odd_one = open_seats[-1] if leftover % 2 else None
    for persona in unsided:
        side: Side
        if persona.side:
            side = persona.side
        elif persona is odd_one:
            side = "undecided"
        else:
            side = "for" if counts["for"] <= counts["against"] else "against"
            counts[side] += 1
        stances[persona.name] = Stance(side=side, concern=default_concern(persona))
    return spec.model_copy(update={"stances": stances})
