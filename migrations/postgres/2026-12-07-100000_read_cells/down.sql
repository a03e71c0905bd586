DROP INDEX IF EXISTS earthquakes_cell_time_idx;
