DROP INDEX IF EXISTS earthquakes_magnitude_id_idx;
DROP INDEX IF EXISTS earthquakes_last_changed_idx;
