@fleet @postgres
Feature: Fleet restore from yesterday — every member database, one drill each
  The runbook's restore-from-yesterday drill, written once and run once per
  fleet member (`drillbook run --fleet`): each member binds `production` (its
  database, read-only) and `nightly` (its backup store) in the fleet inventory,
  and the restore goes into a throwaway scratch database, never into the member.
  A fleet of hundreds of databases is where one silently failing backup job
  hides: these scenarios make every member prove its own backup.

  @id:FLT-01 @monthly @impact:high @ref:ISO27001-A.8.13 @control:CP-9
  Scenario: Each member's newest backup is fresh and restores within its RTO with its rows
    The monthly restore-from-yesterday drill, per member. A pass proves the
    member's RPO (last night's backup exists) and RTO (download, restore and
    first query within 30 minutes) with measured figures, and that the restore
    holds the member's data rather than an empty schema.

    Given the backups in "nightly"
    When the newest backup is restored into a scratch database
    Then the newest backup is at most 26h old
    And the restore completes within 30 minutes
    And the restored tables hold at least these rows:
      | table    | rows |
      | accounts | 1    |
      | orders   | 100  |
      | events   | 50   |

  @id:FLT-02 @monthly @impact:high @ref:ISO27001-A.8.13 @control:CP-4
  Scenario: Each member's newest backup is the file its job wrote and matches the member
    A restore that succeeds can still restore the wrong thing: a truncated
    upload, or a backup that stopped capturing some writes. The checksum file
    the backup job wrote proves the object is the one it wrote; the content
    comparison proves every row the member held at backup time came back
    unchanged.

    Given the backups in "nightly"
    And the subject database "production"
    When the newest backup is restored into a scratch database
    Then the backup matches its checksum file
    And every row older than the backup matches the subject

  @id:FLT-03 @daily @impact:high @ref:ISO27001-A.8.13
  Scenario: Each member has last night's backup
    The cheap daily half of the drill: no restore, only the store's listing.
    The newest backup must be at most 26 hours old (a nightly job plus a
    grace for a slow upload); older means a member's job missed a night.

    Given the backups in "nightly"
    Then the newest backup is at most 26h old
