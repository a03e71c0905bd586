CREATE INDEX IF NOT EXISTS earthquakes_magnitude_idx ON earthquakes (magnitude);
