-- Boxes and radii at scale (issue 17, third pass).
--
-- The cell index: the time index again, but per cell of 5° × 5° (`100 × ⌊latitude / 5⌋ +
-- ⌊longitude / 5⌋`), carrying what a box's walk tests (latitude, longitude, state). A
-- time-ordered box or radius walks each cell it touches in time order and PostgreSQL merges
-- the walks (query::pg_cells_walk), so the entries of the rest of the world are never read:
-- the box across the antimeridian at 5M rows walked 91,000 entries of the time index for its
-- 1000 events (24-28 ms), a merge of 12 of its cells read 1000-odd (1.2 ms in EXPLAIN ANALYZE).
-- 95 bytes an event built over a filled table, 163-170 as it grows with the writes; building
-- it over 5M rows takes about 17 s (writes wait meanwhile).
CREATE INDEX earthquakes_cell_time_idx ON earthquakes
    (((floor(latitude / 5) * 100 + floor(longitude / 5))::int), time, id)
    INCLUDE (latitude, longitude, status, merged_into);
