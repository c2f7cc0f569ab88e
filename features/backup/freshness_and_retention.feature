@s3
Feature: Backup freshness and retention
  A nightly backup job fails quietly: the cron runs, the upload does not, and
  nobody notices until the day a restore is needed. These scenarios read the
  backup stores only (no restore) and are cheap enough to run every day.

  @id:BKP-10 @daily @impact:high @ref:ISO27001-A.8.13
  Scenario Outline: Last night's backup exists in <store>
    The newest backup must be at most 26 hours old: a nightly job at 02:00 plus a
    two-hour grace for a slow upload. Older means a night was missed.

    Given the backups in "<store>"
    Then the newest backup is at most 26h old

    Examples:
      | store           |
      | nightly-dumpall |
      | nightly-custom  |
      | nightly-plain   |

  @id:BKP-11 @weekly @impact:medium @ref:ISO27001-A.8.13
  Scenario: SentraScan backups keep thirty days, one per day
    SentraScan's backup script gzips a nightly dump and deletes files older than
    30 days (`find -mtime +30 -delete`). A gap means a failed night; an older file
    means the clean-up stopped and the disk will fill.

    Given the backups in "nightly-plain"
    Then there is one backup per day for the last 30 days
    And no backup is older than 31 days

  @id:BKP-12 @weekly @impact:medium @ref:ISO27001-A.8.13
  Scenario: Aureus Sentinel keeps a nightly pg_dumpall for every day of the last month
    Given the backups in "nightly-dumpall"
    Then there is one backup per day for the last 30 days
