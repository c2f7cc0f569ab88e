@pack:sentrascan
Feature: SentraScan backups — nightly, kept 30 days, restorable with unique scan ids
  `backup-db.sh` / `auto-backup.sh` gzip a nightly `pg_dump` into /backups and
  delete files older than 30 days (`find -mtime +30 -delete`). The restore
  procedure ends with `SELECT COUNT(*) FROM scans` and the data-corruption
  procedure with the `COUNT(DISTINCT scan_id)` integrity check.

  @id:SSC-20 @daily @s3 @impact:high
  Scenario: Last night's backup exists and thirty days are kept
    A gap is a failed night; a file older than 31 days means the clean-up
    stopped and the disk will fill.

    Given the backups in "nightly-plain"
    Then the newest backup is at most 26h old
    And there is one backup per day for the last 30 days
    And no backup is older than 31 days

  @id:SSC-21 @monthly @postgres @s3 @impact:high
  Scenario: The newest backup restores, has scans, and its scan ids are unique
    The runbook documents the restore but no test cadence; this pack restores
    monthly into a throwaway database (never the live one).

    Given the backups in "nightly-plain"
    When the newest backup is restored into a scratch database
    Then the restore completes within 30 minutes
    And the query "SELECT COUNT(*) FROM scans" returns more than 0
    And "scans" has no duplicate "scan_id"
