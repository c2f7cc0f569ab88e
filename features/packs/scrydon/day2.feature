@pack:scrydon
Feature: Scrydon day-2 expectations
  Scrydon's day-2 cadence table: license heartbeat health check daily
  (automated), audit-log review of focus events weekly, backup verification by
  a restore-from-yesterday drill monthly, a disaster-recovery exercise
  quarterly, and a continuous vulnerability scan. "Check the audit log first —
  most failures show up there with a structured *_FAILED event."

  @id:SCR-01 @daily @postgres @impact:high
  Scenario: The license heartbeat is fresh
    The license reports a heartbeat every hour; a day without one means the
    license service cannot reach its server and the platform will go read-only
    at the end of the grace period. Fails when the newest is over 25 hours old.

    Given the subject database "scrydon"
    Then the newest "heartbeat_at" in "license_heartbeats" is at most 25 hours old

  @id:SCR-02 @weekly @postgres @impact:high
  Scenario: The week's audit log has few focus (*_FAILED) events
    The weekly review reads the focus events. The document names no count;
    this pack's example allows 30 `*_FAILED` events a week (the sandbox's
    baseline is about five) and requires the log to be written at all, since an
    empty audit log passes any "at most".

    Given the subject database "scrydon"
    And the audit log in table "audit_log" with kinds in "event_type" and times in "created_at"
    Then at least 100 "*" events were logged in the last 7 days
    And at most 30 "*_FAILED" events were logged in the last 7 days

  @id:SCR-03 @monthly @postgres @s3 @impact:high
  Scenario: Backup verification — yesterday's backup restores and matches production
    The restore-from-yesterday drill: the newest nightly backup restores into
    a throwaway database within the RTO, and every row that existed at backup
    time came back unchanged.

    Given the backups in "nightly-custom"
    And the subject database "production"
    When the newest backup is restored into a scratch database
    Then the newest backup is at most 26h old
    And the restore completes within 30 minutes
    And every row older than the backup matches the subject

  @id:SCR-04 @quarterly @postgres @s3 @impact:high
  Scenario: Disaster recovery — the whole-cluster dump restores within the RTO
    The database half of the quarterly DR exercise: the cluster-wide
    `pg_dumpall` is what a rebuilt site starts from. (Failing over compute and
    the StarRocks warehouse is not automatable here; see COVERAGE.md.)

    Given the backups in "nightly-dumpall" of database "product"
    When the newest backup is restored into a scratch database
    Then the restore completes within 30 minutes
    And the query "SELECT count(*) FROM audit_events" returns more than 0
