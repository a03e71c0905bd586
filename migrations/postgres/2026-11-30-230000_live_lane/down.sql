DROP TABLE live_lane;
