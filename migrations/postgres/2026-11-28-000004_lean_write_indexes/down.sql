DROP INDEX IF EXISTS earthquakes_aliases_idx;
CREATE INDEX IF NOT EXISTS earthquakes_ids_elems_idx ON earthquakes USING GIN (string_to_array(ids, ','));
CREATE INDEX IF NOT EXISTS earthquakes_magnitude_idx ON earthquakes (magnitude);
