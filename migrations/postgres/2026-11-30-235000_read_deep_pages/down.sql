CREATE INDEX earthquakes_point_narrow_idx ON earthquakes USING GIST (point(longitude, latitude))
    INCLUDE (longitude, latitude);
DROP INDEX earthquakes_point_idx;
ALTER INDEX earthquakes_point_narrow_idx RENAME TO earthquakes_point_idx;
DROP TRIGGER earthquakes_version ON earthquakes;
DROP FUNCTION quakesync_bump_version();
DROP TABLE catalogue_version;
