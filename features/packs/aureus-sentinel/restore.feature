@pack:aureus-sentinel
Feature: Aureus Sentinel restore testing — quarterly
  "Restore Testing Schedule: Quarterly (every 3 months)". The documented
  restore downloads `backup-YYYYMMDD.sql.gz`, restores it with psql and checks
  `SELECT count(*) FROM signatures` before scaling the services back up. Here
  the restore goes into a throwaway database; production is never scaled down.

  @id:AUR-10 @quarterly @postgres @s3 @impact:high
  Scenario: The newest pg_dumpall restores and holds signatures
    Given the backups in "nightly-dumpall" of database "product"
    When the newest backup is restored into a scratch database
    Then the newest backup is at most 26h old
    And the restore completes within 30 minutes
    And the query "SELECT count(*) FROM signatures" returns more than 0
