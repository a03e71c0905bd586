-- Progress of `quakesync backfill` (SPEC section 5): the planned windows of each requested
-- range, each marked done in the same transaction as its last page. A backfill run again
-- with the same range (and filter) skips the windows marked done.
CREATE TABLE backfill_windows (
    range_start  TIMESTAMPTZ NOT NULL,        -- the requested range [range_start, range_end)
    range_end    TIMESTAMPTZ NOT NULL,
    filter       TEXT NOT NULL DEFAULT '',    -- other query parameters of the range, e.g. "minmagnitude=2.5"
    window_start TIMESTAMPTZ NOT NULL,        -- this window [window_start, window_end)
    window_end   TIMESTAMPTZ NOT NULL,
    expected     BIGINT,                      -- the upstream's count when planned (NULL: unknown)
    events       BIGINT NOT NULL DEFAULT 0,   -- records fetched for this window by the run that finished it
    pages        BIGINT NOT NULL DEFAULT 0,
    run_id       BIGINT REFERENCES sync_runs (id) ON DELETE SET NULL,
    planned_at   TIMESTAMPTZ NOT NULL,
    done_at      TIMESTAMPTZ,                 -- NULL until the window's last page committed
    PRIMARY KEY (range_start, range_end, filter, window_start)
);
