"""The health steps end to end: `drillbook run` with a live drillbook.toml naming real loopback servers.

One run of one feature covers every sentence of steps/health.py, the passing
cases and each of issue 5's bad inputs (unreachable endpoint, non-JSON body,
missing JSON path, Redis authentication failure, Prometheus query error and
empty result, expired certificate, unknown target): each scenario ends with
the outcome it should, the others keep running, and no secret reaches any
output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from checks import redis_health
from drills.processes import PostgresServer, RedisServer, free_port
from tests.support.cli import drillbook
from tests.support.health_servers import API_TOKEN, Pki, Served

pytestmark = pytest.mark.integration

REDIS_PASSWORD = "rp-" + "Xk29-never-shown"
TOKEN_NAME = "SARK_TOKEN"


@pytest.fixture(scope="module")
def locked_redis(workdir: Path) -> Iterator[RedisServer]:
    """A redis-server that requires a password the config does not have."""
    server = RedisServer(workdir / "redis-locked")
    server.start()
    try:
        redis_health.open_client(server.url).config_set("requirepass", REDIS_PASSWORD)
        yield server
    finally:
        server.stop()


def _seed_redis(url: str) -> None:
    client = redis_health.open_client(url)
    try:
        client.flushdb()
        client.config_set("maxmemory", 256 * 1024 * 1024)
        for i in range(3):
            client.set(f"session:user:{i}", "s")
        client.rpush("siem:event_queue", *[b"e"] * 1500)
        client.set("circuit:siem", "closed")
        client.config_resetstat()
        for _ in range(100):
            client.get("session:user:0")
        client.get("session:user:missing")
    finally:
        client.close()


def _backups(directory: Path, now: datetime) -> None:
    """A backup at 03:05 UTC on each of the last 8 days (the 03:00 job taking five minutes)."""
    directory.mkdir()
    for days in range(8, -1, -1):
        taken = (now - timedelta(days=days)).replace(hour=3, minute=5, second=0, microsecond=0)
        if taken <= now:
            (directory / f"backup-{taken:%Y%m%d-%H%M}.dump").write_bytes(b"PGDMP")


def _toml(value: str) -> str:
    return json.dumps(value)


@pytest.fixture(scope="module")
def health_run(
    tmp_path_factory: pytest.TempPathFactory,
    primary: PostgresServer,
    redis_server: RedisServer,
    locked_redis: RedisServer,
    https_api: Served,
    expired_endpoint: Served,
    self_signed_endpoint: Served,
    pki: Pki,
    prometheus: Any,
) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("health-run")
    now = datetime.now(UTC)
    _seed_redis(redis_server.url)
    _backups(base / "nightly", now)
    (base / "edge.pem").write_bytes(pki.valid_chain)
    audit_file = base / "audit.jsonl"
    audit_file.write_text(
        json.dumps({"kind": "LOGIN_FAILED", "time": (now - timedelta(days=2)).isoformat()})
        + "\n"
        + json.dumps({"kind": "EXPORT_DONE", "time": (now - timedelta(hours=1)).isoformat()})
        + "\n"
    )
    locked_url = f"redis://:wrong-{REDIS_PASSWORD}@127.0.0.1:{locked_redis.port}/0"
    config = base / "drillbook.toml"
    config.write_text(
        f'[targets.subject]\nkind = "postgres"\ndsn = {_toml(primary.dsn())}\n'
        f'[targets.cache]\nkind = "redis"\nurl = {_toml(redis_server.url)}\n'
        '[targets.locked-cache]\nkind = "redis"\nurl = "${LOCKED_REDIS_URL}"\n'
        f'[targets.sark-api]\nkind = "http"\nurl = {_toml(https_api.url)}\n'
        f"ca_file = {_toml(str(pki.ca_file))}\n"
        f'headers = {{ Authorization = "${{{TOKEN_NAME}}}" }}\n'
        f'[targets.down-api]\nkind = "http"\nurl = "https://127.0.0.1:{free_port()}"\n'
        f'[targets.edge]\nkind = "tls"\nhost = "127.0.0.1"\nport = {https_api.port}\n'
        'server_name = "localhost"\n'
        f"ca_file = {_toml(str(pki.ca_file))}\n"
        f'[targets.expired-edge]\nkind = "tls"\nhost = "127.0.0.1"\nport = {expired_endpoint.port}\n'
        f"ca_file = {_toml(str(pki.ca_file))}\n"
        f'[targets.self-signed-edge]\nkind = "tls"\nhost = "127.0.0.1"\nport = {self_signed_endpoint.port}\n'
        'server_name = "localhost"\n'
        f"ca_file = {_toml(str(pki.ca_file))}\n"
        '[targets.edge-pem]\nkind = "tls"\npem_file = "edge.pem"\nserver_name = "health.drillbook.test"\n'
        f"ca_file = {_toml(str(pki.ca_file))}\n"
        f'[targets.metrics]\nkind = "prometheus"\nurl = {_toml(prometheus.url)}\n'
        '[targets.nightly]\nkind = "directory"\npath = "nightly"\nkey_pattern = "backup-%Y%m%d-%H%M.dump"\n'
    )
    features = base / "features"
    features.mkdir()
    feature = FEATURE.replace("AUDIT_FILE", str(audit_file))
    for placeholder, sentence in LONG_STEPS.items():
        feature = feature.replace(placeholder, sentence)
    (features / "health.feature").write_text(feature)
    out = base / "out"
    proc = drillbook(
        "run",
        "--config",
        str(config),
        "--features",
        str(features),
        "--out",
        str(out),
        env={TOKEN_NAME: API_TOKEN, "LOCKED_REDIS_URL": locked_url},
        timeout=300,
    )
    run_dir = next(p for p in out.iterdir() if p.is_dir() and not p.is_symlink())
    results = json.loads((run_dir / "results.json").read_text())
    texts = [proc.stdout, proc.stderr] + [
        p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file()
    ]
    return {
        "proc": proc,
        "results": results,
        "texts": texts,
        "scenarios": {s["id"]: s for s in results["scenarios"]},
    }


FEATURE = """\
Feature: Health and thresholds

  @id:H-01 @daily @http
  Scenario: SARK's detailed health is healthy
    Given the HTTP service "sark-api"
    Then "/health/detailed" answers HTTP 200 within 2s
    And the JSON of "/health/detailed" has "status" equal to "healthy"
    And every entry of "components" in the JSON of "/health/detailed" has "status" equal to "healthy"
    And "/private" answers HTTP 200 within 2s

  @id:H-02 @daily @http
  Scenario: a degraded component fails
    Given the HTTP service "sark-api"
    Then every entry of "components" in the JSON of "/health/degraded" has "status" equal to "healthy"

  @id:H-03 @daily @http
  Scenario: a maintenance page is not JSON
    Given the HTTP service "sark-api"
    Then the JSON of "/maintenance" has "status" equal to "ok"

  @id:H-04 @daily @http
  Scenario: a missing JSON path
    Given the HTTP service "sark-api"
    Then the JSON of "/health" has "components.database.status" equal to "healthy"

  @id:H-05 @daily @http
  Scenario: an unreachable endpoint
    Given the HTTP service "down-api"
    Then "/health" answers HTTP 200 within 2s

  @id:H-06 @daily @http
  Scenario: a target the config does not name
    Given the HTTP service "no-such-service"
    Then "/health" answers HTTP 200 within 2s

  @id:P-01 @daily @postgres
  Scenario: the subject database is healthy
    Given the subject database "subject"
    Then the database answers "SELECT 1" within 5s
    And connections use at most 90 % of max_connections
    And no query has been running for longer than 1h
    And the database is smaller than 50 GB
    And the subject's tables hold at least these rows:
      | table    | rows |
      | scans    | 3    |
      | api_keys | 2    |
    And the subject's "scans" has no duplicate "id"
    And no row of "scans" has "status" = "running" with "started_at" older than 4 hours
    And the newest "beat_at" in "license_heartbeat" is at most 26h old

  @id:P-02 @daily @postgres
  Scenario: replication without replicas
    Given the subject database "subject"
    Then replication lag is at most 30s

  @id:P-03 @daily @postgres
  Scenario: duplicate API keys and a stuck scan
    Given the subject database "subject"
    Then the subject's "api_keys" has no duplicate "key_hash"

  @id:P-04 @daily @postgres
  Scenario: a scan running for three hours
    Given the subject database "subject"
    Then no row of "scans" has "status" = "running" with "started_at" older than 2 hours

  @id:P-05 @daily @postgres
  Scenario: growth on a first run
    Given the subject database "subject"
    Then the database grew by at most 1 GB per day since the last run

  @id:R-01 @daily @redis
  Scenario: the cache is healthy
    Given the Redis "cache"
    Then Redis answers PING
    And the Redis keyspace hit ratio is at least 95 %
    And Redis memory use is at most 90 % of maxmemory
    And the keys matching "session:user:*" number exactly 3
    And the list "siem:failed_events" is empty
    And no key matching "circuit:*" holds "open"

  @id:R-02 @daily @redis
  Scenario: the SIEM queue is in its warning band
    Given the Redis "cache"
    Then the list "siem:event_queue" holds fewer than 1000 items (warning up to 10000)

  @id:R-03 @daily @redis
  Scenario: a refused password
    Given the Redis "locked-cache"
    Then Redis answers PING

  @id:T-01 @daily @tls
  Scenario: the endpoint's certificate
    Given the TLS endpoint "edge"
    Then the certificate is valid for at least 30 more days
    And the certificate chain verifies for the host name

  @id:T-02 @daily @tls
  Scenario: an expired certificate
    Given the TLS endpoint "expired-edge"
    Then the certificate is valid for at least 30 more days

  @id:T-04 @daily @tls
  Scenario: a self-signed certificate
    Given the TLS endpoint "self-signed-edge"
    Then the certificate chain verifies for the host name

  @id:T-03 @daily @tls
  Scenario: a certificate file
    Given the TLS endpoint "edge-pem"
    Then the certificate chain verifies for the host name
    And the certificate is valid for at least 30 more days

  @id:M-01 @daily @prometheus
  Scenario: SLOs hold
    Given the Prometheus "metrics"
    Then the Prometheus query "sark_availability_ratio" is at least 0.999
    And the Prometheus query "max(edge_heartbeat_age_seconds{node="edge-1"})" is less than 60

  @id:M-02 @daily @prometheus
  Scenario: a metric nobody scrapes
    Given the Prometheus "metrics"
    Then the Prometheus query "no_such_metric" is at least 1

  @id:M-03 @daily @prometheus
  Scenario: a query Prometheus rejects
    Given the Prometheus "metrics"
    Then the Prometheus query "sum(rate(sark_requests_total[5m]" is at most 1

  @id:A-01 @weekly @postgres
  Scenario: the audit table
    Given the subject database "subject"
    And the audit log in table "audit_events" with kinds in "event_type" and times in "created_at"
    Then at most 5 "*_FAILED" events were logged in the last 7 days
    And at least 7 "AUDIT_EXPORT" events were logged in the last 7 days
    And EXPORT_SCHEDULE

  @id:A-02 @weekly @postgres
  Scenario: a missed certificate rotation
    Given the subject database "subject"
    And the audit log in table "audit_events" with kinds in "event_type" and times in "created_at"
    Then ROTATION_SCHEDULE

  @id:A-03 @daily
  Scenario: the audit file
    Given the audit log file "AUDIT_FILE"
    Then at most 0 "*_FAILED" events were logged in the last 24h
    And at least 1 "EXPORT_*" events were logged in the last 24h

  @id:B-01 @weekly @s3
  Scenario: backups ran at 03:00 every night
    Given the backups in "nightly"
    Then the backups follow the schedule "0 3 * * *" over the last 7 days, within 30 minutes

  @id:B-02 @weekly @s3
  Scenario: backups did not run twice a day
    Given the backups in "nightly"
    Then the backups follow the schedule "0 */12 * * *" over the last 3 days, within 30 minutes
"""

# Sentences longer than a line of code, put into FEATURE where it names them.
LONG_STEPS = {
    "EXPORT_SCHEDULE": 'the audit log has a "AUDIT_EXPORT" event at every time of the schedule "0 4 * * *" '
    "in the last 7 days, within 15 minutes",
    "ROTATION_SCHEDULE": 'the audit log has a "CERT_ROTATION" event at every time of the schedule '
    '"0 2 * * *" in the last 10 days, within 15 minutes',
}

EXPECTED = {
    "H-01": "passed",
    "H-02": "failed",
    "H-03": "error",
    "H-04": "error",
    "H-05": "error",
    "H-06": "error",
    "P-01": "passed",
    "P-02": "not_applicable",
    "P-03": "failed",
    "P-04": "failed",
    "P-05": "not_applicable",
    "R-01": "passed",
    "R-02": "warning",
    "R-03": "error",
    "T-01": "passed",
    "T-02": "failed",
    "T-03": "passed",
    "T-04": "failed",
    "M-01": "passed",
    "M-02": "error",
    "M-03": "error",
    "A-01": "passed",
    "A-02": "failed",
    "A-03": "passed",
    "B-01": "passed",
    "B-02": "failed",
}


def _messages(run: dict[str, Any], ident: str) -> str:
    return " | ".join(v["message"] for v in run["scenarios"][ident]["verdicts"])


class TestHealthStepsEndToEnd:
    def test_every_scenario_ends_as_it_should(self, health_run: dict[str, Any]) -> None:
        """Passing checks pass, bad inputs error or fail, and every scenario ran (exit 1: some failed)."""
        outcomes = {ident: s["outcome"] for ident, s in health_run["scenarios"].items()}
        assert outcomes == EXPECTED, health_run["proc"].stdout[-4000:]
        assert health_run["proc"].returncode == 1

    def test_bad_inputs_name_the_target_and_what_went_wrong(self, health_run: dict[str, Any]) -> None:
        assert "not JSON" in _messages(health_run, "H-03") and "/maintenance" in _messages(health_run, "H-03")
        assert "components.database.status" in _messages(health_run, "H-04")
        assert "`down-api`" in _messages(health_run, "H-05") and "unreachable" in _messages(
            health_run, "H-05"
        )
        assert "no-such-service" in _messages(health_run, "H-06")
        assert "refused the credentials" in _messages(health_run, "R-03")
        assert "'no_such_metric' returned no sample" in _messages(health_run, "M-02")
        assert "parse error" in _messages(health_run, "M-03")
        assert "siem: 'degraded'" in _messages(health_run, "H-02")
        assert "expired" in _messages(health_run, "T-02")
        assert "self-signed" in _messages(health_run, "T-04") or "self signed" in _messages(
            health_run, "T-04"
        )

    def test_thresholds_are_reported_with_what_was_measured(self, health_run: dict[str, Any]) -> None:
        assert "holds 1,500 items: in the warning band" in _messages(health_run, "R-02")
        assert "pg_stat_replication is empty" in _messages(health_run, "P-02")
        assert "first measurement: recorded" in _messages(health_run, "P-05")
        assert "1 duplicated" in _messages(health_run, "P-03")
        missing = health_run["scenarios"]["A-02"]["verdicts"][-1]["evidence"]["missing"]
        assert len(missing) == 1
        b02 = health_run["scenarios"]["B-02"]["verdicts"][-1]
        assert b02["evidence"]["missing"] and "key dates" in b02["message"]

    def test_no_secret_reaches_any_output(self, health_run: dict[str, Any]) -> None:
        """The Redis password and the API token appear in no output, report or evidence file."""
        for text in health_run["texts"]:
            assert REDIS_PASSWORD not in text
            assert API_TOKEN.split()[-1] not in text
