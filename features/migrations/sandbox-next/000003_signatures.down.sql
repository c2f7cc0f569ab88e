-- Rolls back 000003.
DROP TABLE signatures;
