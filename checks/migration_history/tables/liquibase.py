"""liquibase history table: filled in by issue 12 (see checks/migration_history/tables/__init__.py)."""
