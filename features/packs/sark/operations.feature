@pack:sark
Feature: SARK SIEM, session, database and Redis thresholds
  The runbook's SIEM, Session, Database and Redis sections document the
  thresholds an engineer compares by hand (`LLEN siem:event_queue`, the hit
  ratio arithmetic, `pg_stat_activity`). They carry no cadence of their own:
  they are what the alerts watch, so this pack runs them continuously.

  @id:SARK-20 @continuous @redis @impact:high
  Scenario: The SIEM event queue is below the documented bands
    Healthy below 1,000 events, warning from 1,000 to 10,000, critical above
    10,000: events are waiting instead of reaching Splunk or Datadog.

    Given the Redis "sark-redis"
    Then the list "siem:event_queue" holds fewer than 1000 items (warning up to 10000)

  @id:SARK-21 @continuous @redis @impact:medium
  Scenario: No SIEM event failed to forward
    `LLEN siem:failed_events` is what "View SIEM Errors" reads: each entry is an
    audit event the SIEM never received.

    Given the Redis "sark-redis"
    Then the list "siem:failed_events" is empty

  @id:SARK-22 @continuous @redis @impact:high
  Scenario: The SIEM circuit breaker is closed
    An open breaker (`siem:circuit_breaker:state`) means forwarding has stopped
    after too many failures; the runbook resets it by hand.

    Given the Redis "sark-redis"
    Then no key matching "siem:circuit_breaker:*" holds "open"

  @id:SARK-23 @continuous @redis @impact:medium
  Scenario: The session store and rate-limit windows are live
    Users are logged in (`session:user:*`) and the hourly rate-limit windows
    (`ratelimit:user:*`) are being written: an empty store after a Redis
    restart means every user was logged out.

    Given the Redis "sark-redis"
    Then the keys matching "session:user:*" number at least 1
    And the keys matching "ratelimit:user:*" number at least 1

  @id:SARK-24 @continuous @redis @impact:medium
  Scenario: The cache hit ratio is at least 95 percent
    The runbook computes hits / (hits + misses) from `INFO stats` and shows
    95.2 % as its example; a falling ratio is the first thing HighLatency's
    action checks.

    Given the Redis "sark-redis"
    Then the Redis keyspace hit ratio is at least 95 %

  @id:SARK-25 @continuous @postgres @impact:high
  Scenario: Replication lag, connections and long-running queries are within limits
    "Check replication lag" (this pack: at most 1 minute; not applicable
    without replicas), DatabaseConnectionHigh (this pack: 80 % of
    max_connections), and "kill all long-running queries (> 5 minutes)".

    Given the subject database "sark"
    Then replication lag is at most 1 minute
    And connections use at most 80 % of max_connections
    And no query has been running for longer than 5 minutes

  @id:SARK-26 @continuous @postgres @impact:low
  Scenario: Users, servers and policies are registered
    The user, server and policy management sections list these tables; an
    empty registry after a restore or migration means SARK authorises nobody.

    Given the subject database "sark"
    Then the subject's tables hold at least these rows:
      | table    | rows |
      | users    | 1    |
      | servers  | 1    |
      | policies | 1    |
