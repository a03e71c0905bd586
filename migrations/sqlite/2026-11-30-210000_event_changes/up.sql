-- The change log behind `GET /events/stream` (issue 18): one row per committed insert,
-- update, deletion or merge, written in the page's own transaction (SQLite writers are
-- serialised, so seq order is commit order). AUTOINCREMENT: a seq is never reused, even
-- after the newest rows are pruned.
CREATE TABLE event_changes (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('insert', 'update', 'delete', 'merge')),
    merged_into  TEXT,
    committed_at TEXT NOT NULL
);
CREATE INDEX event_changes_committed_at_idx ON event_changes (committed_at);

-- The highest seq removed by retention pruning.
CREATE TABLE event_changes_pruned (
    singleton   INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
    through_seq BIGINT NOT NULL
);
INSERT INTO event_changes_pruned (through_seq) VALUES (0);
