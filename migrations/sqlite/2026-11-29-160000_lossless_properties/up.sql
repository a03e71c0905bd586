-- Lossless events (issue 16): every property of the upstream's record is kept and served back.
-- `properties` is the upstream's `properties` object, its JSON text exactly as received (key
-- order and number spelling kept: text, not jsonb). The typed columns are the ones the read
-- API filters on (mincdi/maxcdi, minmmi/maxmmi, mingap/maxgap, contributor). Rows stored before
-- this migration keep NULL here until their next revision: nothing is made up.
ALTER TABLE earthquakes ADD COLUMN cdi REAL;
ALTER TABLE earthquakes ADD COLUMN mmi REAL;
ALTER TABLE earthquakes ADD COLUMN gap REAL;
ALTER TABLE earthquakes ADD COLUMN sources TEXT;            -- USGS `sources`, ",us,ci," as sent
ALTER TABLE earthquakes ADD COLUMN properties TEXT;
