@postgres
Feature: The sandbox product's next upgrade is ready
  The release manager's question before an upgrade night is "what blocks?".
  These scenarios answer it for the product the embedded sandbox runs: the
  plan file is valid and the version path to the target is one the runbook
  allows; the database part of the plan runs for real on a copy of last
  night's data within the declared window; and the restore drill passed
  within its cadence, so a verified backup exists to roll back to.

  @id:UPG-03 @quarterly @pre-upgrade @impact:high @ref:ISO27001-A.8.32 @control:CM-3
  Scenario: The sandbox upgrade plan is valid for the target version
    Upgrades go one major version at a time, and a major upgrade starts from
    the minimum version the runbook names (the plan file's `[versions]`).
    The target is the version given to `drillbook gate pre-upgrade --to`,
    else the next release the plan file names.

    Given the upgrade plan in "features/upgrades/sandbox-upgrade.toml"
    Then the upgrade plan is well formed
    And the upgrade steps respect every ordering rule
    And every destructive upgrade step has a rollback step
    And the planned downtime fits in the window
    And the version path to the target version is allowed

  @id:UPG-04 @quarterly @pre-upgrade @s3 @impact:high @ref:ISO27001-A.8.32 @control:CP-10
  Scenario: Rehearsal — the database part of the upgrade fits the window on last night's data
    The downtime of the database part is measured, not estimated: the newest
    backup is restored into scratch (the backup the plan would roll back to),
    the pending migrations are applied to it, and the health checks run —
    `SELECT 1` and the documented count query. Steps the rehearsal cannot run
    (the application's own) count at their estimates.

    Given the upgrade plan in "features/upgrades/sandbox-upgrade.toml"
    And the backups in "nightly-custom"
    And the migrations in "features/migrations/sandbox-next"
    When the database part of the plan is rehearsed with these health checks:
      | query                           | expect |
      | SELECT 1                        | = 1    |
      | SELECT count(*) FROM signatures | > 0    |
    Then the rehearsed downtime fits in the window
    And the restore completes within 30 minutes
    And the restored tables hold at least these rows:
      | table    | rows |
      | accounts | 1    |

  @id:UPG-05 @pre-upgrade @s3 @impact:high @ref:ISO27001-A.8.13 @control:CP-9
  Scenario: A fresh, verified backup exists to roll back to
    The runbooks allow maintenance only after a backup is completed and
    verified. Verified means the restore drill (BKP-01) passed within its
    monthly cadence; fresh means last night's backup is there.

    Given the backups in "nightly-custom"
    Then the newest backup is at most 26h old
    And the drill `BKP-01` passed within its cadence
