@postgres
Feature: Schema migrations replay cleanly and match production
  Every upgrade applies schema migrations, and the runbooks only find out on
  the upgrade night whether they still apply, whether a rollback really rolls
  back, and whether production still looks like the migrations say it should.
  These scenarios rehearse that in a throwaway database; nothing is written to
  the live system.

  @id:MIG-01 @monthly @impact:high @ref:ISO27001-A.8.32 @control:CM-3
  Scenario: The product's migrations replay from empty and production has not drifted
    A replay from an empty database proves a new environment (or a disaster
    rebuild) can be created from the migrations alone; comparing the result
    with production's live catalog catches hand-made changes ("hotfix" indexes,
    dropped constraints) that the next migration would trip over.

    Given the migrations in "drills/sandbox/migrations"
    And the subject database "production"
    And the migration session setting "drillbook.anchor" is the environment's "anchor"
    When the migrations are replayed into a scratch database
    Then every migration step applies within 30 seconds
    And the replay completes within 2 minutes
    And the replayed schema matches the subject database, ignoring table "drillbook_schema_version"

  @id:MIG-02 @monthly @pre-upgrade @impact:high @ref:ISO27001-A.8.32 @control:CP-10
  Scenario: The next release's migrations roll back to exactly the schema they started from
    The upgrade runbook promises a rollback within 30 minutes. That promise
    holds only if every down migration restores the schema the up migration
    found: up to head, down to zero and up again must give the same catalog
    at every version.

    Given the migrations in "features/migrations/sandbox-next"
    And the migration session setting "drillbook.anchor" is the environment's "anchor"
    When the migrations are replayed up, down and up again
    Then the round trip leaves an identical schema at every version
