@postgres
Feature: pgBackRest stanzas restore, and the backups cannot be deleted
  A pgBackRest repository on S3 holds full and incremental sets and their WAL
  archive; pgBackRest's own `info` says they are there, but only a restore shows
  that they come back. These scenarios restore the newest set with pgBackRest
  itself into a throwaway server drillbook starts with its own settings, replay
  the archive, and prove the result against the live system. Backups anyone with
  the production credentials can delete do not survive ransomware: the copy kept
  for that must be locked.

  @id:BKP-06 @monthly @impact:high @ref:ISO27001-A.8.13 @control:CP-9
  Scenario: The newest pgBackRest set restores and matches production
    pgBackRest's own restore reads every file of the set from the repository: a
    damaged one fails here. A full set older than a week means the weekly full
    job stopped and every restore depends on a longer chain of incrementals.

    Given the backups in "pgbackrest"
    And the subject database "production"
    When the newest backup is restored into a scratch database
    Then the newest full backup is at most 8 days old
    And the newest backup is at most 26h old
    And the restore completes within 30 minutes
    And the restored tables hold at least these rows:
      | table       | rows   |
      | accounts    | 1      |
      | orders      | 1000   |
    And every row older than the backup matches the subject

  @id:BKP-20 @quarterly @impact:high @ref:ISO27001-A.8.13 @control:CP-9
  Scenario: The locked copy of the nightly dumps cannot be deleted or changed for 30 days
    The bucket must have Object Lock with a default retention of at least 30
    days in COMPLIANCE mode (a GOVERNANCE lock can be lifted by a privileged
    user), versioning on, and the newest dump must itself be locked that long.

    Then the backups in "vault" cannot be deleted or changed for 30 days
