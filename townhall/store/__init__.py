"""The record: every town hall kept in one SQLite file, durable, searchable and resumable.

Public API (the TUI, `townhall run`, `generate` and the exports use exactly this):

    store = Store.open(path)          # Path | None; None -> paths.default_db_path() (honours TOWNHALL_DB).
                                      # Creates the folder, applies db/NNN_*.sql in order (PRAGMA
                                      # user_version), marks turns left `streaming` by a dead process
                                      # `interrupted`. A newer schema or a non-database -> StoreError.
    unsubscribe = store.attach(scheduler_or_bus)   # records events as they happen
    store.list_sessions(limit=None) -> list[SessionSummary]      # newest first; `turns` on the current
                                                                 # branch, `current_branch`, `branch_count`
    store.get_session(id_or_prefix) -> SessionRecord  # unique id prefix accepted; else NotFoundError
    store.resolve_id(id_or_prefix) -> str
    store.tree(id) -> TurnTree                                   # every turn on every branch; `current` set
    store.turns(session_id, branch=None) -> list[Turn]           # a branch's path (the current one), in order
    store.turn_at(id, index, branch=None) -> Turn                # one turn of a path, or a one-line error
    store.search(query, limit=20) -> list[SearchHit]             # FTS5 over turns on every branch and minutes
                                                                 # (a minutes hit: kind "minutes", turn_index -1);
                                                                 # hit.branch: said on; hit.branches: paths holding it
    store.stances_of(id, branch=None) -> list[StanceMeasured]    # the readings along a branch's path, in turn order
    store.outcome_of(id, branch=None) -> OutcomeRecord | None    # a branch's closing ballot (votes, tally, result,
                                                                 # announcement) and the minutes
    store.fork(id, at, branch=None) -> int                       # a new current branch sharing turns 0..at
    store.edit_turn(id, index, text, branch=None) -> int         # a new current branch ending at the watcher's text
    store.switch_branch(id, number)                              # make a branch current (fork/edit/switch refuse
                                                                 # a session another process is recording; they
                                                                 # apply debate.branching's op and record its
                                                                 # events as a live run's, in one transaction)
    store.rename(id, title); store.delete(id); store.close()
    store.insert_session(record, turns, branches=()) -> str   # a whole session in one transaction (`import`)
    spec, personas, turns = store.load_for_resume(id)            # the current branch's settled path
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
