-- Who did what, when: append-only.
CREATE TABLE audit_events (
    id          integer PRIMARY KEY,
    account_id  integer NOT NULL REFERENCES accounts (id),
    action      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL
);
CREATE INDEX audit_events_created_at_idx ON audit_events (created_at);
