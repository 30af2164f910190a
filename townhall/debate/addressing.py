"""Whom an audience line addresses, and which turn answers it.

A person who asks a named speaker a question expects that speaker to answer, next. So an
audience line naming a participant (whole word, any case: the `mention` policy's rule) is
answered by that participant next, under every policy. A line naming the moderator, or
nobody, is the moderator's under the agenda policy: a scripted hand-off, like the agenda's
own lines, to the participant whose stated concern fits the question best (or, when none
fits, to the floor, starting with the participant the agenda calls next); under the other
policies the next speaker answers it.

The answer and the hand-off carry `Turn.answers` (the audience line's node), which is what
keeps the agenda's plan where it was: it counts neither. Everything here is read from the
path, so a branch, a resume or a regenerate sees the same questions answered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from townhall.debate.policies import mentioned
from townhall.domain.turns import Turn, TurnKind

# Words too common to say what a question is about; the rest are matched against concerns.
_COMMON = frozenset(
    "a an and are as at be but by can could do does for from had has have how i if in into is it its "
    "just me my no not of on or our so than that the their them then there these they this those to "
    "us was we were what when where which who whom why will with would you your yours about".split()
)


@dataclass(frozen=True)
class Answer:
    """The turn an audience line is due.

    `speaker` says it (None: the policy's next speaker); `line` is the moderator's scripted
    hand-off when the turn is one, and `to` the participant it hands the question to.
    """

    question: Turn
    speaker: str | None
    line: str | None = None
    to: str | None = None


def addressed(text: str, names: Sequence[str]) -> str | None:
    """The first of `names` the text names, by the mention policy's rule; None when none."""
    found = mentioned(text, names)
    return found[0] if found else None


def open_question(turns: Sequence[Turn]) -> Turn | None:
    """The first audience line still unanswered at the end of the path.

    Only the tail counts: the audience lines and answers after the debate's own last turn,
    so an old session's questions that the debate went past are never answered late. A
    turn answers its question when it is not a hand-off (a skipped answer counts: the
    watcher chose to pass over it).
    """
    tail: list[Turn] = []
    for turn in reversed(turns):
        if turn.kind != TurnKind.AUDIENCE and turn.answers is None:
            break
        tail.append(turn)
    tail.reverse()
    answered = {t.answers for t in tail if t.answers is not None and not t.scripted}
    return next((t for t in tail if t.kind == TurnKind.AUDIENCE and t.node not in answered), None)


def handed_to(turns: Sequence[Turn], question: Turn) -> str | None:
    """The participant the moderator's hand-off gave `question` to, if the hand-off was said."""
    for turn in reversed(turns):
        if turn.scripted and turn.answers == question.node:
            return turn.addressed
    return None


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.casefold()) if len(w) > 2 and w not in _COMMON}


def _stem(word: str) -> str:
    """Plural and verb endings off, so "ramps" meets "ramp" and "costs" meets "cost"."""
    for ending in ("ing", "es", "s"):
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            return word[: -len(ending)]
    return word


def best_fit(question: str, concerns: Mapping[str, str]) -> str | None:
    """The participant whose concern shares the most words with the question; None when none
    shares any. Ties go to the first in speaking order (the mapping's order)."""
    asked = {_stem(w) for w in _words(question)}
    best, score = None, 0
    for name, concern in concerns.items():
        overlap = len(asked & {_stem(w) for w in _words(concern)})
        if overlap > score:
            best, score = name, overlap
    return best


def handoff_line(to: str, concern: str | None) -> str:
    """The moderator's scripted hand-off: to the one whose `concern` fits, or to the floor."""
    if concern is not None:
        return f"Thank you for the question. {to}, that goes to your concern, {concern}. Please answer it."
    return f"Thank you for the question. It is open to the floor. {to}, will you answer it first?"
