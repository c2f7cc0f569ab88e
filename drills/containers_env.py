"""The ``containers`` environment: the sandbox in Docker containers (ARCHITECTURE.md, Environments).

:meth:`ContainersEnvironment.start` mirrors :class:`drills.local.LocalEnvironment`
(same logical target names, same sandbox product) with testcontainers:

=================  ==========================================  ==========================
service            container                                   default image
=================  ==========================================  ==========================
subject PostgreSQL ``PostgresContainer``, database ``product``  ``postgres:15``
scratch PostgreSQL a second ``PostgresContainer``               the subject's image
Redis              ``RedisContainer``, no persistence           ``redis:7``
S3                 moto's server in a plain ``DockerContainer``  ``motoserver/moto:latest``
=================  ==========================================  ==========================

S3 is moto's server, as in the local sandbox. An S3 image whose name
contains ``minio`` is run as MinIO instead (``server /data``, port 9000,
``MINIO_ROOT_USER``/``MINIO_ROOT_PASSWORD``), in a plain ``DockerContainer``
rather than testcontainers' ``MinioContainer``, which imports the ``minio``
client package drillbook does not depend on: the stores speak S3 through boto3.
Images are overridable per target in ``drillbook.toml``
(``[containers.production] image = "registry.internal/postgres:15.8"``, see
:data:`CONFIG_TARGETS`).

Every port is published on 127.0.0.1 only (FIELD-NOTES, "A real Docker engine
on these machines"). The subject is seeded from the cached sandbox product
(:mod:`drills.sandbox.history`, built with local binaries): its newest custom
dump is restored with the local ``pg_restore`` over the published port, then
the rows between that backup and the product's build time are inserted by
:func:`drills.sandbox.seed.seed`, so the subject holds what the local
subject holds. The bucket receives the same backup files under the same
keys; the directory store is a local temp dir, as in ``local.py``. One
difference: the S3 server stamps objects with their upload time, where the
local sandbox backdates ``LastModified`` to the backup time (it reaches into
its in-process moto); the stores' key date patterns, not ``LastModified``,
date the backups here. What both sandboxes share is in
:mod:`drills.sandbox.provision`.

Validation comes before anything is touched: unknown image keys, then
``GET /_ping`` (:func:`drills.containers.docker_engine_answers`), then every
image present on the engine (pulled once when missing). Readiness is waited
for here, with a deadline, through the published port; a container that
exits meanwhile is reported with its last log lines.

Cleanup does not rely on testcontainers' reaper (Ryuk): it is disabled for
our containers, and every container started so far is removed on any start
failure, by :meth:`ContainersEnvironment.close` (idempotent), at interpreter
exit, and on SIGTERM (turned into ``SystemExit`` so ``finally`` runs).
Containers publish their ports on 127.0.0.1 only and drillbook connects to
them only there (and they carry the label :data:`OWNER_LABEL`).

``testcontainers`` and ``docker`` are imported inside :meth:`start` only;
importing this module costs neither.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import psycopg

from checks.errors import ConfigError, EnvironmentError_, ServerStartError

from .containers import DEFAULT_DOCKER_SOCKET, PING_TIMEOUT_S, docker_engine_answers
from .sandbox import provision
from .targets import (
    Environment,
    PostgresTarget,
    RedisTarget,
    Role,
    ScratchPostgres,
    StoreSpec,
)

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

    from .sandbox.fleet import ProductFleet
    from .sandbox.history import SandboxProduct

Progress = Callable[[str], None]

# Image keys accepted by ContainersEnvironment.start(images=...); "scratch" follows "postgres".
DEFAULT_IMAGES: Mapping[str, str] = {
    "postgres": "postgres:15",
    "scratch": "postgres:15",
    "redis": "redis:7",
    "s3": "motoserver/moto:latest",
}
SERVICE_LABELS: Mapping[str, str] = {
    "postgres": "subject PostgreSQL",
    "scratch": "scratch PostgreSQL",
    "redis": "Redis",
    "s3": "S3",
}
# `[containers.<target>] image = "..."` in drillbook.toml: the sandbox target names, and the service
# that serves each. Both S3 stores live in the one S3 container, so they must name the same image.
CONFIG_TARGETS: Mapping[str, str] = {
    "production": "postgres",
    "scratch": "scratch",
    "cache": "redis",
    "nightly-custom": "s3",
    "nightly-dumpall": "s3",
    "barman-cloud": "s3",
}
LOOPBACK = "127.0.0.1"
# The port each service listens on inside its container (MinIO: MINIO_PORT).
SERVICE_PORTS: Mapping[str, int] = {"postgres": 5432, "scratch": 5432, "redis": 6379, "s3": 5000}
MINIO_PORT = 9000
S3_REGION = "us-east-1"
S3_ACCESS_KEY_ID = "drillbook"
POSTGRES_USER = "postgres"
# A container label naming who started it, to find our containers with `docker ps --filter`.
OWNER_LABEL = "org.drillbook.environment"

# Readiness deadline per container, once it runs (an image's first start initialises a cluster).
READY_TIMEOUT_S = 90.0
# Docker API calls (and the inactivity limit of a pull): long enough for a slow pull, not forever.
DOCKER_API_TIMEOUT_S = 120
_PROBE_TIMEOUT_S = 2
_POLL_INTERVAL_S = 0.25
_LOG_TAIL_LINES = 20
_PORT_TAKEN = ("port is already allocated", "address already in use")


def _quiet(_: str) -> None:
    """The default progress callback: say nothing."""


def resolve_images(images: Mapping[str, str] | None) -> dict[str, str]:
    """The image per service: defaults overridden by ``images``; ``scratch`` follows ``postgres``.

    Raises :class:`ConfigError` for an unknown key or an empty image name.
    """
    given = dict(images or {})
    unknown = sorted(set(given) - set(DEFAULT_IMAGES))
    if unknown:
        raise ConfigError(
            f"unknown container image key(s): {', '.join(unknown)}; known: {', '.join(DEFAULT_IMAGES)}",
            hint="name images per service: postgres, scratch, redis, s3",
            key=unknown[0],
        )
    empty = sorted(key for key, image in given.items() if not image.strip())
    if empty:
        raise ConfigError(f"empty container image name for {', '.join(empty)}",
                          hint="give an image reference such as postgres:15", key=empty[0])
    resolved = {**DEFAULT_IMAGES, **given}
    if "postgres" in given and "scratch" not in given:
        resolved["scratch"] = given["postgres"]
    return resolved


def images_for_targets(by_target: Mapping[str, str], *, where: str = "<config>") -> dict[str, str]:
    """Images per service from images per sandbox target name (``[containers.<target>] image``).

    Raises :class:`ConfigError` for a name the containers environment does not
    serve, and when the two S3 stores name different images (one container serves both).
    """
    images: dict[str, str] = {}
    for target, image in by_target.items():
        key = CONFIG_TARGETS.get(target)
        if key is None:
            raise ConfigError(
                f"{where}: `containers.{target}`: the containers environment has no target `{target}`; "
                f"known: {', '.join(CONFIG_TARGETS)}",
                hint="nightly-plain is a directory on this machine and needs no image",
                file=where, key=f"containers.{target}",
            )
        if key in images and images[key] != image:
            raise ConfigError(
                f"{where}: `containers.{target}.image` is {image!r} but another S3 store names "
                f"{images[key]!r}: one S3 container serves nightly-custom and nightly-dumpall",
                hint="give both the same image, or only one of them",
                file=where, key=f"containers.{target}.image",
            )
        images[key] = image
    return images


def is_minio(image: str) -> bool:
    """An S3 image run as MinIO (``server /data`` on port 9000) rather than as moto's server."""
    repository = image.rsplit("@", 1)[0]
    name = repository.rsplit("/", 1)[-1].split(":", 1)[0]
    return "minio" in name.lower()


def _require_local_engine() -> None:
    """An engine on another machine publishes ports there: drillbook connects only to 127.0.0.1.

    ``DOCKER_HOST=tcp://HOST`` with HOST not a loopback name is refused at once, before
    any traffic goes to it (the network rule), rather than timing out on every container.
    """
    from urllib.parse import urlsplit

    host = os.environ.get("DOCKER_HOST") or ""
    parts = urlsplit(host)
    if parts.scheme in ("tcp", "http", "https") and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise EnvironmentError_(
            f"the containers environment needs a Docker engine on this machine: {describe_docker_host()} "
            "names another host, where the containers' ports would be published; drillbook connects to "
            "them only on 127.0.0.1",
            hint="point DOCKER_HOST at a local engine (unix:///var/run/docker.sock or tcp://127.0.0.1:2375), "
            "or use the local sandbox: `drillbook run --env local`",
            docker_host=host,
        )


def describe_docker_host() -> str:
    """Where the engine is looked for: ``DOCKER_HOST=...``, or the default socket."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        return f"DOCKER_HOST={host}"
    return f"the default socket unix://{DEFAULT_DOCKER_SOCKET} (DOCKER_HOST is not set)"


@dataclass
class _Service:
    """One container of the environment: what it runs and, once created, which container it is."""

    key: str
    image: str
    port: int
    host_port: int | None = None
    container: DockerContainer | None = None
    container_id: str | None = None
    password: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def label(self) -> str:
        return SERVICE_LABELS[self.key]


class ContainersScratch:
    """Fresh, empty databases in the scratch PostgreSQL container (``ScratchPostgres``)."""

    def __init__(self, *, port: int, password: str, bindir: Path) -> None:
        self.port = port
        self.bindir: Path = bindir
        self._password = password
        self._databases = provision.ScratchDatabases(self.dsn, port=port, what="scratch container")

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq connection string for a database of the scratch container (via 127.0.0.1)."""
        return psycopg.conninfo.make_conninfo(host=LOOPBACK, port=str(self.port), user=POSTGRES_USER,
                                              password=self._password, dbname=dbname)

    def fresh_database(self, purpose: str) -> PostgresTarget:
        """An empty database of the container, scratch by construction."""
        return self._databases.fresh(purpose)

    def drop(self, target: PostgresTarget) -> None:
        """Drop a database this scratch handed out, and the roles made for it; any other is refused."""
        self._databases.drop(target)

    def create_roles(self, target: PostgresTarget, specs: Sequence[provision.RoleRequest]) -> list[str]:
        """A migration prelude's roles, made by the container's admin, dropped with ``target``."""
        return self._databases.create_roles(target, specs)

    def databases(self) -> list[str]:
        """Databases handed out and not dropped yet."""
        return self._databases.names()

    def container_removed(self) -> None:
        """The scratch container is gone, and every database in it."""
        self._databases.forget_all()


class ContainersEnvironment(provision.ProductServices):
    """The sandbox in containers: subject and scratch PostgreSQL, Redis and S3 on 127.0.0.1."""

    name = "containers"
    where = "the containers environment"

    POSTGRES = provision.POSTGRES_NAMES
    REDIS = provision.REDIS_NAMES
    STORES = provision.STORE_NAMES

    def __init__(self, workdir: Path, cache_dir: Path, images: Mapping[str, str],
                 host_ports: Mapping[str, int] | None = None) -> None:
        self.workdir = workdir
        self.cache_dir = cache_dir
        self.directory_store = workdir / "directory-store"
        self.physical_store = workdir / "physical-store"
        self.images = dict(images)
        self.product: SandboxProduct | None = None
        self.scratch: ContainersScratch | None = None
        self.timings: dict[str, float] = {}
        self.cache_hit = False
        # The five documented products' services and Prometheus on loopback, their data in the
        # containers (drills/sandbox/fleet.py, as in the local sandbox).
        self.products: ProductFleet | None = None
        self.canary = False
        self.s3_tls: Any = None  # a drills.sandbox.tls_proxy.TlsProxy: pgBackRest speaks only HTTPS to S3
        self.s3_ca = workdir / "s3-tls" / "sandbox-ca.pem"
        ports = host_ports or {}
        self._services = {key: _Service(key, image, _service_port(key, image), host_port=ports.get(key))
                          for key, image in self.images.items()}
        self._published: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = False
        # Set when start fails or close begins: readiness waits in other workers give up at once.
        self._abort = threading.Event()
        self._sigterm = provision.SigtermAsExit()
        atexit.register(self.close)
        self._sigterm.install()

    # -- start ---------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        *,
        progress: Progress | None = None,
        images: Mapping[str, str] | None = None,
        cache_dir: Path | None = None,
        now: datetime | None = None,
        bindir: Path | None = None,
        host_ports: Mapping[str, int] | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
        canary: bool = False,
    ) -> ContainersEnvironment:
        """Start the four containers and load the sandbox product; on any failure, leave nothing behind.

        ``images`` overrides images per service (keys ``postgres``, ``scratch``,
        ``redis``, ``s3``); ``host_ports`` pins host ports per service (default:
        ports chosen by the engine, on 127.0.0.1); ``now``, ``bindir`` and
        ``canary`` are as in :meth:`drills.local.LocalEnvironment.start`.

        Raises :class:`EnvironmentError_` when no engine answers, an image is
        missing and cannot be pulled, a port is taken, or a container exits or
        never becomes ready (:class:`ServerStartError`, with its last log lines).
        """
        say = progress or _quiet
        started = time.monotonic()
        resolved = resolve_images(images)
        unknown_ports = sorted(set(host_ports or {}) - set(DEFAULT_IMAGES))
        if unknown_ports:
            raise ConfigError(f"unknown service(s) in host_ports: {', '.join(unknown_ports)}",
                              hint="pin ports per service: postgres, scratch, redis, s3",
                              key=unknown_ports[0])
        _require_local_engine()
        if not docker_engine_answers():
            raise EnvironmentError_(
                f"no Docker engine answers at {describe_docker_host()}: "
                f"GET /_ping got no `200 OK` within {PING_TIMEOUT_S} s",
                hint="start the Docker engine or point DOCKER_HOST at one (unix:///path/to/docker.sock "
                "or tcp://host:2375); without Docker, use the local sandbox: `drillbook run --env local`",
                docker_host=os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_DOCKER_SOCKET}",
            )
        _disable_reaper()
        _ensure_images(resolved, say)

        from . import pgtools
        from .sandbox import history

        workdir = Path(tempfile.mkdtemp(prefix="drillbook-containers-"))
        env = cls(workdir, cache_dir or history.default_cache_dir(), resolved, host_ports)
        env.canary = canary
        try:
            env._start(now or datetime.now(UTC), say, bindir or pgtools.bindir(), ready_timeout)
        except BaseException:
            env.close()
            raise
        env.timings["total"] = round(time.monotonic() - started, 3)
        return env

    def _start(self, now: datetime, say: Progress, bindir: Path, ready_timeout: float) -> None:
        """Containers up and answering first (a broken image fails in seconds, before any product
        build), then the product, then the four seedings side by side."""
        from .processes import copy_tree
        from .sandbox import fleet, history

        mark = time.monotonic()
        self._in_parallel({key: functools.partial(self._run_service, key, ready_timeout, say)
                           for key in self._services})
        mark = self._lap("containers", mark)

        # Local binaries build the product; the build cluster runs as the postgres user in workdir.
        self.workdir.chmod(0o711)
        say(f"preparing the sandbox product (cache: {self.cache_dir})")
        product = history.ensure_product(self.cache_dir, now=now, bindir=bindir, workdir=self.workdir,
                                         progress=say)
        self.product = product
        self.cache_hit = product.cache_hit
        self.products = fleet.ProductFleet(self.workdir / "products", now=now, anchor=product.anchor,
                                           canary=self.canary)
        self.products.start_services()
        self._start_s3_tls()
        mark = self._lap("product", mark)

        say(f"seeding the containers ({len(product.s3_files())} backups into S3)")
        ports = self._published
        products = self.products
        self._in_parallel({
            "postgres": lambda: self._restore_subject(ports["postgres"], product),
            "packs": lambda: self._seed_products(products, ports["postgres"], bindir),
            "scratch": lambda: self._ready_scratch(ports["scratch"], bindir),
            "redis": lambda: self._seed_redis(ports["redis"]),
            "s3": lambda: self._load_s3(ports["s3"], product),
            "directory": lambda: copy_tree(product.directory, self.directory_store),
            "base-backups": lambda: provision.copy_physical_store(product, self.physical_store,
                                                                  canary=self.canary),
        })
        self._lap("seed", mark)

    def _in_parallel(self, jobs: Mapping[str, Callable[[], None]]) -> None:
        """Run jobs in threads; the first failure is raised once all have stopped (the rest abandon)."""
        pool = ThreadPoolExecutor(max_workers=len(jobs))
        try:
            # Submitting is inside the try: a Ctrl-C landing while the first jobs already run must
            # abort them too, or the pool's shutdown waits for every container to become ready.
            futures = [pool.submit(job) for job in jobs.values()]
            for future in as_completed(futures):
                future.result()
        except BaseException:
            self._abort.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _run_service(self, key: str, ready_timeout: float, say: Progress) -> None:
        service = self._services[key]
        say(f"starting {service.label} ({service.image})")
        container = _new_container(service)
        with self._lock:
            if self._closed or self._abort.is_set():
                container.get_docker_client().client.close()
                raise EnvironmentError_(f"start of {service.label} abandoned: the environment is closing")
            # Recorded before it is created, so close() removes it whatever happens next.
            service.container = container
        _start_container(service, container)
        self._published[key] = self._wait_ready(service, container, ready_timeout)

    def _wait_ready(self, service: _Service, container: DockerContainer, timeout: float) -> int:
        """The published host port once the service answers; raises if it exits or the deadline passes."""
        import docker.errors

        wrapped = container.get_wrapped_container()
        probe = _probe(service)
        deadline = time.monotonic() + timeout
        while True:
            if self._abort.is_set():
                raise EnvironmentError_(f"start of {service.label} abandoned: another container failed")
            try:
                wrapped.reload()
            except docker.errors.DockerException as exc:
                raise EnvironmentError_(f"the {service.label} container vanished during start: {exc}",
                                        hint="something else removed it; check `docker events`") from None
            if wrapped.status in ("exited", "dead"):
                code = wrapped.attrs.get("State", {}).get("ExitCode")
                raise ServerStartError(
                    f"the {service.label} container ({service.image}, {_short(wrapped.id)}) exited with "
                    f"status {code} during start; its last log lines:\n{_log_tail(wrapped)}",
                    hint=f"the image must run the service on port {service.port}; "
                    "read the log lines above, or try the default image",
                    server=service.label, image=service.image,
                )
            port = _published_port(wrapped.attrs, service.port)
            if port is not None and probe(port, service.password):
                return port
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"the {service.label} container ({service.image}, {_short(wrapped.id)}) did not answer "
                    f"on 127.0.0.1:{port or '?'} within {timeout:.0f} s; its last log lines:\n"
                    f"{_log_tail(wrapped)}",
                    hint="a first start of a large image can be slow: retry, or raise ready_timeout",
                    server=service.label, image=service.image,
                )
            time.sleep(_POLL_INTERVAL_S)

    def _seed_products(self, products: ProductFleet, port: int, bindir: Path) -> None:
        """The products' ``packs`` database in the subject container (and its clock started)."""
        started = time.monotonic()
        products.seed_database(self._subject_url(port), bindir)
        self.timings["products"] = round(time.monotonic() - started, 3)

    def _subject_url(self, port: int, dbname: str = "postgres") -> str:
        """The subject container as a libpq URL: the products derive their databases' URLs from it."""
        return f"postgresql://{POSTGRES_USER}:{self._services['postgres'].password}@{LOOPBACK}:{port}/{dbname}"

    def _subject_dsn(self, port: int, dbname: str) -> str:
        return psycopg.conninfo.make_conninfo(host=LOOPBACK, port=str(port), user=POSTGRES_USER,
                                              password=self._services["postgres"].password, dbname=dbname)

    def _restore_subject(self, port: int, product: SandboxProduct) -> None:
        """Newest custom dump with the local ``pg_restore``, then the rows inserted after it."""
        from . import pgclient, pgtools
        from .sandbox import history, seed

        newest = history.newest_backup(product.anchor)
        dump = product.s3_dir / history.SARK_PREFIX / newest.strftime(history.SARK_PATTERN)
        dsn = self._subject_dsn(port, history.PRODUCT_DB)
        # The password reaches pg_restore through a private passfile, never its argv.
        with pgclient.access(dsn) as access:
            command = [pgtools.tool("pg_restore"), "--no-owner", "--no-acl", "--exit-on-error",
                       "-d", access.conninfo, str(dump)]
            result = subprocess.run(command, capture_output=True, text=True, check=False, env=access.env)
        if result.returncode != 0:
            raise EnvironmentError_(
                f"seeding the subject PostgreSQL container from {dump.name} failed: pg_restore exited "
                f"with status {result.returncode}: {result.stderr.strip()[-2000:]}",
                hint="the local pg_restore must read the product's dumps and reach the container; "
                "an older server image than the local PostgreSQL may not accept them",
            )
        if product.built_at > newest:
            seed.seed(dsn, anchor=product.anchor, since=newest, until=product.built_at)

    def _ready_scratch(self, port: int, bindir: Path) -> None:
        self.scratch = ContainersScratch(port=port, password=self._services["scratch"].password,
                                         bindir=bindir)

    def _seed_redis(self, port: int) -> None:
        import redis

        client = redis.Redis(host=LOOPBACK, port=port, password=self._services["redis"].password)
        try:
            provision.seed_redis(client)
        finally:
            client.close()
        if self.products is not None:
            self.products.seed_redis(self._redis_url())

    def _s3_client(self, port: int) -> Any:
        import boto3
        from botocore.config import Config as BotoConfig

        return boto3.session.Session().client(
            "s3", endpoint_url=f"http://{LOOPBACK}:{port}", region_name=S3_REGION,
            aws_access_key_id=S3_ACCESS_KEY_ID, aws_secret_access_key=self._services["s3"].password,
            config=BotoConfig(retries={"max_attempts": 2}, s3={"addressing_style": "path"}),
        )

    def _load_s3(self, port: int, product: SandboxProduct) -> None:
        """The product's backups into the bucket, under the same keys as in the local sandbox."""
        from .sandbox import history, pgbackrest_repo, vault

        client = self._s3_client(port)
        try:
            provision.upload_backups(client, product)
            pgbackrest_repo.upload(client, history.BUCKET, product.pgbackrest_repo, canary=self.canary)
            vault.fill(client, product, canary=self.canary)
            if self.canary:  # a segment missing inside the Barman archive's range
                from .sandbox import barman_location, history

                barman_location.break_for_canary(client, history.BUCKET)
        finally:
            client.close()

    def _start_s3_tls(self) -> None:
        """HTTPS in front of the S3 container's published port, certified by the run's sandbox CA."""
        from .sandbox import pgbackrest_repo
        from .sandbox.tls_proxy import TlsProxy

        if self.products is None or self.products.ca is None or "s3" not in self._published:
            return
        self.s3_ca = pgbackrest_repo.readable_ca(self.products.ca.ca_file, self.s3_ca.parent)
        self.s3_tls = TlsProxy(self._published["s3"], *self.products.ca.issue("s3")).start()

    def _lap(self, phase: str, since: float) -> float:
        now = time.monotonic()
        self.timings[phase] = round(now - since, 3)
        return now

    # -- Environment protocol ------------------------------------------------------------

    def postgres(self, name: str) -> PostgresTarget:
        """``production``: the product database of the subject container (read-only); and the products'."""
        from .sandbox import fleet, history

        if "postgres" in self._published and self.products is not None and name in fleet.POSTGRES:
            return self.products.postgres(name, self._subject_url(self._published["postgres"],
                                                                  history.PRODUCT_DB))
        if name not in self.POSTGRES or "postgres" not in self._published:
            raise _unknown("postgres", name, (*self.POSTGRES, *fleet.POSTGRES))
        dsn = self._subject_dsn(self._published["postgres"], history.PRODUCT_DB)
        return PostgresTarget(name=name, dsn=dsn, role=Role.SUBJECT)

    def redis(self, name: str) -> RedisTarget:
        """``cache``: the Redis container; ``sark-redis``: SARK's database of it."""
        from .sandbox import fleet

        if "redis" in self._published and self.products is not None and name in fleet.REDIS:
            return self.products.redis(name, self._redis_url())
        if name not in self.REDIS or "redis" not in self._published:
            raise _unknown("redis", name, (*self.REDIS, *fleet.REDIS))
        return RedisTarget(name=name, url=self._redis_url(), role=Role.SUBJECT)

    def _redis_url(self) -> str:
        return f"redis://:{self._services['redis'].password}@{LOOPBACK}:{self._published['redis']}/0"

    def store(self, name: str) -> StoreSpec:
        """The sandbox's backup stores: two prefixes of the S3 container's bucket and one local directory;
        Sovra's nightly dumps (a local directory)."""
        from .sandbox import fleet

        if name in fleet.STORES and self.products is not None:
            return self.products.store(name)
        if name not in self.STORES or "s3" not in self._published:
            raise _unknown("store", name, (*self.STORES, *fleet.STORES))
        from .sandbox import history, pgbackrest_repo, vault

        keys = {"region": S3_REGION, "access_key_id": S3_ACCESS_KEY_ID,
                "secret_access_key": self._services["s3"].password}
        if name == pgbackrest_repo.STORE and self.s3_tls is not None:
            from checks import redact

            # A generated secret (not moto's public "testing"): pgbackrest's messages must never show it.
            redact.register(keys["secret_access_key"])
            return pgbackrest_repo.store_spec(bucket=history.BUCKET, canary=self.canary, endpoint="localhost",
                                              port=self.s3_tls.port, ca_file=self.s3_ca, **keys)
        if name == vault.STORE:
            return vault.store_spec(canary=self.canary, endpoint_url=f"http://{LOOPBACK}:{self._published['s3']}",
                                    **keys)
        return provision.store_spec(name, endpoint_url=f"http://{LOOPBACK}:{self._published['s3']}",
                                    region=S3_REGION, access_key_id=S3_ACCESS_KEY_ID,
                                    secret_access_key=self._services["s3"].password,
                                    directory=self.directory_store, physical=self.physical_store)

    def scratch_postgres(self) -> ContainersScratch:
        """The scratch container: fresh databases per drill, dropped after."""
        if self.scratch is None:
            raise ConfigError("the scratch PostgreSQL container is not running",
                              hint="start the environment first")
        return self.scratch

    def details(self) -> Mapping[str, str]:
        """Connection details, containers and start-up measurements, for ``drillbook sandbox up``."""
        found: dict[str, str] = {"environment": self.name, "docker": describe_docker_host(),
                                 "cache_dir": str(self.cache_dir), "cache_hit": str(self.cache_hit).lower()}
        if "postgres" in self._published:
            found["postgres.production"] = self.postgres("production").dsn
        if self.scratch is not None:
            found["postgres.scratch"] = self.scratch.dsn()
        if "redis" in self._published:
            found["redis.cache"] = self._redis_url()
        if "s3" in self._published:
            from .sandbox import history

            found["s3.endpoint_url"] = f"http://{LOOPBACK}:{self._published['s3']}"
            found["s3.bucket"] = history.BUCKET
            found["s3.access_key_id"] = S3_ACCESS_KEY_ID
        found["directory"] = str(self.directory_store)
        if self.products is not None:
            found.update(self.products.details())
        for service in self._services.values():
            if service.container_id:
                found[f"container.{service.key}"] = f"{_short(service.container_id)} ({service.image})"
        if self.product is not None:
            found.update(provision.product_details(self.product))
        for phase, seconds in self.timings.items():
            found[f"timing.{phase}_s"] = f"{seconds:.3f}"
        return found

    # -- cleanup -------------------------------------------------------------------------

    def close(self) -> None:
        """Remove every container this environment created and its temp dir; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._abort.set()
        errors: list[str] = []
        try:
            if self.s3_tls is not None:
                self.s3_tls.stop()
            if self.products is not None:
                # The products' clock writes to the subject container: it stops first.
                try:
                    self.products.stop()
                except Exception as exc:  # noqa: BLE001 - reported after the containers are removed
                    errors.append(f"the sandbox products' services: {exc}")
            for service in self._services.values():
                errors.extend(_remove(service))
            if self.scratch is not None and not errors:
                self.scratch.container_removed()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
            atexit.unregister(self.close)
            self._sigterm.restore()
        if errors:
            raise EnvironmentError_(
                "could not remove every container: " + "; ".join(errors),
                hint=f"remove them by hand: docker rm -f $(docker ps -aq --filter label={OWNER_LABEL})",
            )

    def leftovers(self) -> list[str]:
        """Containers still present and files still on disk (empty after :meth:`close`).

        A container whose presence cannot be checked (the engine stopped
        answering) is listed as such: "could not tell" is not "gone".
        """
        found: list[str] = []
        if self.scratch is not None:
            found += [f"scratch database {name} was not dropped" for name in self.scratch.databases()]
        if self.products is not None:
            found += [f"{what} is still running" for what in self.products.running()]
        if self.s3_tls is not None and self.s3_tls.running:
            found.append(f"{self.s3_tls.label} is still serving")
        ids = {service.label: service.container_id for service in self._services.values()
               if service.container_id}
        if ids:
            import docker
            import docker.errors

            try:
                client = docker.from_env(timeout=10)
            except docker.errors.DockerException as exc:
                return [f"could not check containers {', '.join(_short(i) for i in ids.values())}: {exc}"]
            try:
                for label, container_id in ids.items():
                    try:
                        client.containers.get(container_id)
                    except docker.errors.NotFound:
                        continue
                    except (docker.errors.DockerException, OSError) as exc:
                        found.append(f"could not check container {_short(container_id)} ({label}): {exc}")
                        continue
                    found.append(f"container {_short(container_id)} ({label}) still exists")
            finally:
                client.close()
        if self.workdir.exists():
            found.append(f"temp dir {self.workdir} still exists")
        return found

    def container_ids(self) -> list[str]:
        """Ids of every container this environment created (kept after close, for ``leftovers``)."""
        return [service.container_id for service in self._services.values() if service.container_id]


if TYPE_CHECKING:
    # Static proof that the providers satisfy the protocols of drills/targets.py.
    def _is_environment(env: ContainersEnvironment) -> Environment:
        return env

    def _is_scratch(scratch: ContainersScratch) -> ScratchPostgres:
        return scratch


# -- Docker and testcontainers (imported here, never at module import) -----------------------


def _disable_reaper() -> None:
    """No Ryuk sidecar: we remove our containers ourselves.

    This is ``TESTCONTAINERS_RYUK_DISABLED=true`` set through testcontainers' config
    object, which caches the variable on first read: setting the variable in
    ``os.environ`` could come too late, and would leak into the caller's
    environment and every child process.
    """
    from testcontainers.core.config import testcontainers_config

    testcontainers_config.ryuk_disabled = True


def _ensure_images(images: Mapping[str, str], say: Progress) -> None:
    """Every image present on the engine, pulled once when missing; else one error naming them all.

    Done before any container is created, so a missing image leaves nothing to clean up.
    """
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=DOCKER_API_TIMEOUT_S)
    except docker.errors.DockerException as exc:
        raise EnvironmentError_(
            f"the Docker engine at {describe_docker_host()} answers /_ping but the Docker SDK "
            f"cannot talk to it: {exc}",
            hint="check the engine's API version and that DOCKER_HOST names a Docker engine",
        ) from None
    missing: dict[str, str] = {}
    try:
        # In service order (subject first), each image once.
        for image in dict.fromkeys(images.values()):
            try:
                client.images.get(image)
                continue
            except docker.errors.ImageNotFound:
                pass
            except (docker.errors.DockerException, OSError) as exc:
                missing[image] = f"inspecting it failed: {_docker_reason(exc)}"
                continue
            say(f"pulling {image} (not on the engine yet)")
            try:
                client.images.pull(image)
            except (docker.errors.DockerException, OSError) as exc:
                missing[image] = f"pulling it failed: {_docker_reason(exc)}"
    finally:
        client.close()
    if missing:
        users = {image: [SERVICE_LABELS[key] for key, named in images.items() if named == image]
                 for image in missing}
        lines = "; ".join(f"{image} (for {', '.join(users[image])}): {reason}"
                          for image, reason in missing.items())
        first = next(iter(missing))
        each = " (and likewise for each image named)" if len(missing) > 1 else ""
        raise EnvironmentError_(
            f"image(s) not available on the Docker engine at {describe_docker_host()}: {lines}",
            hint=f"provide the image to the engine: `docker pull {first}` where a registry is reachable, "
            f"or `docker load -i FILE.tar` with an image saved elsewhere "
            f"(`docker save {first} -o FILE.tar`){each}; "
            "or use an image the engine has: `image = \"...\"` for the target in the config "
            "(ContainersEnvironment.start(images={\"postgres\": ...}))",
            images=sorted(missing),
        )


def _new_container(service: _Service) -> DockerContainer:
    """The testcontainers object for a service: published on 127.0.0.1, no waiting of its own."""
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.redis import RedisContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import WaitStrategy, WaitStrategyTarget

    class _WaitedForByDrillbook(WaitStrategy):
        """Readiness is waited for by ContainersEnvironment: deadline, exit detection, published port."""

        def wait_until_ready(self, container: WaitStrategyTarget) -> None:
            return None

    class _Postgres(PostgresContainer):
        def _connect(self) -> None:
            """Skip the exec-based wait (see _WaitedForByDrillbook)."""

    container: DockerContainer
    if service.key in ("postgres", "scratch"):
        container = _Postgres(service.image, port=service.port, username=POSTGRES_USER,
                              password=service.password,
                              dbname="product" if service.key == "postgres" else "postgres", driver=None)
    elif service.key == "redis":
        container = RedisContainer(service.image, port=service.port, password=service.password)
        # No persistence, as the local redis-server.
        container.with_command(["redis-server", "--requirepass", service.password,
                                "--save", "", "--appendonly", "no"])
    elif is_minio(service.image):
        container = DockerContainer(service.image)
        container.with_command(["server", "/data", "--address", f":{service.port}"])
        container.with_env("MINIO_ROOT_USER", S3_ACCESS_KEY_ID)
        container.with_env("MINIO_ROOT_PASSWORD", service.password)
    else:
        # moto's server: its image's own command (`moto_server -H 0.0.0.0`), any credentials accepted.
        container = DockerContainer(service.image)
        container.with_env("MOTO_PORT", str(service.port))
    container.waiting_for(_WaitedForByDrillbook())
    container.with_kwargs(labels={OWNER_LABEL: "containers", "org.drillbook.service": service.key,
                                  "org.drillbook.pid": str(os.getpid())})
    # Published on loopback only; the host port is the engine's choice unless pinned.
    ports = cast("dict[str, object]", container.ports)
    ports.pop(str(service.port), None)
    ports[f"{service.port}/tcp"] = (LOOPBACK, service.host_port)
    return container


def _start_container(service: _Service, container: DockerContainer) -> None:
    """Create and start; a taken port or a refused start becomes a clear EnvironmentError_."""
    import docker.errors

    try:
        container.start()
    except docker.errors.ImageNotFound as exc:
        raise EnvironmentError_(
            f"image {service.image} for the {service.label} disappeared from the engine: "
            f"{_docker_reason(exc)}",
            hint=f"`docker pull {service.image}` or `docker load -i FILE.tar`, then retry",
            image=service.image,
        ) from None
    except docker.errors.APIError as exc:
        reason = _docker_reason(exc)
        if any(marker in reason for marker in _PORT_TAKEN):
            where = f"127.0.0.1:{service.host_port}" if service.host_port else "the port the engine chose"
            raise EnvironmentError_(
                f"cannot publish the {service.label} container's port {service.port} on {where}: "
                f"it is already in use ({reason})",
                hint="stop what holds the port, or leave the host port to the engine (no host_ports)",
                port=service.host_port,
            ) from None
        raise EnvironmentError_(f"the engine refused to start the {service.label} container "
                                f"({service.image}): {reason}",
                                hint="read the engine's message; `docker info` shows its state",
                                image=service.image) from None
    with_id = container.get_wrapped_container().id
    service.container_id = with_id


def _remove(service: _Service) -> list[str]:
    """Force-remove a service's container (and its volumes) and close its client; problems as text."""
    import docker.errors
    from testcontainers.core.exceptions import ContainerStartException

    container = service.container
    if container is None:
        return []
    if not service.container_id:
        # create() succeeded but start() failed: the container exists all the same.
        with contextlib.suppress(ContainerStartException):
            service.container_id = container.get_wrapped_container().id
    try:
        container.stop(force=True, delete_volume=True)
    except docker.errors.NotFound:
        container.get_docker_client().client.close()
    except (docker.errors.DockerException, OSError) as exc:
        container.get_docker_client().client.close()
        return [f"{service.label} ({_short(service.container_id or '?')}): {_docker_reason(exc)}"]
    return []


def _published_port(attrs: Mapping[str, Any], port: int) -> int | None:
    """Host port of ``port/tcp`` bound on 127.0.0.1, from a container's inspect data."""
    bindings = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    for binding in bindings.get(f"{port}/tcp") or []:
        if binding.get("HostIp") in (LOOPBACK, "") and binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


def _log_tail(wrapped: Any) -> str:
    try:
        logs = wrapped.logs(tail=_LOG_TAIL_LINES)
    except Exception as exc:  # noqa: BLE001 - the logs only decorate an error already being raised
        return f"  (logs unavailable: {exc})"
    text = bytes(logs).decode("utf-8", errors="replace").rstrip()
    return "\n".join(f"  {line}" for line in text.splitlines()) or "  (no output)"


def _docker_reason(exc: BaseException) -> str:
    """The engine's own message when there is one (``explanation``), else the exception text."""
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _short(container_id: str) -> str:
    return container_id[:12]


# -- readiness probes through the published port -------------------------------------------


def _postgres_answers(port: int, password: str) -> bool:
    dsn = psycopg.conninfo.make_conninfo(host=LOOPBACK, port=str(port), user=POSTGRES_USER,
                                         password=password, dbname="postgres")
    try:
        with psycopg.connect(dsn, connect_timeout=_PROBE_TIMEOUT_S, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _redis_answers(port: int, password: str) -> bool:
    import redis

    client = redis.Redis(host=LOOPBACK, port=port, password=password, socket_timeout=_PROBE_TIMEOUT_S,
                         socket_connect_timeout=_PROBE_TIMEOUT_S)
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


def _http_ok(url: str) -> bool:
    try:
        # A fixed http:// URL on loopback, not user input.
        with urllib.request.urlopen(url, timeout=_PROBE_TIMEOUT_S) as response:  # noqa: S310
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _minio_answers(port: int, _password: str) -> bool:
    return _http_ok(f"http://{LOOPBACK}:{port}/minio/health/live")


def _moto_answers(port: int, _password: str) -> bool:
    return _http_ok(f"http://{LOOPBACK}:{port}/moto-api/")


def _probe(service: _Service) -> Callable[[int, str], bool]:
    if service.key in ("postgres", "scratch"):
        return _postgres_answers
    if service.key == "redis":
        return _redis_answers
    return _minio_answers if is_minio(service.image) else _moto_answers


def _unknown(kind: str, name: str, known: tuple[str, ...]) -> ConfigError:
    return provision.unknown_target("the containers environment", kind, name, known)


def _service_port(key: str, image: str) -> int:
    """The port the service listens on inside its container."""
    if key == "s3" and is_minio(image):
        return MINIO_PORT
    return SERVICE_PORTS[key]
