-- Catalogue counts kept by the writes (issue 17): `/metrics`, `/health` and the dashboard read
-- one row instead of counting the whole table on every request. Row triggers keep it in the
-- writing transaction (a rolled-back page leaves it as it was). A row is in exactly one
-- state: merged (merged_into set, whatever its status), else deleted, else live.
CREATE TABLE catalogue_counts (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    live      INTEGER NOT NULL,
    deleted   INTEGER NOT NULL,
    merged    INTEGER NOT NULL
);
INSERT INTO catalogue_counts (singleton, live, deleted, merged)
SELECT 1,
       COALESCE(SUM(merged_into IS NULL AND status <> 'deleted'), 0),
       COALESCE(SUM(merged_into IS NULL AND status = 'deleted'), 0),
       COALESCE(SUM(merged_into IS NOT NULL), 0)
FROM earthquakes;

CREATE TRIGGER earthquakes_count_insert AFTER INSERT ON earthquakes BEGIN
    UPDATE catalogue_counts
       SET live = live + (NEW.merged_into IS NULL AND NEW.status <> 'deleted'),
           deleted = deleted + (NEW.merged_into IS NULL AND NEW.status = 'deleted'),
           merged = merged + (NEW.merged_into IS NOT NULL)
     WHERE singleton = 1;
END;
CREATE TRIGGER earthquakes_count_update AFTER UPDATE OF status, merged_into ON earthquakes
    WHEN (OLD.merged_into IS NULL) <> (NEW.merged_into IS NULL)
      OR (OLD.status = 'deleted') <> (NEW.status = 'deleted')
BEGIN
    UPDATE catalogue_counts
       SET live = live + (NEW.merged_into IS NULL AND NEW.status <> 'deleted')
                       - (OLD.merged_into IS NULL AND OLD.status <> 'deleted'),
           deleted = deleted + (NEW.merged_into IS NULL AND NEW.status = 'deleted')
                             - (OLD.merged_into IS NULL AND OLD.status = 'deleted'),
           merged = merged + (NEW.merged_into IS NOT NULL) - (OLD.merged_into IS NOT NULL)
     WHERE singleton = 1;
END;
CREATE TRIGGER earthquakes_count_delete AFTER DELETE ON earthquakes BEGIN
    UPDATE catalogue_counts
       SET live = live - (OLD.merged_into IS NULL AND OLD.status <> 'deleted'),
           deleted = deleted - (OLD.merged_into IS NULL AND OLD.status = 'deleted'),
           merged = merged - (OLD.merged_into IS NOT NULL)
     WHERE singleton = 1;
END;

-- `eventid` by an alias (issue 17: a LIKE over every row's `ids` took 240 ms at 100k): only
-- rows with more than one id can list an alias, and this index holds just those (a few
-- percent), with both columns the lookup reads, so it scans this small index, not the table.
CREATE INDEX earthquakes_aliases_idx ON earthquakes (ids, id) WHERE ids <> ',' || id || ',';

-- The time index carries what most queries filter on (issue 17): a page at offset k is k
-- entries of this index skipped (query_events), then only the page's rows read; status and
-- merged_into (every query), latitude, longitude and magnitude (boxes, radius, magnitude).
CREATE INDEX earthquakes_time_cover_idx
    ON earthquakes (time, id, status, merged_into, latitude, longitude, magnitude);
DROP INDEX earthquakes_time_idx;
