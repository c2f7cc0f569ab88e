-- Rolls back 000006.
ALTER TABLE accounts DROP CONSTRAINT accounts_region_check;
ALTER TABLE accounts DROP COLUMN region;
