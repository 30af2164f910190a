-- Townhall record, schema version 1: sessions, participants, turns, events.
-- Plain column types only (TEXT, INTEGER, REAL; JSON kept in TEXT) so sqlite3 and
-- Datasette show the data as it is. Times are epoch seconds (REAL).

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,          -- made by the scheduler
    title         TEXT,
    motion        TEXT NOT NULL,
    spec          TEXT NOT NULL,             -- the town hall as given (JSON)
    backend       TEXT,
    model_name    TEXT,
    model_path    TEXT,
    model_sha256  TEXT,                      -- NULL when the model is not a local file
    n_ctx         INTEGER,
    device        TEXT,
    seed          INTEGER,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    ended_at      REAL,
    status        TEXT NOT NULL DEFAULT 'running',  -- running|finished|stopped|failed|interrupted
    end_reason    TEXT,
    error         TEXT,
    writer_pid    INTEGER,                   -- the process recording it while running
    writer_host   TEXT
);

CREATE TABLE participants (
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,            -- speaking order
    name        TEXT NOT NULL,
    title       TEXT,
    color       TEXT,
    moderator   INTEGER NOT NULL DEFAULT 0,
    persona     TEXT NOT NULL,               -- the persona as it was (JSON)
    PRIMARY KEY (session_id, position)
);

CREATE TABLE turns (
    id                INTEGER PRIMARY KEY,
    session_id        TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    turn_index        INTEGER NOT NULL,
    speaker           TEXT NOT NULL,
    kind              TEXT NOT NULL,         -- agent|moderator|audience|summary
    content           TEXT NOT NULL DEFAULT '',
    status            TEXT NOT NULL,         -- streaming|complete|interrupted|failed|degenerate
    started_at        REAL,
    finished_at       REAL,
    prompt_tokens     INTEGER,
    reused_tokens     INTEGER,
    prefill_tokens    INTEGER,
    generated_tokens  INTEGER,
    ttft_ms           REAL,
    decode_tps        REAL,
    restore_ms        REAL,
    save_ms           REAL,
    total_ms          REAL,
    finish_reason     TEXT,
    sampling          TEXT,                  -- resolved sampling settings (JSON)
    retries           INTEGER NOT NULL DEFAULT 0,
    error             TEXT,
    UNIQUE (session_id, turn_index)
);

CREATE INDEX turns_status ON turns(status);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    at          REAL NOT NULL,
    type        TEXT NOT NULL,               -- started|resumed_session|paused|resumed|strategy|error|ended
    detail      TEXT                         -- JSON
);

CREATE INDEX events_session ON events(session_id);

-- sha256 of model files, so a 250 MB file is hashed once per path/size/mtime, not per session.
CREATE TABLE model_hashes (
    path      TEXT PRIMARY KEY,
    size      INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    sha256    TEXT NOT NULL
);
