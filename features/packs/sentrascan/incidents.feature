@pack:sentrascan
Feature: SentraScan incident signals — stuck scans, connections, long queries
  The Service Degradation and Database Issues responses look for scans stuck
  in `running` and for connections and queries piling up. Run continuously,
  they find the incident before the users do.

  @id:SSC-10 @continuous @postgres @impact:high
  Scenario: No scan has been stuck in "running" for over an hour
    Step 4 of Service Degradation lists scans with `scan_status == "running"`.
    The runbook gives no limit; the scanners' own timeouts are minutes, so this
    pack calls a scan not updated for an hour stuck.

    Given the subject database "sentrascan"
    Then no row of "scans" has "scan_status" = "running" with "updated_at" older than 1 hour

  @id:SSC-11 @continuous @postgres @impact:medium
  Scenario: Connections and long-running queries are within limits
    Steps 3 to 5 of Database Issues: count connections, look for locks, kill
    long-running queries. This pack fails above 80 % of max_connections or on
    a query running longer than 5 minutes.

    Given the subject database "sentrascan"
    Then connections use at most 80 % of max_connections
    And no query has been running for longer than 5 minutes
