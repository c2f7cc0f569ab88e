Feature: The upgrade runbooks' order of operations holds
  An in-place upgrade is a sequence the runbooks state in prose: back up,
  verify the backup, enter maintenance, migrate, upgrade, check health, leave
  maintenance. On the night, a step done early (migrating before the backup is
  verified) or a destructive step without a way back turns a routine upgrade
  into an incident. These scenarios hold each runbook's plan to its own rules:
  every "must come before" rule, a rollback for every destructive step, and the
  downtime inside the window the runbook declares.

  @id:UPG-01 @quarterly @pre-upgrade @impact:high @ref:ISO27001-A.8.32 @control:CM-3
  Scenario: Scrydon in-place upgrade follows the upgrade runbook's order
    Scrydon's upgrade runbook gives the order of operations for an in-place
    upgrade, and its planned-downtime section says a major upgrade that
    touches the OLAP warehouse (StarRocks) needs a brief read-only window
    while indexes rebuild. Supply-chain verification (signed Helm charts,
    images, SBOM) comes before anything is installed. Minor upgrades are
    quarterly, major ones annual: this plan is checked every quarter.

    Given the upgrade plan "Scrydon in-place upgrade":
      | step                          | component | destructive | rollback                                    | downtime | estimate |
      | verify signed charts and SBOM | release   | no          | -                                           | no       | 10m      |
      | back up PostgreSQL            | postgres  | no          | -                                           | no       | 20m      |
      | verify the backup             | postgres  | no          | -                                           | no       | 30m      |
      | enter read-only mode          | scrydon   | no          | leave read-only mode                        | yes      | 1m       |
      | migrate the database          | postgres  | yes         | restore the verified backup                 | yes      | 10m      |
      | upgrade the OLAP warehouse    | starrocks | yes         | reinstall the previous StarRocks and reindex | yes      | 20m      |
      | upgrade the application       | scrydon   | yes         | helm rollback to the previous release       | yes      | 5m       |
      | health check                  | scrydon   | no          | -                                           | yes      | 2m       |
      | leave read-only mode          | scrydon   | no          | -                                           | yes      | 1m       |
    And the product's components are "release, postgres, starrocks, scrydon"
    And the ordering rules:
      | before                        | after                      | because                                                      |
      | verify signed charts and SBOM | upgrade the application    | only verified artifacts are installed                        |
      | back up PostgreSQL            | verify the backup          | a backup is verified after it is taken                       |
      | verify the backup             | enter read-only mode       | a backup must be completed and verified before maintenance   |
      | enter read-only mode          | migrate the database       | no writes while the schema changes                           |
      | migrate the database          | upgrade the OLAP warehouse | the warehouse loads from the migrated schema                 |
      | upgrade the OLAP warehouse    | upgrade the application    | the application queries the upgraded warehouse               |
      | upgrade the application       | health check               | check what will serve traffic                                |
      | health check                  | leave read-only mode       | leave maintenance only once healthy                          |
    And the planned downtime window is 1 hour
    Then the upgrade plan is well formed
    And the upgrade steps respect every ordering rule
    And every destructive upgrade step has a rollback step
    And the planned downtime fits in the window

  @id:UPG-02 @quarterly @pre-upgrade @impact:high @ref:ISO27001-A.8.32 @control:CM-3
  Scenario: Aureus Sentinel deployment follows its deployment and rollback procedure
    Aureus Sentinel's standard deployment backs up the current state, deploys
    to staging first and validates it (smoke tests, fifteen minutes of
    metrics), then deploys to production, watches the rollouts and validates.
    Its rollback procedure (`kubectl rollout undo` of bridge, aureus-os and
    openclaw) applies within 30 minutes of a deployment; its maintenance
    pre-checklist demands a backup completed and verified before maintenance.

    Given the upgrade plan "Aureus Sentinel deployment":
      | step                                 | component  | destructive | rollback                                  | downtime | estimate |
      | back up the deployment manifests     | kubernetes | no          | -                                         | no       | 1m       |
      | back up PostgreSQL (pg_dumpall)      | postgres   | no          | -                                         | no       | 15m      |
      | verify the backup                    | postgres   | no          | -                                         | no       | 20m      |
      | deploy to staging                    | staging    | yes         | kubectl rollout undo in aureus-staging    | no       | 5m       |
      | validate staging                     | staging    | no          | -                                         | no       | 15m      |
      | enable maintenance mode              | openclaw   | no          | disable maintenance mode                  | yes      | 1m       |
      | deploy to production                 | production | yes         | kubectl rollout undo bridge, aureus-os, openclaw | yes | 5m     |
      | watch the rollouts                   | production | no          | -                                         | yes      | 5m       |
      | validate production                  | production | no          | -                                         | yes      | 2m       |
      | disable maintenance mode             | openclaw   | no          | -                                         | yes      | 1m       |
      | monitor error rates for 30 minutes   | production | no          | -                                         | no       | 30m      |
    And the product's components are "kubernetes, postgres, staging, openclaw, production"
    And the ordering rules:
      | before                           | after                              | because                                                    |
      | back up the deployment manifests | deploy to production               | step 1 of the standard deployment: back up current state   |
      | back up PostgreSQL (pg_dumpall)  | verify the backup                  | a backup is verified after it is taken                     |
      | verify the backup                | enable maintenance mode            | pre-maintenance checklist: backup completed and verified   |
      | deploy to staging                | validate staging                   | validate what was deployed                                 |
      | validate staging                 | deploy to production               | deploy to staging first                                    |
      | deploy to production             | watch the rollouts                 | monitor the deployment                                     |
      | watch the rollouts               | validate production                | validate once the rollouts finished                        |
      | validate production              | disable maintenance mode           | verify services after changes                              |
      | disable maintenance mode         | monitor error rates for 30 minutes | monitor for the rollback window after maintenance          |
    And the planned downtime window is 30 minutes
    Then the upgrade plan is well formed
    And the upgrade steps respect every ordering rule
    And every destructive upgrade step has a rollback step
    And the planned downtime fits in the window
