@pack:sark
Feature: SARK weekly tasks — backups are restorable
  Every Monday the runbook asks for a test restore from last week's backup
  (`./scripts/dr-test-weekly.sh`). Here the newest custom-format dump is
  restored into a throwaway database; the live database is never written.

  @id:SARK-10 @weekly @postgres @s3 @impact:high
  Scenario: The newest backup is intact and restores within the RTO
    The checksum file proves the object is the one the backup job wrote; the
    restore must fit the 30-minute RTO of SARK's disaster-recovery plan.

    Given the backups in "nightly-custom"
    When the newest backup is restored into a scratch database
    Then the backup matches its checksum file
    And the restore completes within 30 minutes
    And the query "SELECT count(*) FROM audit_events" returns at least 1
