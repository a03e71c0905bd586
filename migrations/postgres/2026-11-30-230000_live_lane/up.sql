-- The live lane's work (issue 18), one row per live source: what its batches wrote, summed,
-- updated in the transaction of each batch that wrote something (a poll answered 304, or
-- a feed that changed nothing, writes nothing). No run row per poll.
CREATE TABLE live_lane (
    source         TEXT PRIMARY KEY,          -- `usgs-live` (polled feed) or `emsc-live` (push)
    batches        BIGINT NOT NULL DEFAULT 0, -- batches (changed feeds, push messages) written
    fetched        BIGINT NOT NULL DEFAULT 0,
    inserted       BIGINT NOT NULL DEFAULT 0,
    updated        BIGINT NOT NULL DEFAULT 0,
    unchanged      BIGINT NOT NULL DEFAULT 0,
    deleted        BIGINT NOT NULL DEFAULT 0,
    merged         BIGINT NOT NULL DEFAULT 0,
    rejected       BIGINT NOT NULL DEFAULT 0,
    last_poll_at   TIMESTAMPTZ,               -- the poll (or message) of the last batch written
    last_change_at TIMESTAMPTZ,               -- the last batch that inserted, updated, deleted or merged
    last_error     TEXT,                      -- the last failure before that batch (NULL: none)
    updated_at     TIMESTAMPTZ NOT NULL
);
