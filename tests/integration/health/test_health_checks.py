"""Health checks against real loopback servers: HTTPS (trustme), PostgreSQL (with a streaming standby),
Redis, TLS endpoints, and Debian's Prometheus scraping an exporter. Nothing is mocked."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from checks import audit_log, http_health, pg_health, redact, redis_health, schedules, tls_certs
from checks.errors import TargetUnreachable, UnusableAnswer
from checks.prometheus_slo import instant_query, query_compares
from checks.verdict import Outcome, Verdict
from drills.processes import (
    PostgresServer,
    RedisServer,
    free_port,
)
from tests.support.health_servers import (
    Pki,
    Served,
)

pytestmark = pytest.mark.integration

SECOND = timedelta(seconds=1)


def label_of(server: PostgresServer) -> str:
    return f"`{server.name}` (127.0.0.1:{server.port})"


# --- HTTP -------------------------------------------------------------------------------------------


def _get(served: Served, path: str, *, ca_file: Path | None, **kw: Any) -> http_health.HttpResponse:
    return http_health.fetch(
        http_health.endpoint_url(served.url, path), target="sark-api", ca_file=ca_file, **kw
    )


class TestHttpHealth:
    def test_status_and_latency_pass(self, https_api: Served, pki: Pki) -> None:
        """HTTPS verified against the CA file: HTTP 200 well within 2 s."""
        verdict = http_health.status_within(
            _get(https_api, "/health", ca_file=pki.ca_file), status=200, limit=2 * SECOND
        )
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert verdict.evidence["url"] == f"{https_api.url}/health"

    def test_a_wrong_status_fails_naming_both(self, https_api: Served, pki: Pki) -> None:
        verdict = http_health.status_within(
            _get(https_api, "/down", ca_file=pki.ca_file), status=200, limit=2 * SECOND
        )
        assert verdict.outcome is Outcome.FAILED
        assert "HTTP 503, expected 200" in verdict.message and "`sark-api`" in verdict.message

    def test_too_slow_fails(self, https_api: Served, pki: Pki) -> None:
        """A 400 ms answer against a 100 ms limit fails, with the time measured."""
        verdict = http_health.status_within(
            _get(https_api, "/slow", ca_file=pki.ca_file), status=200, limit=timedelta(milliseconds=100)
        )
        assert verdict.outcome is Outcome.FAILED
        assert "limit 0.1s" in verdict.message
        assert verdict.evidence["latency_s"] >= 0.4

    def test_json_paths_and_every_component(self, https_api: Served, pki: Pki) -> None:
        """SARK: every component healthy; one degraded component fails, named."""
        good = _get(https_api, "/health/detailed", ca_file=pki.ca_file)
        assert (
            http_health.json_equals(good, "components.database.status", "healthy").outcome is Outcome.PASSED
        )
        assert (
            http_health.every_entry_equals(good, "components", "status", "healthy").outcome is Outcome.PASSED
        )
        bad = http_health.every_entry_equals(
            _get(https_api, "/health/degraded", ca_file=pki.ca_file), "components", "status", "healthy"
        )
        assert bad.outcome is Outcome.FAILED
        assert "siem: 'degraded'" in bad.message

    def test_a_non_json_body_is_an_error_naming_target_and_url(self, https_api: Served, pki: Pki) -> None:
        verdict = http_health.json_equals(
            _get(https_api, "/maintenance", ca_file=pki.ca_file), "status", "ok"
        )
        assert verdict.outcome is Outcome.ERROR
        assert "`sark-api`" in verdict.message and f"{https_api.url}/maintenance" in verdict.message
        assert "text/html" in verdict.message

    def test_a_missing_json_path_is_an_error(self, https_api: Served, pki: Pki) -> None:
        verdict = http_health.json_equals(
            _get(https_api, "/health", ca_file=pki.ca_file), "components.database.status", "healthy"
        )
        assert verdict.outcome is Outcome.ERROR
        assert "no `components` under the top level (keys there: status)" in verdict.message

    def test_headers_from_the_config_are_sent(self, https_api: Served, pki: Pki) -> None:
        without = _get(https_api, "/private", ca_file=pki.ca_file)
        with_token = _get(
            https_api, "/private", ca_file=pki.ca_file, headers=[("Authorization", "Bearer t0ken-1234")]
        )
        assert (without.status, with_token.status) == (401, 200)

    def test_an_unreachable_endpoint_names_target_and_url(self) -> None:
        url = f"https://127.0.0.1:{free_port()}/health"
        with pytest.raises(TargetUnreachable) as caught:
            http_health.fetch(url, target="sark-api", timeout_s=3)
        assert "`sark-api`" in caught.value.message and url in caught.value.message
        assert "refused" in caught.value.message.lower()

    def test_tls_is_verified_against_the_system_store_by_default(self, https_api: Served) -> None:
        """Without the CA file the private chain is untrusted: an error, never a silent pass."""
        with pytest.raises(TargetUnreachable, match="TLS verification failed") as caught:
            _get(https_api, "/health", ca_file=None)
        assert "ca_file" in caught.value.hint

    def test_a_self_signed_endpoint_is_refused(self, self_signed_endpoint: Served, pki: Pki) -> None:
        with pytest.raises(TargetUnreachable, match=r"self-signed|self signed"):
            _get(self_signed_endpoint, "/", ca_file=pki.ca_file)


# --- PostgreSQL -------------------------------------------------------------------------------------


class TestPostgresHealth:
    def test_sessions_are_read_only(self, primary: PostgresServer) -> None:
        """A check's session cannot write, even in autocommit."""
        with (
            pg_health.connect_read_only(primary.dsn(), label="p") as conn,
            pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
        ):
            conn.execute("CREATE TABLE must_not_exist (x int)")

    def test_the_dsn_s_own_options_are_kept(self, primary: PostgresServer) -> None:
        """A search_path in the DSN's options survives the read-only options drillbook adds."""
        dsn = primary.dsn() + "?options=-csearch_path%3Dhealth_app"
        with pg_health.connect_read_only(dsn, label="p") as conn:
            row = conn.execute(
                "SELECT current_setting('search_path'), current_setting('transaction_read_only')"
            ).fetchone()
        assert row == ("health_app", "on")

    def test_select_1_within_the_limit(self, primary: PostgresServer) -> None:
        verdict = pg_health.answers_select_1(primary.dsn(), label=label_of(primary), limit=5 * SECOND)
        assert verdict.outcome is Outcome.PASSED, verdict.message

    def test_an_unreachable_database_is_an_error_naming_it(self) -> None:
        dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
        verdict = pg_health.answers_select_1(dsn, label="`production` (127.0.0.1)", limit=5 * SECOND)
        assert verdict.outcome is Outcome.ERROR
        assert "`production`" in verdict.message and "does not answer" in verdict.message

    def test_replication_lag_is_not_applicable_without_replicas(self, primary: PostgresServer) -> None:
        """No replica attached: not applicable, with the reason."""
        with pg_health.connect_read_only(primary.dsn(), label="p") as conn:
            verdict = pg_health.replication_lag(conn, max_lag=10 * SECOND, label="p")
        assert verdict.outcome is Outcome.NOT_APPLICABLE
        assert "pg_stat_replication is empty" in verdict.message

    def test_replication_lag_with_a_streaming_standby(
        self, primary: PostgresServer, standby: PostgresServer
    ) -> None:
        """A real standby: the primary lists it streaming; the standby measures its own replay delay."""
        with pg_health.connect_read_only(primary.dsn(), label="p") as conn:
            verdict = pg_health.replication_lag(conn, max_lag=60 * SECOND, label="p")
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert verdict.evidence["replicas"][0]["state"] == "streaming"
        with pg_health.connect_read_only(standby.dsn(), label="s") as conn:
            on_standby = pg_health.replication_lag(conn, max_lag=60 * SECOND, label="s")
        assert on_standby.outcome is Outcome.PASSED, on_standby.message
        assert on_standby.evidence["role"] == "standby"

    def test_connections_against_max_connections(self, primary: PostgresServer) -> None:
        with pg_health.connect_read_only(primary.dsn(), label="p") as conn:
            ok = pg_health.connections_within(conn, percent=80, label="p")
            none_allowed = pg_health.connections_within(conn, percent=0, label="p")
        assert ok.outcome is Outcome.PASSED
        assert none_allowed.outcome is Outcome.FAILED
        assert f"of {ok.evidence['max_connections']} connections" in none_allowed.message

    def test_a_long_running_query_is_found(self, primary: PostgresServer) -> None:
        """A real pg_sleep in another session, older than the limit: failed, with its pid and text."""
        sleeper = psycopg.connect(primary.dsn(), autocommit=True)
        pid = sleeper.info.backend_pid
        thread = threading.Thread(target=lambda: _sleep_quietly(sleeper), daemon=True)
        thread.start()
        try:
            with pg_health.connect_read_only(primary.dsn(), label="p") as conn:
                _wait_running(conn, pid, longer_than=timedelta(milliseconds=500))
                found = pg_health.long_running_queries(conn, limit=timedelta(milliseconds=300), label="p")
                calm = pg_health.long_running_queries(conn, limit=timedelta(hours=1), label="p")
        finally:
            with psycopg.connect(primary.dsn(), autocommit=True) as admin:
                admin.execute("SELECT pg_cancel_backend(%s)", (pid,))
            thread.join(timeout=10)
            sleeper.close()
        assert found.outcome is Outcome.FAILED
        assert f"pid {pid}" in found.message and "pg_sleep" in found.message
        assert calm.outcome is Outcome.PASSED

    def test_database_size(self, primary: PostgresServer) -> None:
        with pg_health.connect_read_only(primary.dsn(), label="p") as conn:
            small = pg_health.database_smaller_than(conn, max_bytes=50 * 1024**3, label="p")
            tiny = pg_health.database_smaller_than(conn, max_bytes=1024**2, label="p")
        assert small.outcome is Outcome.PASSED
        assert tiny.outcome is Outcome.FAILED and "limit 1.0 MB" in tiny.message

    def test_rows_stuck_in_a_state(self, primary: PostgresServer) -> None:
        """SentraScan: a scan running for 3 h fails a 2 h limit; none passes a 4 h limit."""
        now = datetime.now(UTC)
        with pg_health.connect_read_only(primary.dsn(), label="p") as conn:
            def running_longer(table: str, hours: int) -> Verdict:
                return pg_health.stuck_rows(conn, table, column="status", state="running",
                                            time_column="started_at", limit=timedelta(hours=hours),
                                            now=now, label="p")

            stuck = running_longer("scans", 2)
            fine = running_longer("scans", 4)
            typo = running_longer("scan", 4)
        assert stuck.outcome is Outcome.FAILED and "1 row of scans has been" in stuck.message
        assert fine.outcome is Outcome.PASSED
        assert typo.outcome is Outcome.ERROR and '"scan" does not exist' in typo.message

    def test_heartbeat_freshness(self, primary: PostgresServer) -> None:
        """Scrydon: the newest license heartbeat is 2 h old; an empty table has none."""
        now = datetime.now(UTC)
        with pg_health.connect_read_only(primary.dsn(), label="p") as conn:
            newest = schedules.newest_timestamp(conn, "license_heartbeat", "beat_at")
            empty = schedules.newest_timestamp(conn, "empty_heartbeat", "beat_at")
        assert newest is not None
        assert (
            schedules.heartbeat(newest, now=now, max_age=timedelta(hours=26), source="l").outcome
            is Outcome.PASSED
        )
        assert (
            schedules.heartbeat(newest, now=now, max_age=timedelta(hours=1), source="l").outcome
            is Outcome.FAILED
        )
        assert empty is None

    def test_audit_events_by_glob_in_a_window(self, primary: PostgresServer) -> None:
        """*_FAILED matches LOGIN_FAILED and FOCUS_FAILED in the last week; a literal % stays literal."""
        now = datetime.now(UTC)
        log = audit_log.AuditTable("audit_events", "event_type", "created_at")
        with pg_health.connect_read_only(primary.dsn(), label="p") as conn:
            week = audit_log.table_event_times(
                conn, log, kind="*_FAILED", since=now - timedelta(days=7), until=now
            )
            literal = audit_log.table_event_times(
                conn, log, kind="EXPORT_FAILED%", since=now - timedelta(days=7), until=now
            )
            with pytest.raises(UnusableAnswer, match="created"):
                audit_log.table_event_times(
                    conn,
                    audit_log.AuditTable("audit_events", "event_type", "created"),
                    kind="*",
                    since=now - timedelta(days=1),
                    until=now,
                )
        assert len(week) == 4  # 3 LOGIN_FAILED + 1 FOCUS_FAILED; the 30-day-old one is outside
        assert len(literal) == 1

    def test_audit_schedule_from_the_table(self, primary: PostgresServer) -> None:
        """Sovra: audit export at 04:00 every day is there; one skipped cert rotation at 02:00 is listed."""
        now = datetime.now(UTC)
        log = audit_log.AuditTable("audit_events", "event_type", "created_at")
        with pg_health.connect_read_only(primary.dsn(), label="p") as conn:
            exports = audit_log.table_event_times(
                conn, log, kind="AUDIT_EXPORT", since=now - timedelta(days=8), until=now
            )
            rotations = audit_log.table_event_times(
                conn, log, kind="CERT_ROTATION", since=now - timedelta(days=11), until=now
            )
        ok = schedules.schedule_followed(
            "0 4 * * *",
            exports,
            now=now,
            window=timedelta(days=7),
            tolerance=timedelta(minutes=15),
            what="exports",
        )
        gap = schedules.schedule_followed(
            "0 2 * * *",
            rotations,
            now=now,
            window=timedelta(days=10),
            tolerance=timedelta(minutes=15),
            what="rotations",
        )
        assert ok.outcome is Outcome.PASSED, ok.message
        assert gap.outcome is Outcome.FAILED
        assert len(gap.evidence["missing"]) == 1


def _wait_running(conn: psycopg.Connection[Any], pid: int, *, longer_than: timedelta) -> None:
    """Until backend ``pid`` has been running its query for longer than ``longer_than`` (10 s deadline)."""
    deadline = time.monotonic() + 10
    while True:
        row = conn.execute(
            "SELECT now() - query_start FROM pg_stat_activity WHERE pid = %s AND state = 'active'", (pid,)
        ).fetchone()
        if row is not None and row[0] > longer_than:
            return
        assert time.monotonic() < deadline, f"backend {pid} never ran its query long enough"
        time.sleep(0.05)


def _sleep_quietly(conn: psycopg.Connection[Any]) -> None:
    with contextlib.suppress(psycopg.errors.QueryCanceled):
        conn.execute("SELECT pg_sleep(30)")


# --- Redis ------------------------------------------------------------------------------------------


class TestRedisHealth:
    def test_ping(self, client: redis.Redis) -> None:
        verdict = redis_health.ping(client, label="cache")
        assert verdict.outcome is Outcome.PASSED and verdict.evidence["redis_version"]

    def test_memory_without_and_with_a_limit(self, client: redis.Redis) -> None:
        """No maxmemory: not applicable, with the reason; with 512 MB, a few MB pass 80 % and fail 0 %."""
        none = redis_health.memory_within(client, percent=80, label="cache")
        assert none.outcome is Outcome.NOT_APPLICABLE and "no maxmemory limit" in none.message
        client.config_set("maxmemory", 512 * 1024 * 1024)
        assert redis_health.memory_within(client, percent=80, label="cache").outcome is Outcome.PASSED
        assert redis_health.memory_within(client, percent=0, label="cache").outcome is Outcome.FAILED

    def test_hit_ratio(self, client: redis.Redis) -> None:
        """No lookups yet: not applicable; 19 hits and 1 miss is 95 %: passes 95, fails 96."""
        assert (
            redis_health.hit_ratio_at_least(client, percent=95, label="c").outcome is Outcome.NOT_APPLICABLE
        )
        client.set("session:user:1", "x")
        for _ in range(19):
            client.get("session:user:1")
        client.get("session:user:missing")
        assert redis_health.hit_ratio_at_least(client, percent=95, label="c").outcome is Outcome.PASSED
        assert redis_health.hit_ratio_at_least(client, percent=96, label="c").outcome is Outcome.FAILED

    def test_key_counts_with_scan(self, client: redis.Redis) -> None:
        """2,500 session keys over several SCAN batches are all counted; other keys are not."""
        with client.pipeline(transaction=False) as pipe:
            for i in range(2500):
                pipe.set(f"session:user:{i}", "1")
            pipe.set("ratelimit:10.0.0.1:window", "3")
            pipe.execute()
        verdict = redis_health.key_count(
            client, "session:user:*", comparison="exactly", count=2500, label="c"
        )
        assert verdict.outcome is Outcome.PASSED, verdict.message
        too_many = redis_health.key_count(
            client, "session:user:*", comparison="at most", count=1000, label="c"
        )
        assert too_many.outcome is Outcome.FAILED and "2500 keys match" in too_many.message

    @pytest.mark.parametrize(
        ("length", "outcome"),
        [
            (0, Outcome.PASSED),
            (999, Outcome.PASSED),
            (1000, Outcome.WARNING),
            (10000, Outcome.WARNING),
            (10001, Outcome.FAILED),
        ],
    )
    def test_siem_queue_bands(self, client: redis.Redis, length: int, outcome: Outcome) -> None:
        """SARK's siem:event_queue: < 1,000 passed, 1,000–10,000 warning, > 10,000 failed."""
        for start in range(0, length, 5000):
            client.rpush("siem:event_queue", *[b"e"] * min(5000, length - start))
        verdict = redis_health.list_length_bands(
            client, "siem:event_queue", warning=1000, failed=10000, label="c"
        )
        assert verdict.outcome is outcome, verdict.message
        assert verdict.measured == length

    def test_empty_list_and_a_wrong_type(self, client: redis.Redis) -> None:
        absent = redis_health.list_empty(client, "siem:failed_events", label="c")
        assert absent.outcome is Outcome.PASSED and "no such key" in absent.message
        client.rpush("siem:failed_events", "e1", "e2")
        failed = redis_health.list_empty(client, "siem:failed_events", label="c")
        assert failed.outcome is Outcome.FAILED and "holds 2 items" in failed.message
        client.set("siem:not_a_list", "x")
        wrong = redis_health.list_empty(client, "siem:not_a_list", label="c")
        assert wrong.outcome is Outcome.ERROR and "is a string, not a list" in wrong.message

    def test_circuit_breakers(self, client: redis.Redis) -> None:
        """No breaker open passes; one open (string or hash field) fails naming it; no key: not applicable."""
        assert (
            redis_health.no_key_holds(client, "circuit:*", "open", label="c").outcome
            is Outcome.NOT_APPLICABLE
        )
        client.set("circuit:siem", "closed")
        client.hset("circuit:ldap", mapping={"state": "closed", "failures": "0"})
        assert redis_health.no_key_holds(client, "circuit:*", "open", label="c").outcome is Outcome.PASSED
        client.hset("circuit:ldap", "state", "open")
        verdict = redis_health.no_key_holds(client, "circuit:*", "open", label="c")
        assert verdict.outcome is Outcome.FAILED and "circuit:ldap" in verdict.message

    def test_unreachable_redis_is_an_error(self) -> None:
        client = redis_health.open_client(f"redis://127.0.0.1:{free_port()}/0")
        verdict = redis_health.ping(client, label="cache (127.0.0.1)")
        assert verdict.outcome is Outcome.ERROR and "unreachable" in verdict.message

    def test_an_auth_failure_is_an_error_that_never_shows_the_password(self, workdir: Path) -> None:
        """requirepass set: a wrong password and no password are errors; the password appears nowhere."""
        server = RedisServer(workdir / "redis-auth")
        server.start()
        password = "pw-Zq81-very-secret"
        try:
            redis_health.open_client(server.url).config_set("requirepass", password)
            redact.register(password)
            wrong = f"redis://:{password}x@127.0.0.1:{server.port}/0"
            for url in (wrong, server.url):
                verdict = redis_health.ping(
                    redis_health.open_client(url), label=redis_health.describe(url, "cache")
                )
                assert verdict.outcome is Outcome.ERROR
                assert "refused the credentials" in verdict.message or "NOAUTH" in verdict.message
                assert password not in json.dumps(verdict.to_dict())
                assert verdict.evidence["hint"]
            right = f"redis://:{password}@127.0.0.1:{server.port}/0"
            assert redis_health.ping(redis_health.open_client(right), label="c").outcome is Outcome.PASSED
        finally:
            redact.clear()
            server.stop()


# --- TLS endpoints ----------------------------------------------------------------------------------


def _endpoint(
    served: Served, pki: Pki, *, server_name: str | None = None, ca: bool = True
) -> tls_certs.CertSource:
    return tls_certs.CertSource(
        label="edge",
        host="127.0.0.1",
        port=served.port,
        server_name=server_name,
        ca_file=pki.ca_file if ca else None,
    )


class TestTlsEndpoints:
    def test_a_valid_chain_verifies_and_has_days_left(self, https_api: Served, pki: Pki) -> None:
        now = datetime.now(UTC)
        source = _endpoint(https_api, pki, server_name="localhost")
        chain = tls_certs.chain_verifies(source, now=now)
        assert chain.outcome is Outcome.PASSED, chain.message
        expiry = tls_certs.days_to_expiry(
            tls_certs.leaf_of(source), now=now, min_days=30, where=source.describe()
        )
        assert expiry.outcome is Outcome.PASSED
        too_demanding = tls_certs.days_to_expiry(tls_certs.leaf_of(source), now=now, min_days=120, where="e")
        assert too_demanding.outcome is Outcome.FAILED

    def test_the_wrong_host_name_fails(self, https_api: Served, pki: Pki) -> None:
        verdict = tls_certs.chain_verifies(
            _endpoint(https_api, pki, server_name="other.example"), now=datetime.now(UTC)
        )
        assert verdict.outcome is Outcome.FAILED and "other.example" in verdict.message

    def test_the_system_store_does_not_trust_a_private_ca(self, https_api: Served, pki: Pki) -> None:
        verdict = tls_certs.chain_verifies(_endpoint(https_api, pki, ca=False), now=datetime.now(UTC))
        assert verdict.outcome is Outcome.FAILED and "the system store" in verdict.message

    def test_an_expired_certificate_is_still_measured(self, expired_endpoint: Served, pki: Pki) -> None:
        """Expired: the expiry check reads it anyway and fails; the chain fails as expired."""
        now = datetime.now(UTC)
        source = _endpoint(expired_endpoint, pki)
        expiry = tls_certs.days_to_expiry(
            tls_certs.leaf_of(source), now=now, min_days=30, where=source.describe()
        )
        assert expiry.outcome is Outcome.FAILED and "expired 3.0 days ago" in expiry.message
        chain = tls_certs.chain_verifies(source, now=now)
        assert chain.outcome is Outcome.FAILED and "expired" in chain.message

    def test_a_self_signed_certificate_fails_the_chain(self, self_signed_endpoint: Served, pki: Pki) -> None:
        verdict = tls_certs.chain_verifies(_endpoint(self_signed_endpoint, pki), now=datetime.now(UTC))
        assert verdict.outcome is Outcome.FAILED and "self" in verdict.message.lower()

    def test_no_listener_is_unreachable(self, pki: Pki) -> None:
        source = tls_certs.CertSource(label="edge", host="127.0.0.1", port=free_port(), ca_file=pki.ca_file)
        with pytest.raises(TargetUnreachable, match="`edge`"):
            tls_certs.leaf_of(source)


# --- Prometheus -------------------------------------------------------------------------------------


class TestPrometheusSlo:
    def test_availability_at_least(self, prometheus: Any) -> None:
        """Sovra: availability at least 99.9 % from a scraped gauge."""
        verdict = query_compares(
            prometheus.url,
            "sark_availability_ratio",
            comparison="at least",
            threshold=0.999,
            target="metrics",
        )
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert verdict.evidence["labels"]["job"] == "exporter"

    def test_a_threshold_not_met_fails(self, prometheus: Any) -> None:
        verdict = query_compares(
            prometheus.url,
            "max(edge_heartbeat_age_seconds)",
            comparison="less than",
            threshold=60,
            target="metrics",
        )
        assert verdict.outcome is Outcome.FAILED
        assert "= 75, expected less than 60" in verdict.message

    def test_a_scalar_result(self, prometheus: Any) -> None:
        sample = instant_query(prometheus.url, "scalar(sum(sark_requests_total))", target="metrics")
        assert (sample.value, sample.result_type) == (10000.0, "scalar")

    @pytest.mark.parametrize(
        ("query", "reason"),
        [
            ("sum(rate(sark_requests_total[5m]", "parse error"),
            ("no_such_metric", "returned no sample"),
            ("edge_heartbeat_age_seconds", "returned 2 series"),
        ],
    )
    def test_unusable_answers_are_errors_naming_the_query(
        self, prometheus: Any, query: str, reason: str
    ) -> None:
        """A query error, an empty result, several series: error verdicts naming the query, with a hint."""
        verdict = query_compares(prometheus.url, query, comparison="at least", threshold=1, target="metrics")
        assert verdict.outcome is Outcome.ERROR
        assert repr(query) in verdict.message and reason in verdict.message
        assert verdict.evidence["hint"]

    def test_an_unreachable_prometheus_is_an_error(self) -> None:
        url = f"http://127.0.0.1:{free_port()}"
        verdict: Verdict = query_compares(url, "up", comparison="at least", threshold=1, target="metrics")
        assert verdict.outcome is Outcome.ERROR and "`metrics`" in verdict.message
