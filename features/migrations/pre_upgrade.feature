@postgres
Feature: The next release's migrations are safe to apply to production
  Before the upgrade window the release manager needs three facts: production's
  migration history agrees with the files (nothing edited after it ran, nothing
  missing), the pending migrations take no lock-heavy or destructive shortcut,
  and they apply to a copy of last night's data within the window.

  @id:MIG-03 @monthly @pre-upgrade @impact:high @ref:ISO27001-A.8.32 @control:CM-3
  Scenario: Production's migration history matches the migration files
    Like Flyway's `validate`: a migration edited after it was applied, or one
    applied that no longer exists, means production is not what the files
    describe, and the upgrade would build on a false picture.

    Given the migrations in "features/migrations/sandbox-next"
    And the subject database "production"
    Then the migration history of the subject matches the migration files

  @id:MIG-04 @monthly @pre-upgrade @impact:medium @ref:ISO27001-A.8.32
  Scenario: The pending migrations take no lock-heavy or destructive shortcut
    An ALTER that rewrites a large table, or validates a constraint under an
    exclusive lock, turns a short maintenance window into an outage. The rules
    below block the upgrade; other findings are kept as evidence for review.

    Given the migrations in "features/migrations/sandbox-next"
    And the subject database "production"
    Then the pending migrations have no lint findings of these rules:
      | rule                         |
      | adding-required-field        |
      | adding-field-with-default    |
      | adding-not-nullable-field    |
      | changing-column-type         |
      | constraint-missing-not-valid |
      | ban-drop-column              |
      | ban-drop-table               |
      | ban-drop-database            |
      | renaming-column              |
      | renaming-table               |
      | disallowed-unique-constraint |

  @id:MIG-05 @monthly @pre-upgrade @s3 @impact:high @ref:ISO27001-A.8.32 @control:CP-10
  Scenario: The pending migrations apply to last night's data within the window
    The database part of the upgrade window is measured, not guessed: the
    newest backup is restored into scratch, the pending migrations are applied
    to it, and the product's own post-upgrade checks run on the result.

    Given the backups in "nightly-custom"
    And the migrations in "features/migrations/sandbox-next"
    When the newest backup is restored into a scratch database
    And the pending migrations are applied to the restored database
    Then the pending migrations apply within 5 minutes
    And the restored tables hold at least these rows:
      | table       | rows |
      | accounts    | 1    |
      | scans       | 1    |
    And the query "SELECT count(*) FROM accounts WHERE region IS NOT NULL" returns exactly 0
