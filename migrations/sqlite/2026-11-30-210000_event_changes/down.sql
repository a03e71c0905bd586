DROP TABLE event_changes_pruned;
DROP TABLE event_changes;
