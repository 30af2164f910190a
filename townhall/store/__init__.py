"""The record: every town hall kept in one SQLite file, durable, searchable and resumable.

Public API (the TUI, `townhall run`, `generate` and the exports use exactly this):

    store = Store.open(path)          # Path | None; None -> paths.default_db_path() (honours TOWNHALL_DB).
                                      # Creates the folder, applies db/NNN_*.sql in order (PRAGMA
                                      # user_version), marks turns left `streaming` by a dead process
                                      # `interrupted`. A newer schema or a non-database -> StoreError.
    unsubscribe = store.attach(scheduler_or_bus)   # records events as they happen
    store.list_sessions(limit=None) -> list[SessionSummary]      # newest first
    store.get_session(id_or_prefix) -> SessionRecord  # unique id prefix accepted; else NotFoundError
    store.resolve_id(id_or_prefix) -> str
    store.turns(session_id) -> list[Turn]                        # in turn order
    store.search(query, limit=20) -> list[SearchHit]             # FTS5 over turns and minutes
                                                                 # (a minutes hit: kind "minutes", turn_index -1)
    store.stances_of(id) -> list[StanceMeasured]                 # every stance probe reading, in turn order
    store.outcome_of(id) -> OutcomeRecord | None                 # closing ballot (votes, tally, result,
                                                                 # announcement) and the minutes
    store.rename(id, title); store.delete(id); store.close()
    store.insert_session(record, turns) -> str   # a whole session in one transaction (`townhall import`)
    spec, personas, turns = store.load_for_resume(id)
    Scheduler(engine, spec, personas, session_id=id, history=turns)   # then store.attach(...) and run

The database is WAL with foreign keys and a busy timeout, so another `townhall`,
`sqlite3` or Datasette can read it while a debate is being written. Each turn is
one row, inserted `streaming` when it starts and completed in one transaction when
it ends; tokens are never written one by one.
"""

from townhall.store.records import OutcomeRecord, SearchHit, SessionRecord, SessionSummary, StoredEvent
from townhall.store.search import SearchQueryError
from townhall.store.store import Store

__all__ = ["OutcomeRecord", "SearchHit", "SearchQueryError", "SessionRecord", "SessionSummary", "Store", "StoredEvent"]
