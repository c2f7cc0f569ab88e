"""The ``local`` environment: the embedded sandbox on loopback (ARCHITECTURE.md, Environments).

:meth:`LocalEnvironment.start` brings up, from local binaries:

- a **subject** PostgreSQL cluster holding the sandbox product (database ``product``),
- a separate **scratch** PostgreSQL cluster for drills (:class:`LocalScratch`),
- ``redis-server`` without persistence,
- moto's S3 server in-process, holding the product's nightly backups,
- a directory store with the SentraScan-style plain dumps,
- the ``base-backups`` store: pg_basebackup tars and their WAL archive (a copy per run).

The product and its 35-day backup history are built once a day and cached
(:mod:`drills.sandbox.history`); a warm start copies a data dir, starts the
servers and uploads the cached files. Everything lives in one temp dir that
:meth:`LocalEnvironment.close` removes; ``close`` is idempotent, runs at
interpreter exit, and a SIGTERM is turned into ``SystemExit`` so ``finally``
blocks (and so cleanup) still run. Against ``kill -9`` the temp dir and every
server are recorded (:mod:`drills.reaper`) so that the next run reaps them.
"""

from __future__ import annotations

import atexit
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import redis
from botocore.config import Config as BotoConfig

from checks.errors import ConfigError

from . import pgtools, reaper
from .processes import (
    S3_ACCESS_KEY_ID,
    S3_REGION,
    S3_SECRET_ACCESS_KEY,
    PostgresServer,
    RedisServer,
    S3Server,
    copy_tree,
    stop_each,
    template_datadir,
)
from .sandbox import barman_location, fleet, history, pgbackrest_repo, provision, vault
from .sandbox.history import SandboxProduct
from .sandbox.tls_proxy import TlsProxy
from .targets import (
    Environment,
    PostgresTarget,
    RedisTarget,
    Role,
    ScratchPostgres,
    StoreSpec,
)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    """The default progress callback: say nothing."""


def _make_workdir(prefix: str, parent: Path | None = None) -> tuple[Path, reaper.Record]:
    """A private temp dir the PostgreSQL server user can traverse (but not list), recorded."""
    path, record = reaper.make_tempdir(prefix, parent)
    path.chmod(0o711)
    return path, record


class _ProcessRecord:
    """A started process identified by pid *and* start, so a reused pid is not mistaken for it."""

    def __init__(self, label: str, pid: int) -> None:
        self.label = label
        self.pid = pid
        self.identity = reaper.ProcessId.of(pid)

    def still_running(self) -> bool:
        return self.identity is not None and self.identity.live() is not None


class _Cleanup:
    """Idempotent close at interpreter exit and on SIGTERM, shared by the local providers."""

    def __init__(self, workdir: Path, record: reaper.Record) -> None:
        self.workdir = workdir
        # What a later run reaps if this one is killed before close() (drills/reaper.py).
        self._run_record = record
        self._closed = False
        self._lock = threading.Lock()
        self._records: list[_ProcessRecord] = []
        self._sigterm = provision.SigtermAsExit()
        atexit.register(self.close)
        self._sigterm.install()

    def _remember(self, label: str, pid: int | None) -> None:
        if pid is not None:
            self._records.append(_ProcessRecord(label, pid))
            self._run_record.add_server(label, pid, anchor=self.workdir)

    def close(self) -> None:
        """Stop everything and remove the temp dir; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._stop_all()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._release_record()
            atexit.unregister(self.close)
            self._sigterm.restore()

    def _release_record(self) -> None:
        # Kept when something survived close(): then the next run reaps it.
        if not self.workdir.exists() and not any(record.still_running() for record in self._records):
            self._run_record.release()

    def _stop_all(self) -> None:
        raise NotImplementedError

    def leftovers(self) -> list[str]:
        """What this provider started that is still running or on disk (empty after close)."""
        found = [f"{record.label} (pid {record.pid}) is still running"
                 for record in self._records if record.still_running()]
        if self.workdir.exists():
            found.append(f"temp dir {self.workdir} still exists")
        return found


class LocalScratch(_Cleanup):
    """A throwaway PostgreSQL cluster handing out fresh, empty databases (``ScratchPostgres``)."""

    def __init__(self, server: PostgresServer, workdir: Path, record: reaper.Record, *,
                 owns_workdir: bool) -> None:
        # A scratch started inside a LocalEnvironment shares (and leaves removal of) its temp dir
        # and its run record.
        super().__init__(workdir, record)
        self.server = server
        self.bindir: Path = server.bindir
        self._owns_workdir = owns_workdir
        self._databases = provision.ScratchDatabases(server.dsn, port=server.port, what="scratch cluster")
        self._remember(server.label, server.pid)
        if not owns_workdir:
            atexit.unregister(self.close)

    @classmethod
    def start(cls, *, cache_dir: Path | None = None, progress: Progress | None = None,
              bindir: Path | None = None) -> LocalScratch:
        """Start a standalone scratch cluster in its own temp dir (for the ``live`` environment)."""
        say = progress or _quiet
        workdir, record = _make_workdir("drillbook-scratch-")
        server: PostgresServer | None = None
        try:
            server = cls.launch(workdir, cache_dir=cache_dir or history.default_cache_dir(),
                                bindir=bindir or pgtools.bindir())
            if server.pid is not None:
                record.add_server(server.label, server.pid, anchor=workdir)
            say("starting PostgreSQL (scratch)")
            server.wait_ready()
        except BaseException:
            if server is not None:
                server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
            record.release()
            raise
        return cls(server, workdir, record, owns_workdir=True)

    @staticmethod
    def launch(workdir: Path, *, cache_dir: Path, bindir: Path) -> PostgresServer:
        """Create the scratch data dir from the cached template and spawn its postmaster."""
        template = template_datadir(cache_dir, bindir=bindir, workdir=workdir)
        server = PostgresServer("scratch", workdir / "scratch-pgdata", bindir=bindir)
        server.init(template=template)
        server.start(wait=False)
        return server

    def fresh_database(self, purpose: str) -> PostgresTarget:
        """An empty database of this cluster, scratch by construction."""
        return self._databases.fresh(purpose)

    def drop(self, target: PostgresTarget) -> None:
        """Drop a database this cluster handed out, and the roles made for it; any other is refused."""
        self._databases.drop(target)

    def create_roles(self, target: PostgresTarget, specs: Sequence[provision.RoleRequest]) -> list[str]:
        """A migration prelude's roles, made by the cluster's admin, dropped with ``target``."""
        return self._databases.create_roles(target, specs)

    def databases(self) -> list[str]:
        """Databases handed out and not dropped yet."""
        return self._databases.names()

    def close(self) -> None:
        """Stop the scratch cluster; its temp dir is removed when this scratch owns it."""
        if not self._owns_workdir:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
            self._stop_all()
            return
        super().close()

    def _stop_all(self) -> None:
        self.server.stop()
        self._databases.forget_all()

    def leftovers(self) -> list[str]:
        found = super().leftovers()
        if not self._owns_workdir:
            found = [item for item in found if not item.startswith("temp dir")]
        return found


class LocalEnvironment(provision.ProductServices, _Cleanup):
    """The embedded sandbox: real servers on loopback seeded with the sandbox product."""

    name = "local"
    where = "the local sandbox"

    POSTGRES = provision.POSTGRES_NAMES
    REDIS = provision.REDIS_NAMES
    STORES = provision.STORE_NAMES

    def __init__(self, workdir: Path, record: reaper.Record, cache_dir: Path) -> None:
        super().__init__(workdir, record)
        self.cache_dir = cache_dir
        self.subject: PostgresServer | None = None
        self.scratch: LocalScratch | None = None
        self.redis_server: RedisServer | None = None
        self.s3: S3Server | None = None
        self.s3_tls: TlsProxy | None = None  # pgBackRest speaks only HTTPS to S3
        self.s3_ca = workdir / "s3-tls" / "sandbox-ca.pem"
        self.product: SandboxProduct | None = None
        self.directory_store = workdir / "directory-store"
        self.physical_store = workdir / "physical-store"
        self.timings: dict[str, float] = {}
        self.cache_hit = False
        # The five documented products' data, services and Prometheus (drills/sandbox/fleet.py).
        self.products: fleet.ProductFleet | None = None
        self.canary = False

    @classmethod
    def start(
        cls,
        *,
        cache_dir: Path | None = None,
        progress: Progress | None = None,
        now: datetime | None = None,
        bindir: Path | None = None,
        canary: bool = False,
    ) -> LocalEnvironment:
        """Start every sandbox server and load the product; on any failure, leave nothing behind.

        ``now`` (default: the wall clock) fixes the anchor day of the product
        and its backup history; ``bindir`` defaults to :func:`drills.pgtools.bindir`.
        ``canary`` seeds the products' failing variants (``drillbook run --canary``).
        """
        say = progress or _quiet
        started = time.monotonic()
        env = cls(*_make_workdir("drillbook-local-"), cache_dir or history.default_cache_dir())
        env.canary = canary
        try:
            env._start(now or datetime.now(UTC), say, bindir or pgtools.bindir())
        except BaseException:
            env.close()
            raise
        env.timings["total"] = round(time.monotonic() - started, 3)
        return env

    def _start(self, now: datetime, say: Progress, bindir: Path) -> None:
        mark = time.monotonic()
        say(f"preparing the sandbox product (cache: {self.cache_dir})")
        self.product = history.ensure_product(self.cache_dir, now=now, bindir=bindir,
                                              workdir=self.workdir, progress=say)
        self.cache_hit = self.product.cache_hit
        self.products = fleet.ProductFleet(self.workdir / "products", now=now,
                                           anchor=self.product.anchor, canary=self.canary)
        self.products.start_services(prometheus=False)
        mark = self._lap("product", mark)

        # S3 comes up and takes its uploads in a thread while the clusters are copied and
        # started: the two halves take about as long as each other on a warm start.
        say(f"starting S3 (moto) and loading {len(self.product.s3_files())} backups into it")
        self.s3 = S3Server()
        # The scratch cluster is copied and launched in a worker too: the two data-dir copies
        # are the bulk of a warm start and overlap well.
        with ThreadPoolExecutor(max_workers=2) as pool:
            s3_loaded = pool.submit(self._start_s3, self.s3, self.product)
            say("starting PostgreSQL (scratch)")
            scratch_launched = pool.submit(self._launch_scratch, bindir)
            say("starting PostgreSQL (subject)")
            self.subject = PostgresServer("subject", self.workdir / "subject-pgdata", bindir=bindir)
            self.subject.init(template=self.product.pgdata)
            self.subject.start(wait=False)
            self._remember(self.subject.label, self.subject.pid)
            say("starting redis-server")
            self.redis_server = RedisServer(self.workdir / "redis")
            self.redis_server.start(wait=False)
            self._remember(self.redis_server.label, self.redis_server.pid)
            copy_tree(self.product.directory, self.directory_store)
            provision.copy_physical_store(self.product, self.physical_store, canary=self.canary)
            self.subject.wait_ready()
            scratch_launched.result().wait_ready()
            self.redis_server.wait_ready()
            self._seed_redis()
            mark = self._lap("postgres_redis", mark)
            s3_loaded.result()
        self._lap("s3_wait", mark)
        # Started last, so they do not compete with the S3 upload for two cores; the start waits
        # for neither: the products' data is seeded in a thread (≈0.3 s) and Prometheus scrapes
        # nothing for ~5 s; the first product target asked for waits for what it needs.
        self.products.begin_seeding(self.subject.dsn(), bindir, self.redis_server.url)
        self.products.launch_prometheus()
        for label, pid in self.products.pids():
            self._remember(label, pid)

    def _launch_scratch(self, bindir: Path) -> PostgresServer:
        server = LocalScratch.launch(self.workdir, cache_dir=self.cache_dir, bindir=bindir)
        # Recorded at once, so close() stops it even if the main thread failed meanwhile.
        self.scratch = LocalScratch(server, self.workdir, self._run_record, owns_workdir=False)
        self._records.extend(self.scratch._records)
        return server

    def _start_s3(self, server: S3Server, product: SandboxProduct) -> None:
        started = time.monotonic()
        server.start()
        if self.products is not None and self.products.ca is not None:
            self.s3_ca = pgbackrest_repo.readable_ca(self.products.ca.ca_file, self.s3_ca.parent)
            self.s3_tls = TlsProxy(server.port, *self.products.ca.issue("s3")).start()
        self._load_s3(product)
        self.timings["s3"] = round(time.monotonic() - started, 3)

    def _lap(self, phase: str, since: float) -> float:
        now = time.monotonic()
        self.timings[phase] = round(now - since, 3)
        return now

    def _s3_client(self) -> Any:
        if self.s3 is None:
            raise ConfigError("the S3 server is not running", hint="start the environment first")
        return boto3.client(
            "s3", endpoint_url=self.s3.endpoint_url, region_name=S3_REGION,
            aws_access_key_id=S3_ACCESS_KEY_ID, aws_secret_access_key=S3_SECRET_ACCESS_KEY,
            config=BotoConfig(retries={"max_attempts": 2}),
        )

    def _load_s3(self, product: SandboxProduct) -> None:
        client = self._s3_client()

        def backdate(key: str, path: Path) -> None:
            # LastModified = when the nightly job wrote it (the file's mtime), as in a real bucket.
            if self.s3 is not None:
                self.s3.backdate(history.BUCKET, key, datetime.fromtimestamp(path.stat().st_mtime, UTC))

        try:
            provision.upload_backups(client, product, after_upload=backdate)
            pgbackrest_repo.upload(client, history.BUCKET, product.pgbackrest_repo, canary=self.canary)
            vault.fill(client, product, canary=self.canary)
            if self.canary:  # a segment missing inside the Barman archive's range
                barman_location.break_for_canary(client, history.BUCKET)
        finally:
            client.close()

    def _seed_redis(self) -> None:
        if self.redis_server is None:
            return
        client = redis.Redis.from_url(self.redis_server.url)
        try:
            provision.seed_redis(client)
        finally:
            client.close()

    # -- Environment protocol ------------------------------------------------------------

    def postgres(self, name: str) -> PostgresTarget:
        """``production``: the product database of the subject cluster (read-only); and the products'."""
        if self.subject is not None and self.products is not None and name in fleet.POSTGRES:
            return self.products.postgres(name, self.subject.dsn(history.PRODUCT_DB))
        if name not in self.POSTGRES or self.subject is None:
            raise _unknown("postgres", name, (*self.POSTGRES, *fleet.POSTGRES))
        return PostgresTarget(name=name, dsn=self.subject.dsn(history.PRODUCT_DB), role=Role.SUBJECT)

    def redis(self, name: str) -> RedisTarget:
        """``cache``: the sandbox redis-server; ``sark-redis``: SARK's database of it."""
        if self.redis_server is not None and self.products is not None and name in fleet.REDIS:
            return self.products.redis(name, self.redis_server.url)
        if name not in self.REDIS or self.redis_server is None:
            raise _unknown("redis", name, (*self.REDIS, *fleet.REDIS))
        return RedisTarget(name=name, url=self.redis_server.url, role=Role.SUBJECT)

    def store(self, name: str) -> StoreSpec:
        """The sandbox's backup stores: two S3 prefixes, a dump directory and the base backups; Sovra's."""
        if name in fleet.STORES and self.products is not None:
            return self.products.store(name)
        if name not in self.STORES or self.s3 is None:
            raise _unknown("store", name, (*self.STORES, *fleet.STORES))
        keys = {"region": S3_REGION, "access_key_id": S3_ACCESS_KEY_ID,
                "secret_access_key": S3_SECRET_ACCESS_KEY}
        if name == pgbackrest_repo.STORE and self.s3_tls is not None:
            return pgbackrest_repo.store_spec(bucket=history.BUCKET, canary=self.canary, endpoint="localhost",
                                              port=self.s3_tls.port, ca_file=self.s3_ca, **keys)
        if name == vault.STORE:
            return vault.store_spec(canary=self.canary, endpoint_url=self.s3.endpoint_url, **keys)
        return provision.store_spec(name, endpoint_url=self.s3.endpoint_url, region=S3_REGION,
                                    access_key_id=S3_ACCESS_KEY_ID, secret_access_key=S3_SECRET_ACCESS_KEY,
                                    directory=self.directory_store, physical=self.physical_store)

    def scratch_postgres(self) -> LocalScratch:
        """The scratch cluster: fresh databases per drill, dropped after."""
        if self.scratch is None:
            raise ConfigError("the local scratch cluster is not running", hint="start the environment first")
        return self.scratch

    def details(self) -> Mapping[str, str]:
        """Connection details and start-up measurements, for ``drillbook sandbox up``."""
        found: dict[str, str] = {"environment": self.name, "cache_dir": str(self.cache_dir),
                                 "cache_hit": str(self.cache_hit).lower()}
        if self.subject is not None:
            found["postgres.production"] = self.subject.dsn(history.PRODUCT_DB)
        if self.scratch is not None:
            found["postgres.scratch"] = self.scratch.server.dsn()
        if self.redis_server is not None:
            found["redis.cache"] = self.redis_server.url
        if self.s3 is not None:
            found["s3.endpoint_url"] = self.s3.endpoint_url
            found["s3.bucket"] = history.BUCKET
            found["s3.access_key_id"] = S3_ACCESS_KEY_ID  # moto's fake credential, not a secret
        if self.s3_tls is not None:
            found["s3.tls_endpoint_url"] = self.s3_tls.endpoint_url
            found["s3.ca_file"] = str(self.s3_ca)
        found["directory"] = str(self.directory_store)
        if self.product is not None:
            found.update(provision.product_details(self.product))
        if self.products is not None:
            found.update(self.products.details())
        for phase, seconds in self.timings.items():
            found[f"timing.{phase}_s"] = f"{seconds:.3f}"
        return found

    def _stop_all(self) -> None:
        # The products' clock writes to the subject cluster: it stops first.
        stop_each((self.products.stop if self.products else None,
                   self.scratch.close if self.scratch else None,
                   self.subject.stop if self.subject else None,
                   self.redis_server.stop if self.redis_server else None,
                   self.s3_tls.stop if self.s3_tls else None,
                   self.s3.stop if self.s3 else None))

    def leftovers(self) -> list[str]:
        """Processes still running or files still on disk (empty after :meth:`close`)."""
        found = super().leftovers()
        if self.scratch is not None:
            found += [f"scratch database {name} was not dropped" for name in self.scratch.databases()]
        if self.s3 is not None and self.s3.running:
            found.append(f"{self.s3.label} is still serving")
        if self.s3_tls is not None and self.s3_tls.running:
            found.append(f"{self.s3_tls.label} is still serving")
        if self.products is not None:
            found += [f"{what} is still running" for what in self.products.running()]
        return found


if TYPE_CHECKING:
    # Static proof that the providers satisfy the protocols of drills/targets.py.
    def _is_environment(env: LocalEnvironment) -> Environment:
        return env

    def _is_scratch(scratch: LocalScratch) -> ScratchPostgres:
        return scratch


def _unknown(kind: str, name: str, known: tuple[str, ...]) -> ConfigError:
    return provision.unknown_target("the local sandbox", kind, name, known)

