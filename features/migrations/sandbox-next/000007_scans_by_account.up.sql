-- Pending in the next release: the scans list filters by account.
SET lock_timeout = '2s';
SET statement_timeout = '60s';
CREATE INDEX IF NOT EXISTS scans_account_id_idx ON scans (account_id);
