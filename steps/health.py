"""Health and threshold steps: HTTP, PostgreSQL, Redis, TLS, Prometheus, audit logs, schedules.

Thin glue: resolve the target through the environment (``drillbook_env.http(name)``
…), call one check from ``checks.http_health`` / ``pg_health`` / ``redis_health``
/ ``tls_certs`` / ``prometheus_slo`` / ``audit_log`` / ``schedules``, ``record()``
the verdict. Sentences carry no product facts: paths, keys, thresholds and
schedules come from the feature text. Subjects are only read (PostgreSQL
through read-only sessions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pytest_bdd import given, parsers, then

from checks import audit_log, http_health, pg_health, redis_health, schedules, tls_certs
from checks.backups import compile_key_pattern, is_sidecar
from checks.errors import DrillbookError
from checks.postgres import row_counts, unique_values
from checks.prometheus_slo import query_compares
from checks.thresholds import COMPARISON_PATTERN, parse_size
from checks.verdict import Verdict, record, verdict_from_error
from drills.restore import newest_in_store
from drills.targets import HttpTarget, PostgresTarget, PrometheusTarget, RedisTarget, TlsTarget

from .context import PARSE_TYPES, ScenarioState
from .guard import guarded

# {size:Size} reads "50 GB" (1024-based, as pg_size_pretty prints).
HEALTH_TYPES: dict[str, Any] = {**PARSE_TYPES, "Size": parse_size}
_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"


@dataclass
class HealthState:
    """The targets a health scenario named, and the HTTP answers it already fetched."""

    http: HttpTarget | None = None
    redis: RedisTarget | None = None
    tls: TlsTarget | None = None
    prometheus: PrometheusTarget | None = None
    audit: audit_log.AuditTable | audit_log.AuditFile | None = None
    responses: dict[str, http_health.HttpResponse | DrillbookError] = field(default_factory=dict)


@pytest.fixture
def health_state() -> Iterator[HealthState]:
    """Fresh per scenario."""
    yield HealthState()


def _guarded(check_id: str, action: Callable[[], Verdict]) -> Verdict:
    # A malformed value in the feature (a JSON path, a size) is "could not check" too.
    return guarded(check_id, action, bad_input=True)


def _lookup(kind: str, name: str, resolve: Callable[[str], Any]) -> Any:
    """The environment's target, or an error verdict naming the target (the scenario stops there)."""
    try:
        return resolve(name)
    except DrillbookError as exc:
        record(verdict_from_error(f"target.{kind}", exc))
        raise  # record() raised already for an error; this keeps type checkers honest


def _require(value: Any, what: str, given_step: str) -> Any:
    if value is None:
        raise LookupError(f"name the {what} first: `{given_step}`")
    return value


# --- targets ----------------------------------------------------------------------------------------


@given(parsers.parse('the HTTP service "{name}"'))
def http_service(name: str, drillbook_env: Any, health_state: HealthState) -> None:
    """Name the HTTP(S) service (an `http` target) whose endpoints the scenario checks."""
    health_state.http = _lookup("http", name, drillbook_env.http)


@given(parsers.parse('the Redis "{name}"'))
def redis_target(name: str, drillbook_env: Any, health_state: HealthState) -> None:
    """Name the Redis (a `redis` target) the scenario reads; nothing is written to it."""
    health_state.redis = _lookup("redis", name, drillbook_env.redis)


@given(parsers.parse('the TLS endpoint "{name}"'))
def tls_endpoint(name: str, drillbook_env: Any, health_state: HealthState) -> None:
    """Name the certificate source (a `tls` target: a live host:port or a PEM file)."""
    health_state.tls = _lookup("tls", name, drillbook_env.tls)


@given(parsers.parse('the Prometheus "{name}"'))
def prometheus_target(name: str, drillbook_env: Any, health_state: HealthState) -> None:
    """Name the Prometheus server (a `prometheus` target) whose HTTP API answers the SLO queries."""
    health_state.prometheus = _lookup("prometheus", name, drillbook_env.prometheus)


# --- HTTP -------------------------------------------------------------------------------------------


def _fetch(state: HealthState, path: str, *, fresh: bool) -> http_health.HttpResponse | DrillbookError:
    target: HttpTarget = _require(state.http, "HTTP service", 'Given the HTTP service "NAME"')
    if fresh or path not in state.responses:
        url = http_health.endpoint_url(target.url, path)
        try:
            state.responses[path] = http_health.fetch(
                url, target=target.name, ca_file=target.ca_file, headers=target.headers,
                timeout_s=target.timeout_s, follow_redirects=target.follow_redirects)
        except DrillbookError as exc:
            state.responses[path] = exc
    return state.responses[path]


def _with_response(state: HealthState, path: str, check_id: str, *, fresh: bool,
                   check: Callable[[http_health.HttpResponse], Verdict]) -> None:
    def run() -> Verdict:
        response = _fetch(state, path, fresh=fresh)
        if isinstance(response, DrillbookError):
            raise response
        return check(response)

    _guarded(check_id, run)


@then(parsers.parse('"{path}" answers HTTP {status:d} within {limit:Duration}', extra_types=HEALTH_TYPES))
def http_answers(path: str, status: int, limit: timedelta, health_state: HealthState) -> None:
    """GET the path of the HTTP service (TLS verified): this status, request to last byte within the limit."""
    _with_response(health_state, path, "http.status", fresh=True,
                   check=lambda r: http_health.status_within(r, status=status, limit=limit))


@then(parsers.parse('the JSON of "{path}" has "{json_path}" equal to "{expected}"'))
def http_json_equals(path: str, json_path: str, expected: str, health_state: HealthState) -> None:
    """The JSON body holds the value at a dotted path (e.g. `components.database.status`)."""
    _with_response(health_state, path, "http.json", fresh=False,
                   check=lambda r: http_health.json_equals(r, json_path, expected))


@then(parsers.parse('every entry of "{json_path}" in the JSON of "{path}" has "{field}" equal to '
                    '"{expected}"'))
def http_json_every_entry(json_path: str, path: str, field: str, expected: str,
                          health_state: HealthState) -> None:
    """Each entry of a list or object in the JSON body (e.g. every component) has the field's value."""
    _with_response(health_state, path, "http.json_entries", fresh=False,
                   check=lambda r: http_health.every_entry_equals(r, json_path, field, expected))


# --- PostgreSQL -------------------------------------------------------------------------------------


def _subject(drill_state: ScenarioState) -> PostgresTarget:
    subject: PostgresTarget = _require(drill_state.subject, "subject database",
                                       'Given the subject database "NAME"')
    return subject


def _label(target: PostgresTarget) -> str:
    return f"`{target.name}` ({target.describe()})"


def _on_subject(drill_state: ScenarioState, check_id: str,
                check: Callable[[psycopg.Connection[Any], str], Verdict]) -> None:
    subject = _subject(drill_state)
    label = _label(subject)

    def run() -> Verdict:
        with pg_health.connect_read_only(subject.dsn, label=label) as conn:
            return check(conn, label)

    _guarded(check_id, run)


@then(parsers.parse('the database answers "SELECT 1" within {limit:Duration}', extra_types=HEALTH_TYPES))
def pg_select_1(limit: timedelta, drill_state: ScenarioState) -> None:
    """Connect to the subject database and run SELECT 1 within the limit (connecting included)."""
    subject = _subject(drill_state)
    _guarded("postgres.select_1",
             lambda: pg_health.answers_select_1(subject.dsn, label=_label(subject), limit=limit))


@then(parsers.parse("replication lag is at most {limit:Duration}", extra_types=HEALTH_TYPES))
def pg_replication_lag(limit: timedelta, drill_state: ScenarioState) -> None:
    """Largest replay lag in pg_stat_replication (standby: replay delay); not applicable without replicas."""
    _on_subject(drill_state, "postgres.replication_lag",
                lambda conn, label: pg_health.replication_lag(conn, max_lag=limit, label=label))


@then(parsers.parse("connections use at most {percent:d} % of max_connections"))
def pg_connections(percent: int, drill_state: ScenarioState) -> None:
    """Client connections in pg_stat_activity stay within the share of max_connections."""
    _on_subject(drill_state, "postgres.connections",
                lambda conn, label: pg_health.connections_within(conn, percent=percent, label=label))


@then(parsers.parse("no query has been running for longer than {limit:Duration}", extra_types=HEALTH_TYPES))
def pg_long_queries(limit: timedelta, drill_state: ScenarioState) -> None:
    """No active query on the subject's server has run longer than the limit (listed when one has)."""
    _on_subject(drill_state, "postgres.long_queries",
                lambda conn, label: pg_health.long_running_queries(conn, limit=limit, label=label))


@then(parsers.parse("the database is smaller than {size:Size}", extra_types=HEALTH_TYPES))
def pg_size(size: int, drill_state: ScenarioState) -> None:
    """pg_database_size of the subject database is below the size (e.g. "50 GB", 1024-based)."""
    _on_subject(drill_state, "postgres.size",
                lambda conn, label: pg_health.database_smaller_than(conn, max_bytes=size, label=label))


@then(parsers.parse("the database grew by at most {size:Size} per day since the last run",
                    extra_types=HEALTH_TYPES))
def pg_growth(size: int, drill_state: ScenarioState, drillbook_history: Any) -> None:
    """Size growth per day since this scenario's last recorded size of the database; first: not applicable."""
    subject = _subject(drill_state)
    now = datetime.now(UTC)
    earlier = drillbook_history.previous_size(_label(subject), before=now)
    _on_subject(drill_state, "postgres.growth", lambda conn, label: pg_health.database_growth(
        conn, max_bytes_per_day=size, earlier=earlier, now=now, label=label))


@then("the subject's tables hold at least these rows:")
def pg_subject_row_counts(datatable: list[list[str]], drill_state: ScenarioState) -> None:
    """Per-table minimum row counts in the subject database (| table | rows |), exact count(*)."""
    header, *rows = datatable
    keys = [h.strip().lower() for h in header]
    minimums = {}
    for row in rows:
        cells = dict(zip(keys, (c.strip() for c in row), strict=True))
        minimums[cells["table"]] = int(cells["rows"].replace(",", ""))
    _on_subject(drill_state, "postgres.row_counts", lambda conn, label: row_counts(conn, minimums))


@then(parsers.parse('the subject\'s "{table}" has no duplicate "{column}"'))
def pg_subject_unique(table: str, column: str, drill_state: ScenarioState) -> None:
    """Integrity in the subject database: COUNT(*) equals COUNT(DISTINCT column)."""
    _on_subject(drill_state, "postgres.unique", lambda conn, label: unique_values(conn, table, column))


@then(parsers.parse('no row of "{table}" has "{column}" = "{state}" with "{time_column}" older than '
                    "{limit:Duration}", extra_types=HEALTH_TYPES))
def pg_stuck_rows(table: str, column: str, state: str, time_column: str, limit: timedelta,
                  drill_state: ScenarioState) -> None:
    """No row has stayed in a state longer than the limit (e.g. scans "running" for over 2 hours)."""
    now = datetime.now(UTC)
    _on_subject(drill_state, "postgres.stuck_rows", lambda conn, label: pg_health.stuck_rows(
        conn, table, column=column, state=state, time_column=time_column, limit=limit, now=now, label=label))


@then(parsers.parse('the newest "{column}" in "{table}" is at most {age:Duration} old',
                    extra_types=HEALTH_TYPES))
def pg_heartbeat(column: str, table: str, age: timedelta, drill_state: ScenarioState) -> None:
    """Heartbeat: max(column) of the subject's table is younger than the limit; an empty table fails."""

    def check(conn: psycopg.Connection[Any], label: str) -> Verdict:
        newest = schedules.newest_timestamp(conn, table, column)
        return schedules.heartbeat(newest, now=datetime.now(UTC), max_age=age,
                                   source=f"{label} {table}.{column}")

    _on_subject(drill_state, "schedule.heartbeat", check)


# --- Redis ------------------------------------------------------------------------------------------


def _on_redis(state: HealthState, check: Callable[[Any, str], Verdict]) -> None:
    target: RedisTarget = _require(state.redis, "Redis", 'Given the Redis "NAME"')
    label = redis_health.describe(target.url, target.name)
    client = redis_health.open_client(target.url)
    try:
        record(check(client, label))
    finally:
        client.close()


@then("Redis answers PING")
def redis_ping(health_state: HealthState) -> None:
    """PING answers PONG (a refused password is an error naming the target, never showing it)."""
    _on_redis(health_state, lambda client, label: redis_health.ping(client, label=label))


@then(parsers.parse("Redis memory use is at most {percent:d} % of maxmemory"))
def redis_memory(percent: int, health_state: HealthState) -> None:
    """used_memory within the share of maxmemory; not applicable when no maxmemory is set."""
    _on_redis(health_state, lambda client, label: redis_health.memory_within(
        client, percent=percent, label=label))


@then(parsers.parse("the Redis keyspace hit ratio is at least {percent:d} %"))
def redis_hit_ratio(percent: int, health_state: HealthState) -> None:
    """keyspace_hits / (hits + misses) from INFO stats is at least the floor."""
    _on_redis(health_state, lambda client, label: redis_health.hit_ratio_at_least(
        client, percent=percent, label=label))


@then(parsers.re(rf'the keys matching "(?P<pattern>.+)" number (?P<comparison>{COMPARISON_PATTERN}) '
                 r"(?P<count>\d+)"))
def redis_key_count(pattern: str, comparison: str, count: str, health_state: HealthState) -> None:
    """The number of keys matching a glob (counted with SCAN, never KEYS) compares as written."""
    _on_redis(health_state, lambda client, label: redis_health.key_count(
        client, pattern, comparison=comparison, count=int(count), label=label))


@then(parsers.parse('the list "{key}" holds fewer than {warning:d} items (warning up to {failed:d})'))
def redis_list_bands(key: str, warning: int, failed: int, health_state: HealthState) -> None:
    """LLEN below the first number passes, up to the second warns, above it fails (a queue's bands)."""
    _on_redis(health_state, lambda client, label: redis_health.list_length_bands(
        client, key, warning=warning, failed=failed, label=label))


@then(parsers.parse('the list "{key}" is empty'))
def redis_list_empty(key: str, health_state: HealthState) -> None:
    """LLEN is 0 (e.g. no failed events waiting); a missing key is an empty list."""
    _on_redis(health_state, lambda client, label: redis_health.list_empty(client, key, label=label))


@then(parsers.parse('no key matching "{pattern}" holds "{value}"'))
def redis_no_key_holds(pattern: str, value: str, health_state: HealthState) -> None:
    """No string (or hash field) under the glob holds the value (e.g. no circuit breaker "open")."""
    _on_redis(health_state, lambda client, label: redis_health.no_key_holds(
        client, pattern, value, label=label))


# --- TLS --------------------------------------------------------------------------------------------


def _cert_source(state: HealthState) -> tls_certs.CertSource:
    target: TlsTarget = _require(state.tls, "TLS endpoint", 'Given the TLS endpoint "NAME"')
    return tls_certs.CertSource(label=target.name, host=target.host, port=target.port,
                                server_name=target.server_name, pem_file=target.pem_file,
                                ca_file=target.ca_file)


@then(parsers.parse("the certificate is valid for at least {days:d} more days"))
def tls_expiry(days: int, health_state: HealthState) -> None:
    """Days until the leaf certificate's notAfter are at least N (read even when it is expired)."""
    source = _cert_source(health_state)
    _guarded("tls.expiry", lambda: tls_certs.days_to_expiry(
        tls_certs.leaf_of(source), now=datetime.now(UTC), min_days=days, where=source.describe()))


@then("the certificate chain verifies for the host name")
def tls_chain(health_state: HealthState) -> None:
    """The chain leads to the CA file (or system store) and the certificate names the host (or SNI name)."""
    source = _cert_source(health_state)
    _guarded("tls.chain", lambda: tls_certs.chain_verifies(source, now=datetime.now(UTC)))


# --- Prometheus -------------------------------------------------------------------------------------


@then(parsers.re(rf'the Prometheus query "(?P<query>.+)" is (?P<comparison>{COMPARISON_PATTERN}) '
                 rf"(?P<value>{_NUMBER})"))
def prometheus_query(query: str, comparison: str, value: str, health_state: HealthState) -> None:
    """A PromQL instant query yields one number that compares as written (empty or failing: error)."""
    target: PrometheusTarget = _require(health_state.prometheus, "Prometheus", 'Given the Prometheus "NAME"')
    _guarded("prometheus.query", lambda: query_compares(
        target.url, query, comparison=comparison, threshold=float(value), target=target.name,
        ca_file=target.ca_file, timeout_s=target.timeout_s))


# --- audit logs and schedules -----------------------------------------------------------------------


@given(parsers.parse('the audit log in table "{table}" with kinds in "{kind_column}" and times in '
                     '"{time_column}"'))
def audit_log_table(table: str, kind_column: str, time_column: str, health_state: HealthState) -> None:
    """The audit log is a table of the subject database: which columns hold the event kind and time."""
    health_state.audit = audit_log.AuditTable(table=table, kind_column=kind_column, time_column=time_column)


@given(parsers.parse('the audit log file "{path}"'))
def audit_log_file(path: str, health_state: HealthState) -> None:
    """The audit log is a JSON-lines file (relative to the working directory) with "kind" and "time"."""
    health_state.audit = audit_log.AuditFile(path=Path(path))


def _event_times(state: HealthState, drill_state: ScenarioState, kind: str, *,
                 since: datetime, until: datetime) -> tuple[list[datetime], str]:
    log = _require(state.audit, "audit log", 'Given the audit log file "PATH"')
    if isinstance(log, audit_log.AuditFile):
        return audit_log.file_event_times(log, kind=kind, since=since, until=until), log.describe()
    subject = _subject(drill_state)
    label = _label(subject)
    with pg_health.connect_read_only(subject.dsn, label=label) as conn:
        times = audit_log.table_event_times(conn, log, kind=kind, since=since, until=until)
    return times, f"{label} {log.describe()}"


def _count_events(comparison: str, count: int, kind: str, window: timedelta, state: HealthState,
                  drill_state: ScenarioState) -> None:
    def check() -> Verdict:
        now = datetime.now(UTC)
        times, source = _event_times(state, drill_state, kind, since=now - window, until=now)
        return audit_log.event_count(times, kind=kind, comparison=comparison, count=count, window=window,
                                     now=now, source=source)

    _guarded("audit.event_count", check)


@then(parsers.parse('at most {count:d} "{kind}" events were logged in the last {window:Duration}',
                    extra_types=HEALTH_TYPES))
def audit_at_most(count: int, kind: str, window: timedelta, health_state: HealthState,
                  drill_state: ScenarioState) -> None:
    """Events whose kind matches the glob (e.g. "*_FAILED") in the window number at most N."""
    _count_events("at most", count, kind, window, health_state, drill_state)


@then(parsers.parse('at least {count:d} "{kind}" events were logged in the last {window:Duration}',
                    extra_types=HEALTH_TYPES))
def audit_at_least(count: int, kind: str, window: timedelta, health_state: HealthState,
                   drill_state: ScenarioState) -> None:
    """Events whose kind matches the glob in the window number at least N (the job really ran)."""
    _count_events("at least", count, kind, window, health_state, drill_state)


@then(parsers.parse('the audit log has a "{kind}" event at every time of the schedule "{cron}" in the last '
                    "{window:Duration}, within {tolerance:Duration}", extra_types=HEALTH_TYPES))
def audit_schedule(kind: str, cron: str, window: timedelta, tolerance: timedelta, health_state: HealthState,
                   drill_state: ScenarioState) -> None:
    """Every fire time of the cron schedule (UTC) in the window has its own event within the tolerance."""

    def check() -> Verdict:
        now = datetime.now(UTC)
        times, source = _event_times(health_state, drill_state, kind, since=now - window - tolerance,
                                     until=now)
        return schedules.schedule_followed(cron, times, now=now, window=window, tolerance=tolerance,
                                           what=f"{kind!r} events in {source}", check_id="schedule.audit")

    _guarded("schedule.audit", check)


@then(parsers.parse('the backups follow the schedule "{cron}" over the last {window:Duration}, '
                    "within {tolerance:Duration}", extra_types=HEALTH_TYPES))
def backups_schedule(cron: str, window: timedelta, tolerance: timedelta, drill_state: ScenarioState) -> None:
    """Every fire time of the cron schedule (UTC) has a backup within the tolerance (key date, mtime)."""
    store = _require(drill_state.store, "store", 'Given the backups in "NAME"')

    def check() -> Verdict:
        _, _, objects = newest_in_store(store)
        pattern = compile_key_pattern(store.key_pattern) if store.key_pattern else None
        # A key date finer than the tolerance says when the backup was taken; a day-only date
        # (backup-%Y%m%d) cannot place it within hours, so then the object's write time does.
        use_key = pattern is not None and pattern.resolution <= tolerance
        times = []
        for obj in objects:
            if is_sidecar(obj.key):
                continue
            if pattern is not None:
                taken = pattern.parse(obj.key)
                if taken is None:
                    continue
                times.append(taken if use_key else obj.last_modified)
            else:
                times.append(obj.last_modified)
        source = "key dates" if use_key else "write times (LastModified)"
        return schedules.schedule_followed(cron, times, now=datetime.now(UTC), window=window,
                                           tolerance=tolerance, what=f"backups in {store.url} ({source})",
                                           check_id="schedule.backups")

    _guarded("schedule.backups", check)
