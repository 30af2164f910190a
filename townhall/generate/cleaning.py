"""Deciding whether a finished conversation is training data: part of generation, not a later script.

Seed 003 generated first and cleaned afterwards with `format.py`; here a
conversation is judged as soon as it ends, with the same definition of a clean turn
the debate and its benchmark use (`townhall.debate.quality`), and only a clean one reaches
the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from townhall.generate.config import stem_pattern
from townhall.debate.quality import check_turn
from townhall.domain.turns import Turn, TurnKind, TurnStatus

# Drop reasons, as counted in the summary.
EXCLUDED = "excluded"
TOO_SHORT = "too_short"
FAILED = "error"


@dataclass(frozen=True)
class Verdict:
    """Keep the conversation, or why not (`reason` is one of the drop reasons above)."""

    keep: bool
    reason: str | None = None
    detail: str = ""
    clean_turns: int = 0


def excluded_stem(turns: Sequence[Turn], stems: Sequence[str]) -> str | None:
    """The first excluded stem found in any turn's text (case-insensitive, at a word start)."""
    pattern = stem_pattern(list(stems))
    if pattern is None:
        return None
    for turn in turns:
        hit = pattern.search(turn.content)
        if hit:
            return hit.group(1).casefold()
    return None


def clean_turns(turns: Sequence[Turn]) -> list[Turn]:
    """Complete spoken turns that are clean by `townhall.debate.quality.check_turn`."""
    names = list(dict.fromkeys(t.speaker for t in turns))
    kept: list[Turn] = []
    earlier: list[str] = []
    for turn in turns:
        if turn.kind in (TurnKind.AGENT, TurnKind.MODERATOR) and turn.status == TurnStatus.COMPLETE:
            if check_turn(turn.content, turn.speaker, names, earlier).clean:
                kept.append(turn)
        if turn.content and turn.status in (TurnStatus.COMPLETE, TurnStatus.INTERRUPTED):
            earlier.append(turn.content)
    return kept


def judge(turns: Sequence[Turn], *, exclude: Sequence[str], min_turns: int, end_reason: str) -> Verdict:
    """Exclusion first (it is about content, whatever the length), then the failure, then length."""
    stem = excluded_stem(turns, exclude)
    clean = clean_turns(turns)
    if stem is not None:
        return Verdict(False, EXCLUDED, f"contains '{stem}'", len(clean))
    if end_reason == "error":
        return Verdict(False, FAILED, "the conversation ended on an error", len(clean))
    if len(clean) < max(min_turns, 1):
        return Verdict(False, TOO_SHORT, f"{len(clean)} clean turns, {min_turns} needed", len(clean))
    return Verdict(True, None, "", len(clean))
