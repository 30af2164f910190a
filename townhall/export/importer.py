"""`townhall import`: read a JSON export back into the database as a new session.

The document is validated against the pydantic schema in `json_format` before a
single row is written, and all rows go in one transaction, so a bad file changes
nothing. The session gets a fresh id; everything else is kept as exported. A document
holds one branch's path, so it becomes a session of one branch (its turns keep their nodes).
"""

from __future__ import annotations

import json
import uuid

from pydantic import ValidationError

from townhall.errors import ConfigError, dotted, validation_message
from townhall.export.json_format import FORMAT_NAME, FORMAT_VERSION, SessionExport, TurnOut
from townhall.domain.events import StanceMeasured, Vote
from townhall.store import OutcomeRecord, SessionRecord, SessionSummary, Store, StoredEvent
from townhall.domain.turns import Turn, TurnStatus, new_node_id

COLLECTION_NAME = "townhall.sessions"


def _parse(text: str, source: str) -> list[SessionExport]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{source}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") not in (FORMAT_NAME, COLLECTION_NAME):
        raise ConfigError(f"{source}: not a Townhall JSON export (expected \"format\": \"{FORMAT_NAME}\")")
    version = data.get("version")
    if not isinstance(version, int) or version < 1:
        raise ConfigError(f"{source}: \"version\" must be a positive integer")
    if version > FORMAT_VERSION:
        raise ConfigError(
            f"{source}: export format version {version} is newer than this Townhall reads ({FORMAT_VERSION}); "
            "upgrade Townhall"
        )
    items = data.get("sessions") if data["format"] == COLLECTION_NAME else [data]
    if not isinstance(items, list):
        raise ConfigError(f"{source}: \"sessions\" must be a list")
    documents = []
    for i, item in enumerate(items):
        try:
            documents.append(SessionExport.model_validate(item))
        except ValidationError as exc:
            where = (f"sessions.{i}",) if data["format"] == COLLECTION_NAME else ()
            message = validation_message(exc, source, kind="", name=lambda loc: dotted((*where, *loc)))
            raise ConfigError(message) from None
    return documents


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]


def _turn_in(t: TurnOut) -> Turn:
    """A turn as exported, back as a Turn; one cut off mid-stream is kept as interrupted.

    Its place in the tree (`parent`, `branch`) is left to the store: a document is one branch."""
    fields = {name: value for name, value in t if name not in ("parent", "branch")}
    fields["status"] = TurnStatus.INTERRUPTED if t.status == TurnStatus.STREAMING else t.status
    fields["node"] = t.node or new_node_id()
    return Turn(**fields)


def _insert(store: Store, document: SessionExport) -> str:
    """Hand the document to the store as a new session; a live status becomes `interrupted`."""
    s, engine = document.session, document.session.engine
    summary = SessionSummary(
        id=new_session_id(),
        title=s.title,
        motion=s.motion,
        status="interrupted" if s.status == "running" else s.status,
        created_at=s.created_at,
        updated_at=s.updated_at,
        ended_at=s.ended_at,
        end_reason=s.end_reason,
        model_name=engine.model_name,
        participants=tuple(p.name for p in document.participants),
        turns=len(document.turns),
    )
    record = SessionRecord(
        summary=summary,
        spec=s.spec,
        personas=tuple(document.participants),
        backend=engine.backend,
        model_path=engine.model_path,
        model_sha256=engine.model_sha256,
        n_ctx=engine.n_ctx,
        device=engine.device,
        seed=s.seed,
        error=s.error,
        events=tuple(StoredEvent(at=e.at, type=e.type, detail=e.detail) for e in document.events),
    )
    turns = [_turn_in(t) for t in document.turns]
    new_id = summary.id
    stances = [StanceMeasured(new_id, s.agent, s.round, s.turn_index, s.p_for, s.method, s.at)
               for s in document.stances]
    outcome = None
    if document.outcome is not None:
        o = document.outcome
        outcome = OutcomeRecord(
            session_id=new_id, votes=tuple(Vote(v.agent, v.choice, v.p_for) for v in o.votes), votes_for=o.votes_for,
            votes_against=o.votes_against, result=o.result, announcement=o.announcement, decided_at=o.decided_at,
            minutes=o.minutes, minutes_at=o.minutes_at,
        )
    return store.insert_session(record, turns, stances=stances, outcome=outcome)


def import_documents(store: Store, text: str, source: str = "import") -> list[str]:
    """Import a single-session export or an `export --all --format json` collection."""
    documents = _parse(text, source)
    _check(documents, source)
    return [_insert(store, document) for document in documents]


def import_json(store: Store, text: str, source: str = "import") -> str:
    """Import one exported session; return its new id."""
    documents = _parse(text, source)
    if len(documents) != 1:
        raise ConfigError(f"{source}: holds {len(documents)} sessions; use `townhall import` to import them all")
    _check(documents, source)
    return _insert(store, documents[0])


def _check(documents: list[SessionExport], source: str) -> None:
    for document in documents:
        indices = [t.index for t in document.turns]
        if len(indices) != len(set(indices)):
            raise ConfigError(f"{source}: session {document.session.id}: turn indices repeat")
