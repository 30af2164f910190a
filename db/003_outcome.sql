-- Schema version 3: the stance probe's readings, the closing ballot and the minutes.
-- One `stances` row per probe (an agent's P(for) after a turn); one `outcomes` row per
-- session (the votes as JSON, the tally, the moderator's line, the minutes). The
-- minutes get their own full-text index, kept in step by triggers like turns_fts.

CREATE TABLE stances (
    id          INTEGER PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    round       INTEGER NOT NULL,            -- completed rounds when it was read
    turn_index  INTEGER NOT NULL,            -- the last turn the agent's state had taken in
    agent       TEXT NOT NULL,
    p_for       REAL NOT NULL,               -- P(for) / (P(for) + P(against))
    method      TEXT NOT NULL,               -- logits|logprobs|choice
    at          REAL NOT NULL
);

CREATE INDEX stances_session ON stances(session_id, turn_index);

CREATE TABLE outcomes (
    id             INTEGER PRIMARY KEY,
    session_id     TEXT NOT NULL UNIQUE REFERENCES sessions(id) ON DELETE CASCADE,
    votes          TEXT,                     -- JSON list of {agent, choice, p_for}
    votes_for      INTEGER,
    votes_against  INTEGER,
    result         TEXT,                     -- carried|defeated|tied
    announcement   TEXT,
    decided_at     REAL,
    minutes        TEXT,
    minutes_at     REAL
);

CREATE VIRTUAL TABLE minutes_fts USING fts5(
    minutes,
    content='outcomes',
    content_rowid='id',
    tokenize='unicode61 remove_diacritics 2'
);

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
