-- Rolls back 000001: the catalogue and the customers.
DROP TABLE products;
DROP TABLE accounts;
