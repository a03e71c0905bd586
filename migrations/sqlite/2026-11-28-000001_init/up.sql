-- quakesync schema, SQLite (timestamps are fixed-width RFC 3339 text, so text order is time order). Names fixed by SPEC.md section 2.
CREATE TABLE earthquakes (
    id              TEXT PRIMARY KEY,
    ids             TEXT NOT NULL,            -- all associated ids, USGS style: ",a,b,"
    time            TEXT NOT NULL,
    updated         TEXT NOT NULL,
    magnitude       REAL,
    mag_type        TEXT,
    place           TEXT,
    title           TEXT,
    longitude       REAL NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    latitude        REAL NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    depth_km        REAL,
    status          TEXT NOT NULL,
    event_type      TEXT,
    net             TEXT,
    code            TEXT,
    tsunami         INTEGER,
    sig             INTEGER,
    felt            INTEGER,
    alert           TEXT,
    url             TEXT,
    source          TEXT NOT NULL,
    content_hash    TEXT NOT NULL,
    first_seen_at   TEXT NOT NULL,
    last_changed_at TEXT NOT NULL,
    merged_into     TEXT
);
CREATE INDEX earthquakes_time_idx ON earthquakes (time, id);
CREATE INDEX earthquakes_updated_idx ON earthquakes (updated, id);
CREATE INDEX earthquakes_magnitude_idx ON earthquakes (magnitude);

CREATE TABLE sync_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger     TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    fetched     BIGINT NOT NULL DEFAULT 0,
    inserted    BIGINT NOT NULL DEFAULT 0,
    updated     BIGINT NOT NULL DEFAULT 0,
    unchanged   BIGINT NOT NULL DEFAULT 0,
    deleted     BIGINT NOT NULL DEFAULT 0,
    merged      BIGINT NOT NULL DEFAULT 0,
    rejected    BIGINT NOT NULL DEFAULT 0,
    pages       BIGINT NOT NULL DEFAULT 0,
    error       TEXT
);
CREATE INDEX sync_runs_status_idx ON sync_runs (status);

CREATE TABLE rejected_records (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      BIGINT REFERENCES sync_runs (id) ON DELETE SET NULL,
    source_id   TEXT,
    reason      TEXT NOT NULL,
    payload     TEXT NOT NULL,               -- the record's raw JSON, as received
    rejected_at TEXT NOT NULL
);
CREATE INDEX rejected_records_run_idx ON rejected_records (run_id);

CREATE TABLE sync_state (
    source        TEXT PRIMARY KEY,
    cursor        TEXT,
    resume_offset BIGINT NOT NULL DEFAULT 0,
    start_time    TEXT,                -- the pinned `starttime` of FDSN queries (first run's start)
    updated_at    TEXT NOT NULL
);
