CREATE INDEX earthquakes_magnitude_narrow_idx ON earthquakes (magnitude ASC NULLS FIRST, id);
DROP INDEX earthquakes_magnitude_id_idx;
ALTER INDEX earthquakes_magnitude_narrow_idx RENAME TO earthquakes_magnitude_id_idx;
