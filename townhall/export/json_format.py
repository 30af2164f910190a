"""The JSON export: everything the database holds about one session, versioned.

Schema `townhall.session`, version 4 (these pydantic models are its definition;
`json_schema()` prints it as JSON Schema):

    {
      "format": "townhall.session", "version": 4, "townhall_version": "0.1.0",
      "branch": 1,                                 # the branch whose path `turns` is
      "session": {id, title, motion, status, end_reason, error, created_at, updated_at,
                  ended_at, seed, spec: {...the town hall as given...},
                  engine: {backend, model_name, model_path, model_sha256, n_ctx, device}},
      "participants": [Persona, ...],             # speaking order, as they were
      "turns": [{index, speaker, kind, content, status, started_at, finished_at,
                 stats: {...GenerationStats: prompt_tokens, reused_tokens, prefill_tokens,
                         generated_tokens, ttft_ms, decode_tps, restore_ms, save_ms,
                         total_ms, finish_reason} | null,
                 sampling: {...resolved sampling...} | null, retries, error,
                 node, parent, branch, author, phase, scripted,
                 source, addressed, answers}, ...],   # one branch's path
      "events": [{at, type, detail}, ...],         # pauses, strategy actions, errors, start/end
      "stances": [{agent, round, turn_index, p_for, method, at}, ...],   # the stance probe's readings
      "outcome": {votes: [{agent, choice, p_for}], votes_for, votes_against, result, announcement,
                  decided_at, minutes, minutes_at} | null
    }

Version 2 added `stances` and `outcome`; version 3 added `branch` and the turns' place in
the tree (`node`, `parent`, `branch`), `author` ("watcher" for a turn the watcher wrote or
edited), `phase` and `scripted`; version 4 added where an audience line came from (`source`:
"box", "file"...), whom it addressed (`addressed`) and the audience line a turn answers
(`answers`, a node). A document holds one branch's path with that branch's stances and
outcome, and imports as a session of one branch; versions 1 to 3 still import.

Times are epoch seconds. No export time is written, so export -> import -> export
gives the same document but for the session id. A reader must refuse a higher
`version` than it knows; fields are never removed or renamed within a version.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from townhall import __version__
from townhall.engine.base import GenerationStats, SamplingParams
from townhall.export.common import load
from townhall.domain.personas import Persona
from townhall.domain.events import Result, Side, StanceMeasured
from townhall.store import OutcomeRecord, SessionRecord, Store
from townhall.store.records import SessionStatus, stance_as_dict
from townhall.domain.turns import Turn, TurnKind, TurnStatus

FORMAT_NAME: Literal["townhall.session"] = "townhall.session"
FORMAT_VERSION = 4


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineOut(_Model):
    backend: str | None = None
    model_name: str | None = None
    model_path: str | None = None
    model_sha256: str | None = Field(default=None, description="sha256 of the GGUF file; null for a server model")
    n_ctx: int | None = None
    device: str | None = None


class SessionOut(_Model):
    id: str
    title: str | None = None
    motion: str
    status: SessionStatus
    end_reason: str | None = None
    error: str | None = None
    created_at: float
    updated_at: float
    ended_at: float | None = None
    seed: int | None = None
    spec: dict[str, Any] = Field(description="the town hall as given (TownHallSpec fields)")
    engine: EngineOut


class TurnOut(_Model):
    index: int
    speaker: str
    kind: TurnKind
    content: str
    status: TurnStatus
    started_at: float
    finished_at: float | None = None
    stats: GenerationStats | None = None
    sampling: SamplingParams | None = None
    retries: int = 0
    error: str | None = None
    node: str | None = Field(default=None, description="its id in the session's tree of turns")
    parent: str | None = Field(default=None, description="the node before it on its path")
    branch: int = Field(default=1, ge=1, description="the branch it was said on")
    author: str | None = Field(default=None, description='"watcher" when the watcher wrote its text')
    phase: str | None = None
    scripted: bool = False
    source: str | None = Field(default=None, description='an audience line\'s way in: "box", "file"...')
    addressed: str | None = Field(default=None, description="the participant an audience line or a hand-off named")
    answers: str | None = Field(default=None, description="the node of the audience line this turn answers")


class EventOut(_Model):
    at: float
    type: str
    detail: dict[str, Any] = Field(default_factory=dict)


class StanceOut(_Model):
    agent: str
    round: int
    turn_index: int
    p_for: float = Field(ge=0.0, le=1.0)
    method: str
    at: float


class VoteOut(_Model):
    agent: str
    choice: Side
    p_for: float = Field(ge=0.0, le=1.0)


class OutcomeOut(_Model):
    votes: list[VoteOut] = Field(default_factory=list)
    votes_for: int = 0
    votes_against: int = 0
    result: Result | None = None
    announcement: str | None = None
    decided_at: float | None = None
    minutes: str | None = None
    minutes_at: float | None = None


class SessionExport(_Model):
    format: Literal["townhall.session"] = FORMAT_NAME
    version: int = Field(default=FORMAT_VERSION, ge=1)
    townhall_version: str = __version__
    branch: int = Field(default=1, ge=1, description="the branch whose path the turns are")
    session: SessionOut
    participants: list[Persona]
    turns: list[TurnOut]
    events: list[EventOut] = Field(default_factory=list)
    stances: list[StanceOut] = Field(default_factory=list)
    outcome: OutcomeOut | None = None


def turn_out(turn: Turn) -> TurnOut:
    """A turn as exported: TurnOut's fields are Turn's, read by name."""
    return TurnOut.model_validate(turn, from_attributes=True)


def build_document(
    record: SessionRecord,
    turns: list[Turn],
    stances: Sequence[StanceMeasured] = (),
    outcome: OutcomeRecord | None = None,
    branch: int = 1,
) -> SessionExport:
    summary = record.summary
    return SessionExport(
        branch=branch,
        session=SessionOut(
            id=summary.id,
            title=summary.title,
            motion=summary.motion,
            status=summary.status,
            end_reason=summary.end_reason,
            error=record.error,
            created_at=summary.created_at,
            updated_at=summary.updated_at,
            ended_at=summary.ended_at,
            seed=record.seed,
            spec=record.spec,
            engine=EngineOut(
                backend=record.backend,
                model_name=summary.model_name,
                model_path=record.model_path,
                model_sha256=record.model_sha256,
                n_ctx=record.n_ctx,
                device=record.device,
            ),
        ),
        participants=list(record.personas),
        turns=[turn_out(t) for t in turns],
        events=[EventOut(at=e.at, type=e.type, detail=e.detail) for e in record.events],
        stances=[StanceOut.model_validate(stance_as_dict(s)) for s in stances],
        outcome=OutcomeOut.model_validate(outcome.as_dict()) if outcome is not None else None,
    )


def render(store: Store, session_id: str, branch: int | None = None) -> str:
    loaded = load(store, session_id, branch)
    document = build_document(loaded.record, loaded.turns, loaded.stances, loaded.outcome, loaded.branch)
    return document.model_dump_json(indent=2) + "\n"


def json_schema() -> str:
    return json.dumps(SessionExport.model_json_schema(), indent=2)
