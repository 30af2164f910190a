-- Schema version 2: full-text search over what was said (SQLite FTS5).
-- An external-content index on turns, kept in step by triggers; rows that existed
-- before this migration are indexed by the 'rebuild' at the end.

CREATE VIRTUAL TABLE turns_fts USING fts5(
    content,
    speaker,
    content='turns',
    content_rowid='id',
    tokenize='unicode61 remove_diacritics 2'
);

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

INSERT INTO turns_fts(turns_fts) VALUES ('rebuild');
