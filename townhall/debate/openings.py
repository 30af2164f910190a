"""Anchored turns: the first words of a speaker's turn, in its side, written by the scheduler.

A small model's strongest cue is the last few words before it writes. Told in the header
that Walt is against the motion, the embedded 270M model still opens most turns with "I am
for the motion" (the words every speaker before it used); started on "Walt: I'm against
this, because", it goes on to give a reason against. So the turn of a speaker with a side
begins with an opening drawn from that side's list, and the model writes the rest. The
openings vary (the choice is seeded with the turn's own seed and avoids the ones the last
turns used), so the debate does not read like a form. Each opening states the side in words
a listener can hear, so a reason that follows is heard as that side's.

A speaker with no side (undecided, or a chair) gets no opening: it speaks for itself.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

FOR = (
    "I'm for this, because",
    "I support the motion, because",
    "I'm voting for it. Here is why:",
    "This is worth doing, because",
    "My answer is yes, because",
    "We should do this. Think about it:",
    "I'm in favour, and I'll tell you why:",
    "Count me for it, because",
)
AGAINST = (
    "I'm against this, because",
    "I oppose the motion, because",
    "I'm voting against it. Here is why:",
    "This is a mistake, because",
    "My answer is no, because",
    "We should not do this. Think about it:",
    "I can't support this, and I'll tell you why:",
    "Count me against it, because",
)
# Openings that answer the last speaker by name, when that speaker took the other side.
FOR_REPLY = ("{name}, I disagree. I'm for it, because", "With respect, {name}, I still support it, because")
AGAINST_REPLY = ("{name}, I disagree. I'm against it, because", "With respect, {name}, I still oppose it, because")
RECENT = 4  # an opening used in the last few turns is not drawn again


def all_openings() -> tuple[str, ...]:
    """Every opening's fixed words (the reply forms without a name): the n-gram ban lets them repeat."""
    replies = [form.split("{name}, ", 1)[-1] for form in FOR_REPLY + AGAINST_REPLY]
    return FOR + AGAINST + tuple(replies)


def choose_opening(
    side: str | None, seed: int, earlier: Sequence[str], last: tuple[str, str | None] | None = None
) -> str:
    """The opening for a turn by a speaker on `side` ("" for none).

    `earlier` is what was said before (most recent last): an opening one of the last `RECENT`
    turns began with is skipped. `last` is the previous speaker and its side: when it took
    the other side, one draw in three answers it by name.
    """
    if side not in ("for", "against"):
        return ""
    rng = random.Random(seed)
    recent = [text.strip() for text in earlier[-RECENT:]]
    if last is not None and last[1] in ("for", "against") and last[1] != side and rng.random() < 1 / 3:
        forms = FOR_REPLY if side == "for" else AGAINST_REPLY
        return rng.choice(forms).format(name=last[0])
    pool = FOR if side == "for" else AGAINST
    fresh = [o for o in pool if not any(text.startswith(o) for text in recent)] or list(pool)
    return rng.choice(fresh)


_FOR = r"for (?:the motion|this|it|that)|in favou?r|support(?:ing)? (?:the motion|this|it|that)|vote for|voting for"
_AGAINST = r"against (?:the motion|this|it|that)|oppos(?:e|ed|ing)\b|vote against|voting against|vote no\b"
_WHO = r"\b(?:I|I'm|I am|I'll|we|we're|we are)\b"
_DECLARATION = re.compile(
    rf"{_WHO}(?P<between>[^.!?;]{{0,24}}?)\b(?:(?P<for>{_FOR})|(?P<against>{_AGAINST}))", re.IGNORECASE
)
_NEGATION = re.compile(r"\b(?:not|never|no longer)\b|n't\b", re.IGNORECASE)


def declared_sides(text: str) -> set[str]:
    """The sides `text` declares in the first person ("I'm for it", "we oppose", "I'm not against
    this" = for); a plain reading of the words, used to refuse a turn that says the wrong one."""
    sides = set()
    for match in _DECLARATION.finditer(text):
        side = "for" if match.group("for") else "against"
        if _NEGATION.search(match.group("between") or ""):
            side = "against" if side == "for" else "for"
        sides.add(side)
    return sides


def contradicts(text: str, side: str | None) -> bool:
    """Whether `text` declares the side opposite to `side` (never for a speaker without one)."""
    if side not in ("for", "against"):
        return False
    return ("against" if side == "for" else "for") in declared_sides(text)
