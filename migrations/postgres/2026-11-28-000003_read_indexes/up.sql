-- Indexes for the read API (GET /fdsnws/event/1/query, SPEC section 6).
-- `eventid` matches any associated id: a GIN index on the elements of `ids` (",a,b," split
-- on commas; the empty first and last elements are harmless). string_to_array is immutable,
-- so no extension is needed.
CREATE INDEX earthquakes_ids_elems_idx ON earthquakes USING GIN (string_to_array(ids, ','));
-- `updatedafter` also matches rows this catalogue changed after the given time (so a
-- quakesync that syncs from this one misses nothing this one received late).
CREATE INDEX earthquakes_last_changed_idx ON earthquakes (last_changed_at, id);
-- `orderby=magnitude|magnitude-asc`: NULL magnitudes last when descending, first when
-- ascending (as on SQLite), with the id tiebreak.
CREATE INDEX earthquakes_magnitude_id_idx ON earthquakes (magnitude ASC NULLS FIRST, id);
-- Latitude/longitude boxes: a GiST index on the point (built in, no extension); the query
-- adds `point(longitude, latitude) <@ box(...)` to the plain bounds when the box is small.
CREATE INDEX earthquakes_point_idx ON earthquakes USING GIST (point(longitude, latitude));
