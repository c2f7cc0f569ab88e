"""The sandbox products as targets: databases, SARK's Redis, HTTP(S) services, Prometheus, Sovra's backups.

:class:`ProductFleet` is owned by :class:`drills.local.LocalEnvironment`; it
names every product target the packs use (``features/packs/*/drillbook.example.toml``
lists the same names):

========================  ==========  ==========================================================
target                    kind        what
========================  ==========  ==========================================================
``sentrascan``            postgres    ``packs`` database, schema ``sentrascan``
``sark``                  postgres    ``packs`` database, schema ``sark``
``scrydon``               postgres    ``packs`` database, schema ``scrydon``
``sovra``                 postgres    ``packs`` database, schema ``sovra``
``aureus``                postgres    the sandbox product database (its ``signatures``)
``sark-redis``            redis       database 1 of the sandbox redis-server
``sark-api``              http, tls   HTTPS: ``/health``, ``/health/detailed``, ``/metrics``
``sentrascan-api``        http        HTTP: ``/api/v1/health``, ``/api/v1/scans``, ``/metrics``
``aureus-api``            http, tls   HTTPS: ``/health``, ``/metrics``
``sovra-api``             http, tls   HTTPS: ``/health``, ``/v1/edge-nodes``, ``/v1/federation``,
                                      ``/metrics``
``sovra-edge``            http, tls   HTTPS: an edge node's listener (``/health``)
``sovra-prometheus``,     prometheus  one Prometheus scraping every service (launched at start,
                                      awaited on first use)
``sark-prometheus``,
``aureus-prometheus``
``sovra-backups``         store       directory of nightly ``pg_dump -Fc -n sovra`` files at 03:00
========================  ==========  ==========================================================
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from checks.errors import EnvironmentError_

from ..processes import stop_each
from ..targets import HttpTarget, PostgresTarget, PrometheusTarget, RedisTarget, Role, StoreSpec, TlsTarget
from . import products
from .services import (
    Counter,
    ProductService,
    PrometheusServer,
    Route,
    SandboxCA,
    ScrapeJob,
    exposition,
)

POSTGRES = ("sentrascan", "sark", "scrydon", "sovra", "aureus")
REDIS = ("sark-redis",)
HTTP = ("sark-api", "sentrascan-api", "aureus-api", "sovra-api", "sovra-edge")
TLS = ("sark-api", "aureus-api", "sovra-api", "sovra-edge")
PROMETHEUS = ("sovra-prometheus", "sark-prometheus", "aureus-prometheus")
STORES = ("sovra-backups",)

SOVRA_BACKUP_PATTERN = "sovra-backup-%Y%m%d-%H%M.dump"
SOVRA_BACKUP_DAYS = 14
_AUREUS_SERVICES = ("bridge", "aureus-os", "openclaw")

# Two of SARK's documented alerts (its alert table names the rest without expressions).
ALERT_RULES = """groups:
  - name: sark
    rules:
      - alert: APIDown
        expr: up{job="sark-api"} == 0
        labels: {severity: P0}
      - alert: HighErrorRate
        expr: >-
          sum(rate(http_requests_total{job="sark-api",status=~"5.*"}[1m]))
          / sum(rate(http_requests_total{job="sark-api"}[1m])) > 0.05
        labels: {severity: P1}
"""

_GREEN_LATENCY = {0.005: 0.20, 0.01: 0.45, 0.025: 0.75, 0.05: 0.93, 0.1: 0.985, 0.25: 0.998, 0.5: 0.9995,
                  1.0: 1.0}
_SLOW_LATENCY = {0.005: 0.02, 0.01: 0.05, 0.025: 0.15, 0.05: 0.35, 0.1: 0.6, 0.25: 0.96, 0.5: 0.99, 1.0: 1.0}


class ProductFleet:
    """Every product's services and data in one sandbox; :meth:`stop` ends them all."""

    def __init__(self, workdir: Path, *, now: datetime, anchor: datetime, canary: bool) -> None:
        self.workdir = workdir
        self.now = now
        self.anchor = anchor
        self.canary = canary
        self.started = time.monotonic()
        self.ca: SandboxCA | None = None
        self.services: dict[str, ProductService] = {}
        self.prometheus_server: PrometheusServer | None = None
        self.clock: products.ProductClock | None = None
        self.seeded: products.SeedReport | None = None
        self.cluster_dsn: str | None = None
        self.bindir: Path | None = None
        self._lock = threading.Lock()
        self._sovra_store: Path | None = None
        self.redis_url: str | None = None
        self._seeding: threading.Thread | None = None
        self._seed_error: Exception | None = None
        self._stopping = threading.Event()
        self._prometheus_error: EnvironmentError_ | None = None
        self._prometheus_ready = False
        self._prometheus_started = 0.0
        self.timings: dict[str, float] = {}

    # -- start ---------------------------------------------------------------------------------------

    def start_services(self, *, prometheus: bool = True) -> None:
        """The CA and every product's HTTP(S) service (a few milliseconds); Prometheus unless told not to.

        The local sandbox launches Prometheus itself once its servers are up
        (:meth:`launch_prometheus`), so that its start does not compete with theirs.
        """
        self.ca = SandboxCA(self.workdir / "tls", now=self.now)
        certs = {name: self.ca.issue(name) for name in ("sark-api", "aureus-api", "sovra-api")}
        certs["sovra-edge"] = (self.ca.issue("sovra-edge", valid_from=timedelta(days=367),
                                             valid_for=timedelta(days=365)) if self.canary
                               else self.ca.issue("sovra-edge", valid_from=timedelta(days=20),
                                                  valid_for=timedelta(days=90)))
        routes: dict[str, dict[str, Route]] = {
            "sark-api": self._sark_routes(),
            "sentrascan-api": self._sentrascan_routes(),
            "aureus-api": self._aureus_routes(),
            "sovra-api": self._sovra_routes(),
            "sovra-edge": {"/health": lambda _q: (200, {"status": "healthy", "node": "edge-eu-west-3"})},
        }
        for name in HTTP:
            service = ProductService(name, routes[name], cert=certs.get(name))
            self.services[name] = service
            service.start()
        if prometheus:
            self.launch_prometheus()

    def launch_prometheus(self) -> None:
        """Spawn Prometheus now, wait for it on first use: it scrapes nothing for its first ~5 s.

        (Its scrape manager applies new targets on a 5-second tick, and 2.42 has no
        flag to shorten it; launched here, the wait overlaps the run's first scenarios.)
        A missing binary is remembered and reported when a pack asks for Prometheus.
        """
        self._prometheus_started = time.monotonic()
        jobs = [ScrapeJob(name, self.services[name].port, self.services[name].url.startswith("https"))
                for name in ("sark-api", "sentrascan-api", "sovra-api")]
        jobs += [ScrapeJob(f"aureus-{service}", self.services["aureus-api"].port, True)
                 for service in _AUREUS_SERVICES]
        try:
            server = PrometheusServer(self.workdir / "prometheus", jobs, rules=ALERT_RULES,
                                      ca_file=self.ca.ca_file if self.ca else None)
            server.start()
        except EnvironmentError_ as exc:
            self._prometheus_error = exc
            return
        self.prometheus_server = server

    def begin_seeding(self, cluster_dsn: str, bindir: Path, redis_url: str) -> None:
        """Create and fill the ``packs`` database and SARK's Redis keys in a thread; then start the clock.

        The sandbox's start does not wait for it (≈0.3 s on two cores): the first
        product target asked for does (:meth:`ready`), so runs without packs never pay it.
        """
        self.cluster_dsn = cluster_dsn
        self.bindir = bindir
        self.redis_url = redis_url
        self._seeding = threading.Thread(target=self._seed, name="sandbox-products-seed", daemon=True)
        self._seeding.start()

    def seed_database(self, cluster_dsn: str, bindir: Path) -> products.SeedReport:
        """Create and fill the ``packs`` database now (synchronously), then start the products' clock."""
        self.cluster_dsn = cluster_dsn
        self.bindir = bindir
        self.seeded = products.create_and_seed(cluster_dsn, anchor=self.anchor, now=self.now,
                                               canary=self.canary)
        self.clock = products.ProductClock(cluster_dsn, started_at=self.now, canary=self.canary)
        self.clock.start()
        return self.seeded

    def seed_redis(self, url: str) -> dict[str, int]:
        """SARK's Redis keys now (synchronously), in database 1 of the Redis at ``url``."""
        self.redis_url = url
        return products.seed_sark_redis(url, now=self.now, anchor=self.anchor, canary=self.canary)

    def _seed(self) -> None:
        started = time.monotonic()
        try:
            assert self.cluster_dsn is not None and self.redis_url is not None
            self.seeded = products.create_and_seed(self.cluster_dsn, anchor=self.anchor, now=self.now,
                                                   canary=self.canary)
            products.seed_sark_redis(self.redis_url, now=self.now, anchor=self.anchor, canary=self.canary)
            if not self._stopping.is_set():
                self.clock = products.ProductClock(self.cluster_dsn, started_at=self.now, canary=self.canary)
                self.clock.start()
        except Exception as exc:  # noqa: BLE001 - handed to whoever asks for a product target
            self._seed_error = exc
        finally:
            self.timings["products_seed"] = round(time.monotonic() - started, 3)

    def ready(self, deadline_s: float = 60.0) -> None:
        """Wait until the products' data is seeded; raise what went wrong if it failed."""
        if self._seeding is None:
            if self.seeded is not None:  # seeded synchronously (seed_database / seed_redis)
                return
            raise EnvironmentError_("the sandbox products' data was never seeded")
        self._seeding.join(deadline_s)
        if self._seeding.is_alive():
            raise EnvironmentError_(f"seeding the sandbox products' data took over {deadline_s:g} s",
                                    hint="the machine may be overloaded")
        if self._seed_error is not None:
            raise EnvironmentError_(f"seeding the sandbox products' data failed: {self._seed_error}",
                                    hint="the subject PostgreSQL or Redis misbehaved; see their logs")

    # -- routes ----------------------------------------------------------------------------------------

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _sark_routes(self) -> dict[str, Route]:
        siem = "unhealthy" if self.canary else "healthy"

        def detailed(_query: str) -> tuple[int, Any]:
            return 200, {
                "status": "degraded" if self.canary else "healthy", "version": "1.0.0",
                "timestamp": _iso_now(),
                "components": {"database": "healthy", "redis": "healthy", "opa": "healthy", "siem": siem},
                "metrics": {"active_users": 1250, "registered_servers": 800, "requests_per_minute": 4800},
            }

        errors = 5.0 if self.canary else 0.02

        def metrics(_query: str) -> tuple[int, Any]:
            return 200, exposition(counters=[
                Counter("http_requests_total", {"status": "200"}, 80.0),
                Counter("http_requests_total", {"status": "404"}, 0.5),
                Counter("http_requests_total", {"status": "500"}, errors),
            ], gauges=[("sark_siem_queue_depth", {}, 12_500 if self.canary else 120)],
                histogram=None, elapsed_s=self._elapsed())

        return {"/health": lambda _q: (200, {"status": "healthy"}), "/health/detailed": detailed,
                "/metrics": metrics}

    def _sentrascan_routes(self) -> dict[str, Route]:
        def health(_query: str) -> tuple[int, Any]:
            return 200, {"status": "degraded" if self.canary else "ok"}

        def metrics(_query: str) -> tuple[int, Any]:
            return 200, exposition(counters=[Counter("sentrascan_scans_total", {"result": "passed"}, 0.02),
                                             Counter("sentrascan_scans_total", {"result": "failed"}, 0.003)],
                                   gauges=[], histogram=None, elapsed_s=self._elapsed())

        return {"/api/v1/health": health, "/metrics": metrics}

    def _aureus_routes(self) -> dict[str, Route]:
        errors = 0.03 if self.canary else 0.002

        def health(_query: str) -> tuple[int, Any]:
            if self.canary:
                return 503, {"status": "unavailable", "services": {"bridge": "down"}}
            return 200, {"status": "ok", "services": dict.fromkeys(_AUREUS_SERVICES, "up")}

        def metrics(_query: str) -> tuple[int, Any]:
            counters = []
            for service in _AUREUS_SERVICES:
                counters.append(Counter("http_requests_total", {"service": service, "status": "200"},
                                        30.0 * (1 - errors)))
                counters.append(Counter("http_requests_total", {"service": service, "status": "500"},
                                        30.0 * errors))
            return 200, exposition(counters=counters, gauges=[], histogram=None, elapsed_s=self._elapsed())

        return {"/health": health, "/metrics": metrics}

    def _sovra_routes(self) -> dict[str, Route]:
        stale = products.EDGE_NODES[2]

        def heartbeat_age(node: str) -> float:
            if self.canary and node == stale:
                return 900.0 + self._elapsed()
            return round(self._elapsed() % products.EDGE_HEARTBEAT_EVERY_S, 3)

        def health(_query: str) -> tuple[int, Any]:
            return 200, {"status": "healthy", "version": "0.9.2",
                         "components": {"api": {"status": "healthy"}, "database": {"status": "healthy"},
                                        "vault": {"status": "healthy"}, "federation": {"status": "healthy"}}}

        def edges(_query: str) -> tuple[int, Any]:
            return 200, {"nodes": [
                {"name": node, "status": "offline" if heartbeat_age(node) > 60 else "online",
                 "last_heartbeat_seconds": heartbeat_age(node), "vault_sealed": False}
                for node in products.EDGE_NODES]}

        def federation(_query: str) -> tuple[int, Any]:
            return 200, {"federations": [{"partner": p, "status": "connected"}
                                         for p in products.FEDERATION_PARTNERS]}

        def metrics(_query: str) -> tuple[int, Any]:
            counters = [Counter("sovra_api_requests_total", {"code": "200"}, 50.0),
                        Counter("sovra_api_requests_total", {"code": "500"}, 1.0 if self.canary else 0.005),
                        Counter("sovra_policy_evaluations_total", {}, 35.0),
                        Counter("sovra_audit_events_total", {}, 12.0)]
            gauges: list[tuple[str, dict[str, str], float]] = [
                ("sovra_federation_connections", {}, len(products.FEDERATION_PARTNERS))]
            for node in products.EDGE_NODES:
                gauges += [("vault_core_unsealed", {"node": node}, 1),
                           ("vault_runtime_alloc_bytes", {"node": node}, 48_000_000),
                           ("sovra_edge_heartbeat_seconds", {"node": node}, heartbeat_age(node))]
            gauges.append(("sovra_audit_delivery_lag_seconds", {}, 14.0))
            shares = _SLOW_LATENCY if self.canary else _GREEN_LATENCY
            total = 51.0 if self.canary else 50.005
            return 200, exposition(counters=counters, gauges=gauges,
                                   histogram=("sovra_api_request_duration_seconds", total, shares),
                                   elapsed_s=self._elapsed())

        return {"/health": health, "/v1/edge-nodes": edges, "/v1/federation": federation, "/metrics": metrics}

    # -- targets ---------------------------------------------------------------------------------------

    def postgres(self, name: str, product_dsn: str) -> PostgresTarget:
        if name == "aureus":
            return PostgresTarget(name=name, dsn=product_dsn, role=Role.SUBJECT)
        self.ready()
        assert self.cluster_dsn is not None
        return PostgresTarget(name=name, dsn=products.schema_dsn(self.cluster_dsn, name), role=Role.SUBJECT)

    def redis(self, name: str, url: str) -> RedisTarget:
        self.ready()
        return RedisTarget(name=name, url=url.rsplit("/", 1)[0] + f"/{products.SARK_REDIS_DB}",
                           role=Role.SUBJECT)

    def http(self, name: str) -> HttpTarget:
        service = self.services[name]
        ca = self.ca.ca_file if self.ca is not None and service.url.startswith("https") else None
        return HttpTarget(name=name, url=service.url, ca_file=ca, timeout_s=5.0)

    def tls(self, name: str) -> TlsTarget:
        service = self.services[name]
        return TlsTarget(name=name, host="localhost", port=service.port,
                         ca_file=self.ca.ca_file if self.ca is not None else None)

    def prometheus(self, name: str) -> PrometheusTarget:
        """The one sandbox Prometheus, started (and scraped twice) on first use."""
        with self._lock:
            if self._prometheus_error is not None:
                raise self._prometheus_error
            server = self.prometheus_server
            if server is None:
                raise EnvironmentError_("the sandbox Prometheus was not launched")
            if not self._prometheus_ready:
                started = time.monotonic()
                server.wait_ready()
                self._prometheus_ready = True
                self.timings["prometheus_wait"] = round(time.monotonic() - started, 3)
                self.timings["prometheus_ready_after_launch"] = round(
                    time.monotonic() - self._prometheus_started, 3)
        return PrometheusTarget(name=name, url=server.url, timeout_s=10.0)

    def store(self, name: str) -> StoreSpec:
        """Sovra's nightly backups: made on first use from a ``pg_dump -Fc -n sovra`` of the live schema."""
        self.ready()
        with self._lock:
            if self._sovra_store is None:
                self._sovra_store = self._sovra_backups()
        return StoreSpec(name=name, url=str(self._sovra_store), key_pattern=SOVRA_BACKUP_PATTERN)

    def _sovra_backups(self) -> Path:
        if self.cluster_dsn is None or self.bindir is None:
            raise EnvironmentError_("the sandbox products' database is not seeded yet")
        directory = self.workdir / "sovra-backups"
        directory.mkdir(parents=True, exist_ok=True)
        dump = self.workdir / "sovra.dump"
        base = self.cluster_dsn.rsplit("/", 1)[0]
        result = subprocess.run([str(self.bindir / "pg_dump"), "-Fc", "-n", "sovra", "-f", str(dump),
                                 "-d", f"{base}/{products.PACKS_DB}"], capture_output=True, text=True,
                                check=False)
        if result.returncode != 0:
            raise EnvironmentError_(f"pg_dump of the sandbox's sovra schema failed: {result.stderr.strip()}")
        data = dump.read_bytes()
        dump.unlink()
        # The newest fire time whose dump (written a few minutes after 03:00) already exists.
        last = self.now.replace(hour=3, minute=0, second=0, microsecond=0)
        if last + timedelta(minutes=5) > self.now:
            last -= timedelta(days=1)
        for days in range(SOVRA_BACKUP_DAYS):
            fire = last - timedelta(days=days)
            if self.canary and days == 1:
                continue  # the night before last, the backup job did not run
            taken = fire + timedelta(minutes=2, seconds=days * 7 % 50)
            path = directory / taken.strftime(SOVRA_BACKUP_PATTERN)
            path.write_bytes(data)
            os.utime(path, (taken.timestamp(), taken.timestamp()))
        return directory

    # -- the rest --------------------------------------------------------------------------------------

    def details(self) -> dict[str, str]:
        found: dict[str, str] = {}
        if self.cluster_dsn is not None:
            found["postgres.packs"] = f"{self.cluster_dsn.rsplit('/', 1)[0]}/{products.PACKS_DB}"
        if self.redis_url is not None:
            found["redis.sark-redis"] = f"{self.redis_url.rsplit('/', 1)[0]}/{products.SARK_REDIS_DB}"
        for name, service in self.services.items():
            found[f"http.{name}"] = service.url
        if self.ca is not None:
            found["tls.ca_file"] = str(self.ca.ca_file)
        if self.prometheus_server is not None:
            found["prometheus"] = self.prometheus_server.url
        elif self._prometheus_error is not None:
            found["prometheus"] = f"not available: {self._prometheus_error.message}"
        found["canary"] = str(self.canary).lower()
        return found

    def pids(self) -> list[tuple[str, int]]:
        server = self.prometheus_server
        return [(server.label, server.pid)] if server is not None and server.pid is not None else []

    def running(self) -> list[str]:
        found = [service.label for service in self.services.values() if service.running]
        if self.clock is not None and self.clock.running:
            found.append("the sandbox products' clock thread")
        if self._seeding is not None and self._seeding.is_alive():
            found.append("the sandbox products' seeding thread")
        return found

    def stop(self) -> None:
        """Stop the seeding, the clock, Prometheus and every service; each independently of the others."""
        self._stopping.set()
        if self._seeding is not None:
            self._seeding.join(30)  # it writes to the subject cluster, which stops after this
        stop_each([self.clock.stop if self.clock else None,
                   self.prometheus_server.stop if self.prometheus_server else None,
                   *[service.stop for service in self.services.values()]])


def _iso_now() -> str:
    from datetime import UTC

    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
