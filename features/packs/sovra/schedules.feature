@pack:sovra @postgres
Feature: Sovra scheduled tasks ran on time
  The guide's crontab: certificate rotation at 02:00, backup at 03:00, audit
  export at 04:00, health check every 5 minutes. A cron job that silently
  stopped is found by its missing audit events, fire time by fire time (UTC).

  @id:SOV-40 @daily @impact:high
  Scenario: Certificate rotation ran every night at 02:00
    Given the subject database "sovra"
    And the audit log in table "audit_events" with kinds in "event_type" and times in "created_at"
    Then the audit log has a "cert.rotate" event at every time of the schedule "0 2 * * *" in the last 7 days, within 30 minutes

  @id:SOV-41 @daily @impact:high
  Scenario: The backup job ran every night at 03:00
    Given the subject database "sovra"
    And the audit log in table "audit_events" with kinds in "event_type" and times in "created_at"
    Then the audit log has a "backup.completed" event at every time of the schedule "0 3 * * *" in the last 7 days, within 30 minutes

  @id:SOV-42 @daily @impact:medium
  Scenario: The audit export ran every night at 04:00
    Given the subject database "sovra"
    And the audit log in table "audit_events" with kinds in "event_type" and times in "created_at"
    Then the audit log has a "audit.export" event at every time of the schedule "0 4 * * *" in the last 7 days, within 30 minutes

  @id:SOV-43 @continuous @impact:medium
  Scenario: The health check ran every 5 minutes of the last 2 hours
    Given the subject database "sovra"
    And the audit log in table "audit_events" with kinds in "event_type" and times in "created_at"
    Then the audit log has a "health.check" event at every time of the schedule "*/5 * * * *" in the last 2 hours, within 2 minutes
