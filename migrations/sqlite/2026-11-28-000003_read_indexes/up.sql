-- Indexes for the read API (GET /fdsnws/event/1/query, SPEC section 6). Plain indexes only:
-- on SQLite, `eventid` alias lookups scan `ids` with LIKE.
CREATE INDEX earthquakes_last_changed_idx ON earthquakes (last_changed_at, id);
CREATE INDEX earthquakes_magnitude_id_idx ON earthquakes (magnitude, id);
