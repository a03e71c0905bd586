-- quakesync schema, PostgreSQL. Names fixed by SPEC.md section 2.
CREATE TABLE earthquakes (
    id              TEXT PRIMARY KEY,
    ids             TEXT NOT NULL,            -- all associated ids, USGS style: ",a,b,"
    time            TIMESTAMPTZ NOT NULL,
    updated         TIMESTAMPTZ NOT NULL,
    magnitude       DOUBLE PRECISION,
    mag_type        TEXT,
    place           TEXT,
    title           TEXT,
    longitude       DOUBLE PRECISION NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    latitude        DOUBLE PRECISION NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    depth_km        DOUBLE PRECISION,
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
    first_seen_at   TIMESTAMPTZ NOT NULL,
    last_changed_at TIMESTAMPTZ NOT NULL,
    merged_into     TEXT
);
CREATE INDEX earthquakes_time_idx ON earthquakes (time, id);
CREATE INDEX earthquakes_updated_idx ON earthquakes (updated, id);
CREATE INDEX earthquakes_magnitude_idx ON earthquakes (magnitude);

CREATE TABLE sync_runs (
    id          BIGSERIAL PRIMARY KEY,
    trigger     TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
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
    id          BIGSERIAL PRIMARY KEY,
    run_id      BIGINT REFERENCES sync_runs (id) ON DELETE SET NULL,
    source_id   TEXT,
    reason      TEXT NOT NULL,
    payload     TEXT NOT NULL,               -- the record's raw JSON, as received
    rejected_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX rejected_records_run_idx ON rejected_records (run_id);

CREATE TABLE sync_state (
    source        TEXT PRIMARY KEY,
    cursor        TIMESTAMPTZ,
    resume_offset BIGINT NOT NULL DEFAULT 0,
    start_time    TIMESTAMPTZ,                -- the pinned `starttime` of FDSN queries (first run's start)
    updated_at    TIMESTAMPTZ NOT NULL
);
