-- Orders, RANGE-partitioned by month on created_at.
-- A primary key (and so a foreign key target) of a partitioned table must
-- include the partition key, hence PRIMARY KEY (id, created_at) and the
-- two-column foreign key from order_items.
CREATE TABLE orders (
    id           integer NOT NULL,
    account_id   integer NOT NULL REFERENCES accounts (id),
    status       text NOT NULL CHECK (status IN ('paid', 'shipped', 'cancelled', 'refunded')),
    total_cents  integer NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

-- Monthly partitions from three months before the seeding anchor up to the
-- month after it. The anchor comes from the session setting drillbook.anchor
-- (set by the migration runner) so that the same anchor gives the same schema.
DO $$
DECLARE
    anchor date := coalesce(nullif(current_setting('drillbook.anchor', true), '')::date,
                            (now() AT TIME ZONE 'UTC')::date);
    first_month date := (date_trunc('month', anchor) - interval '3 months')::date;
    month date;
BEGIN
    FOR i IN 0..4 LOOP
        month := (first_month + make_interval(months => i))::date;
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF orders FOR VALUES FROM (%L) TO (%L)',
            'orders_' || to_char(month, 'YYYY_MM'),
            month::timestamp AT TIME ZONE 'UTC',
            (month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    END LOOP;
END
$$;

CREATE INDEX orders_account_id_idx ON orders (account_id);

CREATE TABLE order_items (
    id                integer PRIMARY KEY,
    order_id          integer NOT NULL,
    order_created_at  timestamptz NOT NULL,
    product_id        integer NOT NULL REFERENCES products (id),
    quantity          integer NOT NULL CHECK (quantity > 0),
    unit_price_cents  integer NOT NULL,
    created_at        timestamptz NOT NULL,
    FOREIGN KEY (order_id, order_created_at) REFERENCES orders (id, created_at)
);
CREATE INDEX order_items_order_idx ON order_items (order_id, order_created_at);
CREATE INDEX order_items_created_at_idx ON order_items (created_at);
