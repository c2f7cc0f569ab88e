-- Rolls back 000005.
DROP TABLE audit_events;
