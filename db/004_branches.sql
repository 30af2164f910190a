-- Schema version 4: turns form a tree of branches (regenerate, edit, fork).
-- Each turn gets a `node` (unique in its session) and the `parent` node before it on its
-- path; several alternatives can share a turn_index, so UNIQUE(session_id, turn_index) goes.
-- SQLite cannot drop a constraint, so `turns` is rebuilt, keeping every row id: turns_fts
-- (external content, content_rowid = id) stays valid without a rebuild. Outcomes become one
-- per branch the same way (minutes_fts keeps its rowids). Existing sessions become one
-- branch: node from the row id, parent = the previous turn by turn_index.

CREATE TABLE turns_v4 (
    id                INTEGER PRIMARY KEY,
    session_id        TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    turn_index        INTEGER NOT NULL,      -- position on its path, from 0
    node              TEXT NOT NULL DEFAULT (lower(hex(randomblob(8)))),
    parent            TEXT,                  -- the node before it on its path; NULL for a first turn
    branch            INTEGER NOT NULL DEFAULT 1,  -- the branch it was said on
    author            TEXT,                  -- 'watcher' when the watcher wrote its text
    phase             TEXT,                  -- the agenda's phase, else NULL
    scripted          INTEGER NOT NULL DEFAULT 0,  -- 1: an agenda line, not the model's
    speaker           TEXT NOT NULL,
    kind              TEXT NOT NULL,
    content           TEXT NOT NULL DEFAULT '',
    status            TEXT NOT NULL,
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
    sampling          TEXT,
    retries           INTEGER NOT NULL DEFAULT 0,
    error             TEXT,
    UNIQUE (session_id, node)
);

INSERT INTO turns_v4 (id, session_id, turn_index, node, parent, branch, speaker, kind, content, status,
                      started_at, finished_at, prompt_tokens, reused_tokens, prefill_tokens, generated_tokens,
                      ttft_ms, decode_tps, restore_ms, save_ms, total_ms, finish_reason, sampling, retries, error)
SELECT t.id, t.session_id, t.turn_index, printf('%016x', t.id),
       (SELECT printf('%016x', p.id) FROM turns p
         WHERE p.session_id = t.session_id AND p.turn_index < t.turn_index
         ORDER BY p.turn_index DESC LIMIT 1),
       1, t.speaker, t.kind, t.content, t.status, t.started_at, t.finished_at, t.prompt_tokens, t.reused_tokens,
       t.prefill_tokens, t.generated_tokens, t.ttft_ms, t.decode_tps, t.restore_ms, t.save_ms, t.total_ms,
       t.finish_reason, t.sampling, t.retries, t.error
FROM turns t;

-- Dropping the old table drops its triggers and indexes; the implicit delete fires no trigger,
-- so turns_fts keeps its entries.
DROP TABLE turns;
ALTER TABLE turns_v4 RENAME TO turns;

CREATE INDEX turns_status ON turns(status);
CREATE INDEX turns_session ON turns(session_id, turn_index);
CREATE INDEX turns_parent ON turns(session_id, parent);

CREATE TRIGGER turns_fts_insert AFTER INSERT ON turns BEGIN
    INSERT INTO turns_fts(rowid, content, speaker) VALUES (new.id, new.content, new.speaker);
END;

CREATE TRIGGER turns_fts_delete AFTER DELETE ON turns BEGIN
    INSERT INTO turns_fts(turns_fts, rowid, content, speaker)
    VALUES ('delete', old.id, old.content, old.speaker);
END;

CREATE TRIGGER turns_fts_update AFTER UPDATE OF content, speaker ON turns BEGIN
    INSERT INTO turns_fts(turns_fts, rowid, content, speaker)
    VALUES ('delete', old.id, old.content, old.speaker);
    INSERT INTO turns_fts(rowid, content, speaker) VALUES (new.id, new.content, new.speaker);
END;

-- One row per branch: a named path that grew from `parent` after the shared node `fork`
-- (NULL: shares nothing) and ends at `head`.
CREATE TABLE branches (
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,            -- what users type: 1 is the session's first
    parent      INTEGER,                     -- the branch it grew from
    fork        TEXT,                        -- the last node it shares with `parent`
    head        TEXT,                        -- its last turn's node; NULL while empty
    reason      TEXT NOT NULL DEFAULT 'start',  -- start|regenerate|edit|fork
    created_at  REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, number)
);

INSERT INTO branches (session_id, number, head, created_at)
SELECT s.id, 1,
       (SELECT t.node FROM turns t WHERE t.session_id = s.id ORDER BY t.turn_index DESC LIMIT 1),
       s.created_at
FROM sessions s;

-- The tree kept whole by the database itself: a turn inserted at the end of its branch
-- becomes the branch's head, and a row written without its parent (by hand in sqlite3, or an
-- older writer) goes at the end of its branch.
CREATE TRIGGER turns_tree AFTER INSERT ON turns BEGIN
    INSERT OR IGNORE INTO branches(session_id, number, created_at)
    VALUES (new.session_id, new.branch, COALESCE(new.started_at, 0));
    UPDATE turns SET parent = (SELECT head FROM branches WHERE session_id = new.session_id AND number = new.branch)
    WHERE id = new.id AND new.parent IS NULL AND new.turn_index > 0;
    UPDATE branches SET head = new.node
    WHERE session_id = new.session_id AND number = new.branch
      AND head IS (SELECT parent FROM turns WHERE id = new.id);
END;

ALTER TABLE sessions ADD COLUMN current_branch INTEGER NOT NULL DEFAULT 1;

ALTER TABLE stances ADD COLUMN branch INTEGER NOT NULL DEFAULT 1;  -- current when it was read

CREATE TABLE outcomes_v4 (
    id             INTEGER PRIMARY KEY,
    session_id     TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    branch         INTEGER NOT NULL DEFAULT 1,  -- the branch whose debate was voted on
    votes          TEXT,
    votes_for      INTEGER,
    votes_against  INTEGER,
    result         TEXT,
    announcement   TEXT,
    decided_at     REAL,
    minutes        TEXT,
    minutes_at     REAL,
    UNIQUE (session_id, branch)
);

INSERT INTO outcomes_v4 (id, session_id, branch, votes, votes_for, votes_against, result, announcement, decided_at,
                         minutes, minutes_at)
SELECT id, session_id, 1, votes, votes_for, votes_against, result, announcement, decided_at, minutes, minutes_at
FROM outcomes;

DROP TABLE outcomes;
ALTER TABLE outcomes_v4 RENAME TO outcomes;

CREATE TRIGGER minutes_fts_insert AFTER INSERT ON outcomes BEGIN
    INSERT INTO minutes_fts(rowid, minutes) VALUES (new.id, COALESCE(new.minutes, ''));
END;

CREATE TRIGGER minutes_fts_delete AFTER DELETE ON outcomes BEGIN
    INSERT INTO minutes_fts(minutes_fts, rowid, minutes) VALUES ('delete', old.id, COALESCE(old.minutes, ''));
END;

CREATE TRIGGER minutes_fts_update AFTER UPDATE OF minutes ON outcomes BEGIN
    INSERT INTO minutes_fts(minutes_fts, rowid, minutes) VALUES ('delete', old.id, COALESCE(old.minutes, ''));
    INSERT INTO minutes_fts(rowid, minutes) VALUES (new.id, COALESCE(new.minutes, ''));
END;
