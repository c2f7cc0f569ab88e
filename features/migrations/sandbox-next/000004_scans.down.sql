-- Rolls back 000004.
DROP TABLE scans;
