"""`townhall import`: read a JSON export back into the database as a new session.

The document is validated against the pydantic schema in `json_format` before a
single row is written, and all rows go in one transaction, so a bad file changes
nothing. The session gets a fresh id; everything else is kept as exported.
"""

from __future__ import annotations

import json
import uuid

from pydantic import ValidationError

from townhall.errors import ConfigError
from townhall.export.json_format import FORMAT_NAME, FORMAT_VERSION, SessionExport
from townhall.store import Store

COLLECTION_NAME = "townhall.sessions"


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "document"
    return f"{where}: {error['msg']}"


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
            prefix = f"sessions.{i}." if data["format"] == COLLECTION_NAME else ""
            raise ConfigError(f"{source}: {prefix}{_first_error(exc)}") from None
    return documents


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]


def _insert(store: Store, document: SessionExport) -> str:
    session_id = new_session_id()
    s, engine = document.session, document.session.engine
    status = "interrupted" if s.status == "running" else s.status
    with store.connection.transaction() as conn:
        conn.execute(
            "INSERT INTO sessions(id, title, motion, spec, backend, model_name, model_path, model_sha256, n_ctx, "
            "device, seed, created_at, updated_at, ended_at, status, end_reason, error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (session_id, s.title, s.motion, json.dumps(s.spec, ensure_ascii=False), engine.backend,
             engine.model_name, engine.model_path, engine.model_sha256, engine.n_ctx, engine.device, s.seed,
             s.created_at, s.updated_at, s.ended_at, status, s.end_reason, s.error),
        )
        for position, persona in enumerate(document.participants):
            conn.execute(
                "INSERT INTO participants(session_id, position, name, title, color, moderator, persona) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (session_id, position, persona.name, persona.title, persona.color, int(persona.moderator),
                 persona.model_dump_json()),
            )
        for turn in document.turns:
            stats = turn.stats.model_dump() if turn.stats is not None else {}
            conn.execute(
                "INSERT INTO turns(session_id, turn_index, speaker, kind, content, status, started_at, finished_at, "
                "prompt_tokens, reused_tokens, prefill_tokens, generated_tokens, ttft_ms, decode_tps, restore_ms, "
                "save_ms, total_ms, finish_reason, sampling, retries, error) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, turn.index, turn.speaker, str(turn.kind), turn.content,
                 "interrupted" if turn.status == "streaming" else str(turn.status),
                 turn.started_at, turn.finished_at,
                 stats.get("prompt_tokens"), stats.get("reused_tokens"), stats.get("prefill_tokens"),
                 stats.get("generated_tokens"), stats.get("ttft_ms"), stats.get("decode_tps"),
                 stats.get("restore_ms"), stats.get("save_ms"), stats.get("total_ms"), stats.get("finish_reason"),
                 turn.sampling.model_dump_json() if turn.sampling is not None else None, turn.retries, turn.error),
            )
        for event in document.events:
            conn.execute(
                "INSERT INTO events(session_id, at, type, detail) VALUES (?, ?, ?, ?)",
                (session_id, event.at, event.type, json.dumps(event.detail, ensure_ascii=False)),
            )
    return session_id


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
