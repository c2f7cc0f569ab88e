"""Real loopback servers for the health tests, one set per test module.

An HTTPS service with a trustme chain (plus an expired and a self-signed
endpoint), a seeded PostgreSQL primary (and a pg_basebackup standby on
request), redis-server, and Debian's Prometheus scraping an exporter.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from croniter import croniter

from checks import redis_health
from checks.errors import EnvironmentError_
from drills import pgtools
from drills.processes import (
    PostgresServer,
    RedisServer,
    hand_to_server_user,
    server_user_kwargs,
    template_datadir,
)
from tests.support.health_servers import (
    API_TOKEN,
    Pki,
    Route,
    Served,
    json_route,
    make_pki,
    prometheus_available,
    prometheus_scraping_exporter,
    serve,
    server_context,
)

HEALTHY = {
    "status": "healthy",
    "components": {"database": {"status": "healthy"}, "redis": {"status": "healthy"}},
}
DEGRADED = {
    "status": "degraded",
    "components": {"database": {"status": "healthy"}, "siem": {"status": "degraded"}},
}

# --- servers ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A temp dir the `postgres` OS user can traverse (pytest's own is 0700 as root)."""
    path = Path(tempfile.mkdtemp(prefix="drillbook-health-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def pki(workdir: Path) -> Pki:
    return make_pki(workdir, now=datetime.now(UTC))


@pytest.fixture(scope="module")
def https_api(pki: Pki, workdir: Path) -> Iterator[Served]:
    """An HTTPS service on 127.0.0.1 whose certificate chains (via an intermediate) to the test CA."""
    routes = {
        "/health": json_route({"status": "ok"}),
        "/health/detailed": json_route(HEALTHY),
        "/health/degraded": json_route(DEGRADED),
        "/maintenance": Route(
            body=b"<html><body>down for maintenance</body></html>", content_type="text/html"
        ),
        "/down": json_route({"status": "down"}, status=503),
        "/slow": json_route({"status": "ok"}, delay_s=0.4),
        "/private": json_route({"status": "ok"}, need_header=("Authorization", API_TOKEN)),
    }
    with serve(routes, tls=server_context(pki.valid_chain, pki.valid_key, workdir)) as served:
        yield served


@pytest.fixture(scope="module")
def expired_endpoint(pki: Pki, workdir: Path) -> Iterator[Served]:
    with serve(
        {"/": json_route({})}, tls=server_context(pki.expired_chain, pki.expired_key, workdir)
    ) as served:
        yield served


@pytest.fixture(scope="module")
def self_signed_endpoint(pki: Pki, workdir: Path) -> Iterator[Served]:
    with serve({"/": json_route({})}, tls=server_context(pki.self_signed, pki.self_signed_key, workdir)) as s:
        yield s


def _bindir() -> Path:
    try:
        bindir = pgtools.bindir()
    except EnvironmentError_ as exc:
        pytest.skip(reason=f"PostgreSQL server binaries are not installed: {exc}")
    if not (Path(bindir) / "initdb").exists():
        pytest.skip(reason=f"PostgreSQL's initdb is missing from {bindir}")
    return Path(bindir)


@pytest.fixture(scope="module")
def primary(workdir: Path, sandbox_xdg_cache: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL cluster seeded with the shapes the runbooks imply (scans, api keys, audit, heartbeat)."""
    bindir = _bindir()
    template = template_datadir(sandbox_xdg_cache / "drillbook", bindir=bindir, workdir=workdir)
    server = PostgresServer("health-primary", workdir / "primary", bindir=bindir)
    server.init(template=template)
    server.start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            _seed(conn, now=datetime.now(UTC))
        yield server
    finally:
        server.stop()


def audit_times(cron: str, now: datetime, days: int, *, skip: int | None = None) -> list[datetime]:
    """Fire times of ``cron`` over the last ``days`` days, each 2 minutes late, optionally one skipped."""
    it = croniter(cron, now - timedelta(days=days))
    times = []
    while (fire := it.get_next(datetime)) <= now:
        times.append(fire + timedelta(minutes=2))
    return [t for i, t in enumerate(times) if i != skip]


def _seed(conn: psycopg.Connection[Any], *, now: datetime) -> None:
    conn.execute("CREATE TABLE scans (id serial PRIMARY KEY, status text NOT NULL, started_at timestamptz)")
    conn.execute(
        "INSERT INTO scans (status, started_at) VALUES ('running', %s), ('running', %s), ('completed', %s)",
        (now - timedelta(hours=3), now - timedelta(minutes=10), now - timedelta(days=2)),
    )
    conn.execute("CREATE TABLE api_keys (id serial PRIMARY KEY, key_hash text, owner text)")
    conn.execute("INSERT INTO api_keys (key_hash, owner) VALUES ('a1', 'x'), ('b2', 'y'), ('a1', 'z')")
    conn.execute("CREATE TABLE license_heartbeat (beat_at timestamptz NOT NULL)")
    conn.execute(
        "INSERT INTO license_heartbeat VALUES (%s), (%s)", (now - timedelta(days=3), now - timedelta(hours=2))
    )
    conn.execute("CREATE TABLE empty_heartbeat (beat_at timestamp)")
    conn.execute(
        "CREATE TABLE audit_events (id serial, event_type text NOT NULL, created_at timestamptz NOT NULL)"
    )
    rows = [("LOGIN_FAILED", now - timedelta(days=d)) for d in (1, 2, 3)]
    rows += [
        ("FOCUS_FAILED", now - timedelta(hours=5)),
        ("LOGIN_OK", now - timedelta(hours=1)),
        ("LOGIN_FAILED", now - timedelta(days=30)),
        ("EXPORT_FAILED%", now - timedelta(days=1)),
    ]
    rows += [("AUDIT_EXPORT", t) for t in audit_times("0 4 * * *", now, 10)]
    rows += [("CERT_ROTATION", t) for t in audit_times("0 2 * * *", now, 10, skip=4)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO audit_events (event_type, created_at) VALUES (%s, %s)", rows)


@pytest.fixture(scope="module")
def standby(primary: PostgresServer, workdir: Path) -> Iterator[PostgresServer]:
    """A streaming replica of the primary, made by pg_basebackup -R (as the `postgres` user when root)."""
    datadir = workdir / "standby"
    datadir.mkdir()
    hand_to_server_user(datadir)
    result = subprocess.run(
        [
            str(primary.bindir / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(datadir),
            "-R",
            "-X",
            "stream",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **server_user_kwargs(),
    )
    assert result.returncode == 0, result.stderr
    server = PostgresServer("health-standby", datadir, bindir=primary.bindir)
    server.start()
    try:
        deadline = time.monotonic() + 30
        with psycopg.connect(primary.dsn(), autocommit=True) as conn:
            while not conn.execute(
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
            ).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, "the standby never started streaming"
                time.sleep(0.1)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip(reason="redis-server is not installed (Debian package `redis-server`)")
    server = RedisServer(workdir / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on an emptied database with fresh statistics and no memory limit."""
    client = redis_health.open_client(redis_server.url)
    client.flushdb()
    client.config_resetstat()
    client.config_set("maxmemory", 0)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def prometheus() -> Iterator[Any]:
    if not prometheus_available():
        pytest.skip(reason="Debian's `prometheus` package is not installed (./bootstrap test installs it)")
    with prometheus_scraping_exporter() as run:
        yield run
