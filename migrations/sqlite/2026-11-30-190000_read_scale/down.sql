CREATE INDEX IF NOT EXISTS earthquakes_time_idx ON earthquakes (time, id);
DROP INDEX IF EXISTS earthquakes_time_cover_idx;
DROP INDEX IF EXISTS earthquakes_aliases_idx;
DROP TRIGGER IF EXISTS earthquakes_count_insert;
DROP TRIGGER IF EXISTS earthquakes_count_update;
DROP TRIGGER IF EXISTS earthquakes_count_delete;
DROP TABLE IF EXISTS catalogue_counts;
