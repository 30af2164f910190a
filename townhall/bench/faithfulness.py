"""Faithfulness figures: does each speaker argue the side it was given, with reasons, and
does the vote follow the debate? Computed from the judge's verdicts (`bench.judge`) on the
model-written turns of town halls whose speakers were given sides.

- side match: share of turns by a speaker given for or against that argue that side;
- contradiction: share that argue the opposite side;
- reasons, relevance: share of the speakers' turns that give a concrete reason bearing on the
  motion, and that are about the motion at all;
- vote agreement: share of sided speakers whose closing ballot is their side, overall and for
  the speakers most of whose turns argued their side, with how far each one's stance reading
  moved between its first and its last reading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from townhall.bench.judge import Verdict

TARGETS: dict[str, tuple[str, float]] = {
    "side_match": (">=", 0.85),
    "contradiction": ("<=", 0.05),
    "reasons": (">=", 0.75),
    "relevance": (">=", 0.90),
    "vote_agreement_faithful": (">=", 0.80),
}


@dataclass(frozen=True)
class SpokenTurn:
    """A model-written turn by a speaker, with the side it was given (None: undecided or none)."""

    speaker: str
    side: str | None
    text: str


@dataclass
class SpeakerRecord:
    """One sided speaker over a debate: its turns' verdicts, its readings, its ballot."""

    side: str
    matched: int = 0
    turns: int = 0
    readings: list[float] = field(default_factory=list)  # p(for), in order
    vote: str | None = None

    @property
    def faithful(self) -> bool:
        return self.turns > 0 and self.matched / self.turns > 0.5

    @property
    def moved(self) -> float:
        """How far the reading moved toward the speaker's own side, first reading to last."""
        if len(self.readings) < 2:
            return 0.0
        delta = self.readings[-1] - self.readings[0]
        return delta if self.side == "for" else -delta


@dataclass
class Tally:
    """Counts over one debate or many; `figures()` turns them into shares."""

    sided: int = 0
    matched: int = 0
    contradicted: int = 0
    turns: int = 0
    reasons: int = 0
    relevant: int = 0
    voters: int = 0
    voted_side: int = 0
    faithful_voters: int = 0
    faithful_voted_side: int = 0
    moved: list[float] = field(default_factory=list)
    speakers: list[dict[str, Any]] = field(default_factory=list)  # one debate's sided speakers (not merged)

    def add(self, other: Tally) -> None:
        for name in ("sided", "matched", "contradicted", "turns", "reasons", "relevant", "voters", "voted_side",
                     "faithful_voters", "faithful_voted_side"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.moved.extend(other.moved)

    def figures(self) -> dict[str, Any]:
        def share(part: int, whole: int) -> float:
            return round(part / whole, 3) if whole else 0.0

        return {
            "judged_turns": self.turns, "sided_turns": self.sided,
            "side_match": share(self.matched, self.sided), "contradiction": share(self.contradicted, self.sided),
            "reasons": share(self.reasons, self.turns), "relevance": share(self.relevant, self.turns),
            "vote_agreement": share(self.voted_side, self.voters),
            "vote_agreement_faithful": share(self.faithful_voted_side, self.faithful_voters),
            "faithful_speakers": f"{self.faithful_voters}/{self.voters}",
            "stance_moved_mean": round(sum(self.moved) / len(self.moved), 3) if self.moved else 0.0,
        } | ({"speakers": self.speakers} if self.speakers else {})


OPPOSITE = {"for": "against", "against": "for"}


def tally_debate(
    turns: Sequence[SpokenTurn],
    verdicts: Sequence[Verdict],
    readings: Mapping[str, Sequence[float]],
    votes: Mapping[str, str],
) -> Tally:
    """One debate's counts: `turns` and `verdicts` pair up; `readings` are each speaker's
    p(for) in order, `votes` each speaker's closing ballot ("for" / "against")."""
    tally = Tally()
    speakers: dict[str, SpeakerRecord] = {}
    for turn, verdict in zip(turns, verdicts, strict=True):
        tally.turns += 1
        tally.reasons += verdict.reason
        tally.relevant += verdict.relevant
        if turn.side not in OPPOSITE:
            continue
        record = speakers.setdefault(turn.speaker, SpeakerRecord(turn.side))
        record.turns += 1
        tally.sided += 1
        if verdict.side == turn.side:
            tally.matched += 1
            record.matched += 1
        elif verdict.side == OPPOSITE[turn.side]:
            tally.contradicted += 1
    for name, record in speakers.items():
        record.readings = list(readings.get(name, ()))
        record.vote = votes.get(name)
        tally.moved.append(record.moved)
        tally.speakers.append({
            "name": name, "side": record.side, "vote": record.vote, "matched": f"{record.matched}/{record.turns}",
            "first_p_for": round(record.readings[0], 3) if record.readings else None,
            "last_p_for": round(record.readings[-1], 3) if record.readings else None,
            "moved": round(record.moved, 3),
        })
        if record.vote is None:
            continue
        tally.voters += 1
        tally.voted_side += record.vote == record.side
        if record.faithful:
            tally.faithful_voters += 1
            tally.faithful_voted_side += record.vote == record.side
    return tally


def check_targets(figures: Mapping[str, Any]) -> dict[str, bool]:
    return {key: (figures[key] >= bound if op == ">=" else figures[key] <= bound)
            for key, (op, bound) in TARGETS.items()}


def report_line(label: str, f: Mapping[str, Any]) -> str:
    return (
        f"{label[:28]:<28} side match {f['side_match']:>6.1%}  contradiction {f['contradiction']:>5.1%}  "
        f"reasons {f['reasons']:>6.1%}  relevance {f['relevance']:>6.1%}  vote {f['vote_agreement']:>6.1%} "
        f"(faithful {f['vote_agreement_faithful']:.0%} of {f['faithful_speakers']})  "
        f"moved {f['stance_moved_mean']:+.2f}"
    )
