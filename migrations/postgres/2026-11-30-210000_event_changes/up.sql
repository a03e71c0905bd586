-- The change log behind `GET /events/stream` (issue 18): one row per committed insert,
-- update, deletion or merge, written in the page's own transaction. `seq` is the stream's
-- event id; writers take a transaction-level advisory lock before they allocate one, so
-- seq order is commit order and a reader that has seen seq N never later finds a smaller one.
CREATE TABLE event_changes (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('insert', 'update', 'delete', 'merge')),
    merged_into  TEXT,
    committed_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX event_changes_committed_at_idx ON event_changes (committed_at);

-- The highest seq removed by retention pruning: a client resuming from an older id is told
-- what it lost.
CREATE TABLE event_changes_pruned (
    singleton   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    through_seq BIGINT NOT NULL
);
INSERT INTO event_changes_pruned (through_seq) VALUES (0);
