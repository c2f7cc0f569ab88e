-- The sandbox product's customers and catalogue.
CREATE TABLE accounts (
    id          integer PRIMARY KEY,
    email       text NOT NULL UNIQUE,
    name        text NOT NULL,
    plan        text NOT NULL CHECK (plan IN ('free', 'team', 'business', 'enterprise')),
    created_at  timestamptz NOT NULL
);
CREATE INDEX accounts_created_at_idx ON accounts (created_at);

CREATE TABLE products (
    id           integer PRIMARY KEY,
    sku          text NOT NULL UNIQUE,
    name         text NOT NULL,
    price_cents  integer NOT NULL CHECK (price_cents > 0),
    created_at   timestamptz NOT NULL
);
