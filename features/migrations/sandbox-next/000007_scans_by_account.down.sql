-- Rolls back 000007.
DROP INDEX scans_account_id_idx;
