@postgres @s3
Feature: Restore from yesterday
  Every product's runbook promises that last night's backup can rebuild the
  database. A backup nobody has restored is a hope, not a control: these
  scenarios restore the newest backup into a throwaway database, time it, and
  prove its content against the live system. Nothing is ever written to the
  live system.

  @id:BKP-01 @monthly @impact:high @ref:ISO27001-A.8.13 @control:CP-9
  Scenario: Scrydon monthly backup verification — yesterday's backup restores and matches production
    Scrydon's day-2 cadence table lists "Backup verification (restore-from-yesterday
    drill): Monthly". A pass proves RPO and RTO with measured figures, and that
    every row that existed at backup time came back unchanged.

    Given the backups in "nightly-custom"
    And the subject database "production"
    When the newest backup is restored into a scratch database
    Then the newest backup is at most 26h old
    And the restore completes within 30 minutes
    And the restored tables hold at least these rows:
      | table       | rows   |
      | accounts    | 1      |
      | orders      | 1000   |
      | order_items | 1000   |
    And every row older than the backup matches the subject

  @id:BKP-02 @quarterly @impact:high @ref:ISO27001-A.8.13 @control:CP-4
  Scenario: Aureus Sentinel quarterly restore test — the nightly pg_dumpall restores and has signatures
    The Aureus Sentinel runbook restores `backup-YYYYMMDD.sql.gz` (pg_dumpall | gzip,
    02:00 nightly) and checks `SELECT count(*) FROM signatures` before scaling the
    service back up. Its restore-testing schedule is quarterly.

    Given the backups in "nightly-dumpall" of database "product"
    When the newest backup is restored into a scratch database
    Then the newest backup is at most 26h old
    And the query "SELECT count(*) FROM signatures" returns more than 0

  @id:BKP-03 @weekly @impact:high @ref:ISO27001-A.8.14
  Scenario: SARK weekly DR test — the custom-format dump is intact and restores within the RTO
    SARK's weekly tasks include a test restore. The dump's checksum file proves the
    object in the bucket is the one the backup job wrote; the restore must fit the
    30-minute RTO of the disaster-recovery plan.

    Given the backups in "nightly-custom"
    When the newest backup is restored into a scratch database
    Then the backup matches its checksum file
    And the restore completes within 30 minutes
    And the query "SELECT count(*) FROM audit_events" returns at least 1

  @id:BKP-04 @monthly @impact:medium @ref:ISO27001-A.8.13
  Scenario: SentraScan restore and integrity check — scan ids are unique after restore
    SentraScan's restore procedure ends with an integrity check: `COUNT(*)` and
    `COUNT(DISTINCT scan_id)` of `scans` must agree, or the restore duplicated
    (or the backup captured) half-written scans.

    Given the backups in "nightly-plain"
    And the subject database "production"
    When the newest backup is restored into a scratch database
    Then the newest backup is at most 26h old
    And "scans" has no duplicate "scan_id"
    And these tables match the subject for rows older than the backup:
      | table |
      | scans |
