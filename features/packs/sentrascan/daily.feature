@pack:sentrascan
Feature: SentraScan daily operations — the morning checklist and status check
  The SentraScan runbook's morning checklist and `check-status.sh` curl the API
  health endpoint, count recent scans and run `SELECT 1` and a size query in
  the database. Each line becomes a verdict with its measured value.

  @id:SSC-01 @daily @http @impact:high
  Scenario: The API health endpoint answers {"status": "ok"}
    `check-status.sh` and `health-check.sh` both fail unless
    `curl $API_URL/api/v1/health | jq -r .status` prints `ok`.

    Given the HTTP service "sentrascan-api"
    Then "/api/v1/health" answers HTTP 200 within 2 seconds
    And the JSON of "/api/v1/health" has "status" equal to "ok"

  @id:SSC-02 @daily @postgres @impact:high
  Scenario: The database answers and its size is within the capacity plan
    `check_database` greps for "1 row" after `SELECT 1`; the morning checklist
    prints `pg_database_size('sentrascan')`. The runbook gives no size limit;
    this pack's example plans for 20 GB (the disk-full procedure deletes scans
    older than 30 days when it is reached).

    Given the subject database "sentrascan"
    Then the database answers "SELECT 1" within 2 seconds
    And the database is smaller than 20 GB

  @id:SSC-03 @daily @postgres @impact:medium
  Scenario: Scans, findings, baselines and API keys are all present
    The "Check table counts" query of Database Health: an empty table after a
    restore or a cleanup gone wrong shows up here first.

    Given the subject database "sentrascan"
    Then the subject's tables hold at least these rows:
      | table     | rows |
      | scans     | 1    |
      | findings  | 1    |
      | baselines | 1    |
      | api_keys  | 1    |

  @id:SSC-04 @daily @postgres @impact:high
  Scenario: Every scan_id is unique
    The data-corruption procedure compares `COUNT(*)` with
    `COUNT(DISTINCT scan_id)` of `scans`; checked daily on the live database
    rather than only after a restore.

    Given the subject database "sentrascan"
    Then the subject's "scans" has no duplicate "scan_id"
