-- Progress of `quakesync backfill` (SPEC section 5): the planned windows of each requested
-- range, each marked done in the same transaction as its last page. A backfill run again
-- with the same range (and filter) skips the windows marked done. Timestamps are
-- fixed-width RFC 3339 text, as in the other tables.
CREATE TABLE backfill_windows (
    range_start  TEXT NOT NULL,               -- the requested range [range_start, range_end)
    range_end    TEXT NOT NULL,
    filter       TEXT NOT NULL DEFAULT '',    -- other query parameters of the range, e.g. "minmagnitude=2.5"
    window_start TEXT NOT NULL,               -- this window [window_start, window_end)
    window_end   TEXT NOT NULL,
    expected     BIGINT,                      -- the upstream's count when planned (NULL: unknown)
    events       BIGINT NOT NULL DEFAULT 0,   -- records fetched for this window by the run that finished it
    pages        BIGINT NOT NULL DEFAULT 0,
    run_id       BIGINT REFERENCES sync_runs (id) ON DELETE SET NULL,
    planned_at   TEXT NOT NULL,
    done_at      TEXT,                        -- NULL until the window's last page committed
    PRIMARY KEY (range_start, range_end, filter, window_start)
);
