@pack:aureus-sentinel
Feature: Aureus Sentinel daily operations — morning and evening checklists
  The runbook's checklists open Grafana and "verify metrics are normal: all
  services UP, error rate < 1 %", and check that last night's backup completed.
  These scenarios ask Prometheus and the bucket directly.

  @id:AUR-01 @daily @http @impact:high
  Scenario: The API health endpoint answers
    `curl https://api.aureus-sentinel.com/health` validates every deployment,
    rollback and maintenance window; TLS is verified.

    Given the HTTP service "aureus-api"
    Then "/health" answers HTTP 200 within 2 seconds

  @id:AUR-02 @daily @prometheus @impact:high
  Scenario: Every service is UP in Prometheus
    Morning: "All services UP"; evening: "Prometheus scraping". One target
    down (bridge, aureus-os, openclaw) fails the check.

    Given the Prometheus "aureus-prometheus"
    Then the Prometheus query "min(up{job=~"aureus-.*"})" is exactly 1

  @id:AUR-03 @daily @prometheus @impact:high
  Scenario: The error rate is under one percent
    The morning checklist's documented threshold: "Error rate < 1%".

    Given the Prometheus "aureus-prometheus"
    Then the Prometheus query "sum(rate(http_requests_total{job=~"aureus-.*",status=~"5.."}[1h])) / sum(rate(http_requests_total{job=~"aureus-.*"}[1h]))" is less than 0.01

  @id:AUR-04 @daily @s3 @impact:high
  Scenario: Last night's 02:00 backup completed
    The backup CronJob runs `pg_dumpall | gzip` at "0 2 * * *" and uploads
    `backup-YYYYMMDD.sql.gz`. The key holds only the date, so the schedule is
    checked on the objects' write times.

    Given the backups in "nightly-dumpall"
    Then the newest backup is at most 26h old
    And the backups follow the schedule "0 2 * * *" over the last 7 days, within 30 minutes

  @id:AUR-05 @continuous @postgres @impact:medium
  Scenario: The database answers and has connections to spare
    The High Latency and Database Connection Errors entries of Troubleshooting
    count `pg_stat_activity`; this pack fails above 80 % of max_connections.

    Given the subject database "aureus"
    Then the database answers "SELECT 1" within 2 seconds
    And connections use at most 80 % of max_connections
