"""What the store hands out: plain dataclasses, and the row <-> Turn conversions.

Rows are dicts from sqlite-utils; JSON columns are decoded here and nowhere else,
so the rest of the code sees typed values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from townhall.engine.base import STAT_FIELDS, GenerationStats, SamplingParams
from townhall.domain.events import Result, StanceMeasured, Vote
from townhall.domain.personas import Persona
from townhall.domain.turns import Turn, TurnKind, TurnStatus

STAT_COLUMNS = STAT_FIELDS  # one column per GenerationStats field, same names


# `running` while a process records it; `interrupted` if that process died or closed mid-debate.
SessionStatus = Literal["running", "finished", "stopped", "failed", "interrupted"]


@dataclass(frozen=True)
class SessionSummary:
    """One line of `sessions list`."""

    id: str
    title: str | None
    motion: str
    status: SessionStatus
    created_at: float
    updated_at: float
    ended_at: float | None
    end_reason: str | None
    model_name: str | None
    participants: tuple[str, ...]
    turns: int  # on the current branch's path
    current_branch: int = 1
    branch_count: int = 1

    @property
    def label(self) -> str:
        """The title if one was given, else the motion: what a person recognises."""
        return self.title or self.motion

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "motion": self.motion,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "model_name": self.model_name,
            "participants": list(self.participants),
            "turns": self.turns,
            "current_branch": self.current_branch,
            "branch_count": self.branch_count,
        }


@dataclass(frozen=True)
class StoredEvent:
    at: float
    type: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class SessionRecord:
    """Everything kept about one session except its turns (see `Store.turns`)."""

    summary: SessionSummary
    spec: dict[str, Any]
    personas: tuple[Persona, ...]
    backend: str | None
    model_path: str | None
    model_sha256: str | None
    n_ctx: int | None
    device: str | None
    seed: int | None
    error: str | None
    events: tuple[StoredEvent, ...] = field(default_factory=tuple)

    @property
    def id(self) -> str:
        return self.summary.id

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary.as_dict(),
            "spec": self.spec,
            "personas": [p.model_dump(mode="json") for p in self.personas],
            "engine": {
                "backend": self.backend,
                "model_name": self.summary.model_name,
                "model_path": self.model_path,
                "model_sha256": self.model_sha256,
                "n_ctx": self.n_ctx,
                "device": self.device,
            },
            "seed": self.seed,
            "error": self.error,
            "events": [{"at": e.at, "type": e.type, "detail": e.detail} for e in self.events],
        }


@dataclass(frozen=True)
class SearchHit:
    """A turn that matched a search; `highlights` are (start, end) spans in `snippet`.

    `branch` is the branch the turn was said on; `branches` every branch whose path holds it
    (a turn before a fork is on several). A minutes hit names the branch that was voted on."""

    session_id: str
    session_label: str
    turn_index: int
    speaker: str
    kind: str
    snippet: str
    highlights: tuple[tuple[int, int], ...]
    started_at: float | None
    branch: int = 1
    branches: tuple[int, ...] = (1,)

    def as_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "session": self.session_label,
            "turn_index": self.turn_index,
            "speaker": self.speaker,
            "kind": self.kind,
            "snippet": self.snippet,
            "highlights": [list(span) for span in self.highlights],
            "started_at": self.started_at,
            "branch": self.branch,
            "branches": list(self.branches),
        }


@dataclass(frozen=True)
class OutcomeRecord:
    """A session's closing ballot and minutes as stored; either half may still be missing
    (a ballot cut off before its minutes, or a session that never voted: votes empty, result None)."""

    session_id: str
    votes: tuple[Vote, ...] = ()
    votes_for: int = 0
    votes_against: int = 0
    result: Result | None = None
    announcement: str | None = None
    decided_at: float | None = None
    minutes: str | None = None
    minutes_at: float | None = None
    branch: int = 1

    @property
    def tally(self) -> str:
        """'3 for, 2 against', or '' before a vote."""
        return f"{self.votes_for} for, {self.votes_against} against" if self.result else ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "votes": votes_as_dicts(self.votes),
            "votes_for": self.votes_for,
            "votes_against": self.votes_against,
            "result": self.result,
            "announcement": self.announcement,
            "decided_at": self.decided_at,
            "minutes": self.minutes,
            "minutes_at": self.minutes_at,
        }


def stance_as_dict(stance: StanceMeasured) -> dict[str, Any]:
    return {"agent": stance.agent, "round": stance.round, "turn_index": stance.turn_index,
            "p_for": stance.p_for, "method": stance.method, "at": stance.at}


def votes_as_dicts(votes: tuple[Vote, ...]) -> list[dict[str, Any]]:
    """The ballot as plain data: what the record, the exports and `--json` all write."""
    return [{"agent": v.agent, "choice": v.choice, "p_for": v.p_for} for v in votes]


def votes_to_json(votes: tuple[Vote, ...]) -> str:
    return json.dumps(votes_as_dicts(votes), ensure_ascii=False)


def votes_from_json(text: str | None) -> tuple[Vote, ...]:
    items = loads(text, []) or []
    return tuple(Vote(agent=str(v["agent"]), choice="for" if v.get("choice") == "for" else "against",
                      p_for=float(v.get("p_for", 0.0))) for v in items if isinstance(v, dict) and "agent" in v)


def row_to_outcome(row: dict[str, Any]) -> OutcomeRecord:
    result = row["result"] if row["result"] in get_args(Result) else None
    return OutcomeRecord(
        session_id=row["session_id"],
        votes=votes_from_json(row["votes"]),
        votes_for=int(row["votes_for"] or 0),
        votes_against=int(row["votes_against"] or 0),
        result=result,
        announcement=row["announcement"],
        decided_at=row["decided_at"],
        minutes=row["minutes"],
        minutes_at=row["minutes_at"],
        branch=int(row.get("branch") or 1),
    )


def row_to_stance(row: dict[str, Any]) -> StanceMeasured:
    return StanceMeasured(session_id=row["session_id"], agent=row["agent"], round=int(row["round"]),
                          turn_index=int(row["turn_index"]), p_for=float(row["p_for"]), method=row["method"],
                          at=float(row["at"]))


def turn_to_row(session_id: str, turn: Turn) -> dict[str, Any]:
    row: dict[str, Any] = {
        "session_id": session_id,
        "turn_index": turn.index,
        "node": turn.node,
        "parent": turn.parent,
        "branch": turn.branch,
        "author": turn.author,
        "phase": turn.phase,
        "scripted": int(turn.scripted),
        "source": turn.source,
        "addressed": turn.addressed,
        "answers": turn.answers,
        "speaker": turn.speaker,
        "kind": str(TurnKind(turn.kind)),
        "content": turn.content,
        "status": str(TurnStatus(turn.status)),
        "started_at": turn.started_at,
        "finished_at": turn.finished_at,
        "sampling": turn.sampling.model_dump_json() if turn.sampling is not None else None,
        "retries": turn.retries,
        "error": turn.error,
    }
    stats = turn.stats.as_dict() if turn.stats is not None else {}
    for column in STAT_COLUMNS:
        row[column] = stats.get(column)
    return row


# Before `TurnStatus.SKIPPED` existed, a skipped turn was stored as `interrupted` with this error.
_LEGACY_SKIP = ("interrupted", "skipped by the watcher")


def row_to_turn(row: dict[str, Any]) -> Turn:
    status = TurnStatus.SKIPPED if (row["status"], row["error"]) == _LEGACY_SKIP else TurnStatus(row["status"])
    stats = None
    if row.get("finish_reason") is not None or row.get("generated_tokens") is not None:
        values = {c: row[c] for c in STAT_COLUMNS if row.get(c) is not None}
        stats = GenerationStats(**values)
    sampling = SamplingParams.model_validate_json(row["sampling"]) if row.get("sampling") else None
    return Turn(
        index=int(row["turn_index"]),
        speaker=row["speaker"],
        kind=TurnKind(row["kind"]),
        content=row["content"] or "",
        status=status,
        started_at=float(row["started_at"] or 0.0),
        finished_at=row["finished_at"],
        stats=stats,
        sampling=sampling,
        retries=int(row["retries"] or 0),
        error=row["error"],
        phase=row.get("phase"),
        scripted=bool(row.get("scripted")),
        node=str(row["node"]),
        parent=row.get("parent"),
        branch=int(row.get("branch") or 1),
        author=row.get("author"),
        source=row.get("source"),
        addressed=row.get("addressed"),
        answers=row.get("answers"),
    )


def loads(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default
