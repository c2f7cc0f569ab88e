-- SentraScan: one row per security scan.
CREATE TABLE scans (
    id          integer PRIMARY KEY,
    scan_id     uuid NOT NULL UNIQUE,
    account_id  integer NOT NULL REFERENCES accounts (id),
    target      text NOT NULL,
    status      text NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    findings    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL
);
CREATE INDEX scans_status_idx ON scans (status);
CREATE INDEX scans_created_at_idx ON scans (created_at);
