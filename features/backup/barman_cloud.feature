@postgres
Feature: Recovery from a Barman cloud backup
  Barman's cloud client ships base backups and every WAL segment to object
  storage. The bucket filling up every night proves nothing about whether the
  newest backup and the archive after it still replay: this scenario fetches
  them from the bucket, restores them into a throwaway server drillbook starts
  with its own settings, replays the archive, and proves the result against the
  live system.

  @id:BKP-07 @monthly @impact:high @ref:ISO27001-A.8.13 @control:CP-9
  Scenario: The newest Barman cloud backup recovers to the end of its WAL archive
    The archive must have no hole between the oldest backup's start and the
    newest segment, and the newest backup must replay all of it.

    Given the backups in "barman-cloud"
    And the subject database "production"
    When the newest backup is restored into a scratch database
    Then the newest backup is at most 26h old
    And the WAL archive of "barman-cloud" has no gap since the oldest backup
    And the restore completes within 30 minutes
    And the restored tables hold at least these rows:
      | table       | rows   |
      | accounts    | 1      |
      | orders      | 1000   |
    And every row older than the backup matches the subject
