ALTER TABLE earthquakes DROP COLUMN properties;
ALTER TABLE earthquakes DROP COLUMN sources;
ALTER TABLE earthquakes DROP COLUMN gap;
ALTER TABLE earthquakes DROP COLUMN mmi;
ALTER TABLE earthquakes DROP COLUMN cdi;
