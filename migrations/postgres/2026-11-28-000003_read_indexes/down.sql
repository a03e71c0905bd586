DROP INDEX IF EXISTS earthquakes_point_idx;
DROP INDEX IF EXISTS earthquakes_magnitude_id_idx;
DROP INDEX IF EXISTS earthquakes_last_changed_idx;
DROP INDEX IF EXISTS earthquakes_ids_elems_idx;
