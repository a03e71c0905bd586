DROP TABLE sync_state;
DROP TABLE rejected_records;
DROP TABLE sync_runs;
DROP TABLE earthquakes;
