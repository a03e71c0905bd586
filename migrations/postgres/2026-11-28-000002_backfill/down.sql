DROP TABLE backfill_windows;
