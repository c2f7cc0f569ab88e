-- Rolls back 000002: items first (they reference orders); partitions go with their parent.
DROP TABLE order_items;
DROP TABLE orders;
