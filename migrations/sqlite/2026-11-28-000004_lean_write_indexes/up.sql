-- (magnitude) is served by (magnitude, id) of migration 000003; one index fewer to write.
DROP INDEX IF EXISTS earthquakes_magnitude_idx;
