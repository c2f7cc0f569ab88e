@postgres
Feature: Point-in-time recovery from base backups and the WAL archive
  Past a few hundred gigabytes PostgreSQL is backed up physically: base backups
  plus a continuous WAL archive, and the runbook promises recovery to any moment,
  not only to last night. A WAL archive with a hole in it still looks healthy
  until the day it is replayed: these scenarios restore a base backup into a
  throwaway server drillbook starts with its own settings (never the backup's),
  replay the archive, and prove the result against the live system.

  @id:BKP-05 @monthly @impact:high @ref:ISO27001-A.8.13 @control:CP-9
  Scenario: The newest base backup recovers to the end of its WAL archive
    Every segment from the base backup's start to the newest archived one must
    replay: a missing segment fails here, naming it, instead of a recovery that
    silently stops early and looks complete.

    Given the backups in "base-backups"
    And the subject database "production"
    When the newest backup is restored into a scratch database
    Then the newest backup is at most 26h old
    And the restore completes within 30 minutes
    And the restored tables hold at least these rows:
      | table       | rows   |
      | accounts    | 1      |
      | orders      | 1000   |
    And every row older than the backup matches the subject
