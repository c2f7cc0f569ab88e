-- Pending in the next release: accounts get a data-residency region.
-- Nullable, no default: PostgreSQL adds the column without rewriting the table.
-- The CHECK is added NOT VALID (no full-table scan under lock) and validated by a later migration, outside this transaction.
SET lock_timeout = '2s';
SET statement_timeout = '60s';
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS region text;
ALTER TABLE accounts ADD CONSTRAINT accounts_region_check
    CHECK (region IN ('eu', 'us', 'apac')) NOT VALID;
