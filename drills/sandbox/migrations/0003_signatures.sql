-- Aureus Sentinel: signatures over released artefacts.
CREATE TABLE signatures (
    id             integer PRIMARY KEY,
    account_id     integer NOT NULL REFERENCES accounts (id),
    artifact       text NOT NULL,
    digest_sha256  char(64) NOT NULL,
    algorithm      text NOT NULL,
    key_id         text NOT NULL,
    created_at     timestamptz NOT NULL
);
CREATE INDEX signatures_created_at_idx ON signatures (created_at);
CREATE INDEX signatures_digest_idx ON signatures (digest_sha256);
