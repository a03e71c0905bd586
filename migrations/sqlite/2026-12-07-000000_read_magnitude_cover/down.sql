CREATE INDEX earthquakes_magnitude_id_idx ON earthquakes (magnitude, id);
DROP INDEX earthquakes_magnitude_cover_idx;
