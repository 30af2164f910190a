"""Exports of the record: one module per format, all reading through `Store`.

    export_session(store, session_id, fmt, branch=None) -> str   # fmt in FORMATS; id prefix accepted;
                                                                 # one branch (the current one by default)
    export_all(store, fmt) -> str                       # every session's current branch, oldest first
    import_json(store, text) -> new session id          # accepts a `json` export back

Formats: md (readable transcript), json (versioned, see json_format), jsonl (OpenAI
`messages`, one chat per agent), sharegpt (`conversations`), html (self-contained,
everything escaped), txt (`Name: text`), dpo (preference pairs: each turn on the branch
against its alternatives by the same speaker). Model output is untrusted everywhere.
"""

from __future__ import annotations

import json
from typing import Protocol

from townhall.errors import ConfigError
from townhall.export import dpo, html, json_format, jsonl, markdown, sharegpt, text
from townhall.export.importer import COLLECTION_NAME, import_documents, import_json
from townhall.store import Store


class Renderer(Protocol):
    def __call__(self, store: Store, session_id: str, branch: int | None = None) -> str: ...


FORMATS: dict[str, Renderer] = {
    "md": markdown.render,
    "json": json_format.render,
    "jsonl": jsonl.render,
    "sharegpt": sharegpt.render,
    "html": html.render,
    "txt": text.render,
    "dpo": dpo.render,
}

# Formats whose documents can simply follow one another for `export --all`.
_CONCATENATED = {"jsonl", "sharegpt", "txt", "md", "dpo"}


def _renderer(fmt: str) -> Renderer:
    try:
        return FORMATS[fmt]
    except KeyError:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}") from None


def export_session(store: Store, session_id: str, fmt: str, branch: int | None = None) -> str:
    return _renderer(fmt)(store, store.resolve_id(session_id), branch)


def export_all(store: Store, fmt: str) -> str:
    """Every session in one output: lines for jsonl/sharegpt, sections for md/txt, a collection for json."""
    _renderer(fmt)
    ids = [s.id for s in reversed(store.list_sessions())]
    if fmt == "json":
        documents = [json.loads(json_format.render(store, i)) for i in ids]
        collection = {"format": COLLECTION_NAME, "version": json_format.FORMAT_VERSION, "sessions": documents}
        return json.dumps(collection, indent=2, ensure_ascii=False) + "\n"
    if fmt not in _CONCATENATED:
        raise ConfigError(f"--all does not work with --format {fmt}; use one of jsonl, sharegpt, dpo, md, txt, json")
    separator = "" if fmt in ("jsonl", "sharegpt", "dpo") else "\n"
    return separator.join(FORMATS[fmt](store, i) for i in ids)


__all__ = ["FORMATS", "export_all", "export_session", "import_documents", "import_json"]
