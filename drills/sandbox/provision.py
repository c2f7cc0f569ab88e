"""What both sandbox providers put into their servers, and how they name it.

The ``local`` environment (:mod:`drills.local`, servers from local binaries)
and the ``containers`` one (:mod:`drills.containers_env`, the same services in
Docker containers) serve the same sandbox product under the same logical
names. What they share is here, so the two cannot drift apart: the target
names, the Redis sample data, the upload of the product's backups to the
bucket, the store specs, the bookkeeping of scratch databases, and SIGTERM
turned into ``SystemExit`` so that cleanup in ``finally`` runs.

Only the servers differ: where they run, their ports and their credentials.
"""

from __future__ import annotations

import re
import secrets
import signal
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import psycopg
from psycopg import sql

from checks import redact
from checks.errors import ConfigError, SafetyError
from checks.pitr import SEGMENT

from ..processes import copy_tree
from ..targets import HttpTarget, PostgresTarget, PrometheusTarget, Role, StoreSpec, TlsTarget
from . import barman_location, fleet, history
from .history import SandboxProduct

POSTGRES_NAMES = ("production",)
REDIS_NAMES = ("cache",)
STORE_NAMES = ("nightly-dumpall", "nightly-custom", "nightly-plain", "base-backups", "pgbackrest", "vault",
               barman_location.STORE)

# PostgreSQL identifiers are at most 63 bytes; the slug leaves room for the unique suffix.
_MAX_PURPOSE_SLUG = 30
_UPLOAD_WORKERS = 8
_REDIS_SAMPLE_KEYS = 100
_CONNECT_TIMEOUT_S = 10
# DROP ROLE of a role something still depends on (a grant in another database).
_DEPENDENT_OBJECTS = "2BP01"


def seed_redis(client: Any) -> None:
    """The sandbox's cache contents: sample session keys and one hash (``client``: a redis.Redis)."""
    pipe = client.pipeline(transaction=False)
    for i in range(1, _REDIS_SAMPLE_KEYS + 1):
        pipe.set(f"session:{i:04d}", f"account:{i}")
    pipe.hset("sandbox", mapping={"product": "drillbook sandbox", "role": "cache"})
    pipe.execute()


def upload_backups(client: Any, product: SandboxProduct, *,
                   after_upload: Callable[[str, Path], None] | None = None) -> None:
    """The product's backups into the sandbox bucket, under their keys (``client``: a boto3 S3 client).

    A bucket that exists already and is ours is fine (moto's in-process state is
    shared by every sandbox of a process). ``after_upload(key, path)`` runs after
    each object is written.
    """
    from botocore.exceptions import ClientError

    try:
        client.create_bucket(Bucket=history.BUCKET)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise

    def upload(item: tuple[str, Path]) -> None:
        key, path = item
        client.put_object(Bucket=history.BUCKET, Key=key, Body=path.read_bytes())
        if after_upload is not None:
            after_upload(key, path)

    with ThreadPoolExecutor(max_workers=_UPLOAD_WORKERS) as pool:
        list(pool.map(upload, product.s3_files()))


def store_spec(name: str, *, endpoint_url: str, access_key_id: str, secret_access_key: str,
               region: str, directory: Path, physical: Path) -> StoreSpec:
    """One of :data:`STORE_NAMES`: two prefixes of the sandbox bucket, the plain-dump directory, and the
    base backups with their WAL archive (``physical``: a :func:`copy_physical_store` copy)."""
    if name == "nightly-plain":
        return StoreSpec(name=name, url=str(directory), key_pattern=history.DIRECTORY_PATTERN)
    if name == "base-backups":
        return StoreSpec(name=name, url=str(physical / "basebackup"), key_pattern=history.BASE_PATTERN,
                         kind="basebackup", wal=str(physical / "wal"))
    if name == barman_location.STORE:  # the product's bucket, where upload_backups put its objects
        return barman_location.store_spec(bucket=history.BUCKET, endpoint_url=endpoint_url, region=region,
                                          access_key_id=access_key_id, secret_access_key=secret_access_key)
    prefix, pattern = ((history.AUREUS_PREFIX, history.AUREUS_PATTERN) if name == "nightly-dumpall"
                       else (history.SARK_PREFIX, history.SARK_PATTERN))
    return StoreSpec(
        name=name, url=f"s3://{history.BUCKET}/{prefix}", key_pattern=pattern,
        endpoint_url=endpoint_url, region=region,
        access_key_id=access_key_id, secret_access_key=secret_access_key,
        checksum_suffix=history.CHECKSUM_SUFFIX,
    )


def copy_physical_store(product: SandboxProduct, into: Path, *, canary: bool) -> None:
    """This environment's copy of the base backups and their WAL archive.

    In canary mode the segment after the newest base backup's start is missing (a gap inside the
    archive's range: the recovery must fail naming it, never promote early and pass).
    """
    into.mkdir(mode=0o755)
    copy_tree(product.base_backups, into / "basebackup")
    copy_tree(product.wal, into / "wal")
    if canary:
        starts = sorted(path.name[:24] for path in (into / "wal").glob("*.backup"))
        segments = sorted(path.name for path in (into / "wal").iterdir() if SEGMENT.fullmatch(path.name))
        after = [name for name in segments if starts and name > starts[-1]]
        if len(after) >= 2:  # never the last: a missing last segment is only the archive's end
            (into / "wal" / after[0]).unlink()


def product_details(product: SandboxProduct) -> dict[str, str]:
    """The product's dates, for ``drillbook sandbox up``."""
    return {"anchor": product.anchor.isoformat(),
            "newest_backup": history.newest_backup(product.anchor).isoformat(),
            "product_built_at": product.built_at.isoformat()}


def unknown_target(where: str, kind: str, name: str, known: tuple[str, ...]) -> ConfigError:
    """The error for a target name the sandbox does not serve (``where``: "the local sandbox", ...)."""
    return ConfigError(
        f"{where} has no {kind} target named `{name}`; known: {', '.join(known)}",
        hint="use one of the known names, or run against a config file (--config drillbook.toml)",
        key=name,
    )


class ProductServices:
    """The products' HTTP(S), TLS and Prometheus targets, served on loopback by the sandbox's fleet.

    Both sandbox environments mix this in: they set ``products`` once the fleet
    runs, and name themselves in ``where`` for errors.
    """

    products: fleet.ProductFleet | None
    where: str

    def http(self, name: str) -> HttpTarget:
        """The sandbox products' HTTP(S) services (``sark-api``, ``sovra-api``, ...)."""
        if name not in fleet.HTTP or self.products is None:
            raise unknown_target(self.where, "http", name, fleet.HTTP)
        return self.products.http(name)

    def tls(self, name: str) -> TlsTarget:
        """The sandbox products' TLS endpoints, verified against the run's sandbox CA."""
        if name not in fleet.TLS or self.products is None:
            raise unknown_target(self.where, "tls", name, fleet.TLS)
        return self.products.tls(name)

    def prometheus(self, name: str) -> PrometheusTarget:
        """The sandbox's Prometheus (Debian's binary on loopback), launched at start, awaited on first use."""
        if name not in fleet.PROMETHEUS or self.products is None:
            raise unknown_target(self.where, "prometheus", name, fleet.PROMETHEUS)
        return self.products.prometheus(name)


class RoleRequest(Protocol):
    """A role to create for a scratch database (``drills.migrations.prelude_roles.RoleSpec``)."""

    @property
    def name(self) -> str: ...

    def statement(self) -> sql.Composed: ...


class ScratchDatabases:
    """Fresh, empty databases on one scratch server, and only those dropped again.

    ``dsn(dbname)`` connects to a database of that server; ``port`` tells its
    databases from any other server's; ``what`` names the server in errors.
    """

    def __init__(self, dsn: Callable[[str], str], *, port: int, what: str) -> None:
        self._dsn = dsn
        self._port = port
        self._what = what
        self._names: set[str] = set()
        self._roles: set[str] = set()
        # Roles created for a database (a migration prelude's), dropped with it.
        self._made_for: dict[str, list[str]] = {}
        self._counter = 0

    def fresh(self, purpose: str) -> PostgresTarget:
        """An empty database owned by a role of its own, and a target that connects as that role.

        What a drill runs in the database (a backup, a migration) is untrusted, so the role
        is as small as PostgreSQL allows: no superuser (no ``COPY … TO PROGRAM``, no ``ALTER
        SYSTEM``, no ``CREATE TABLESPACE``), no CREATEDB or CREATEROLE, no membership in any
        role (``pg_execute_server_program``, ``pg_write_server_files``, …), owner of this one
        database and nothing else. Trusted extensions still install (PostgreSQL 13+).
        """
        slug = re.sub(r"[^a-z0-9]+", "_", purpose.lower()).strip("_")[:_MAX_PURPOSE_SLUG] or "drill"
        self._counter += 1
        name = f"scratch_{slug}_{self._counter}_{uuid.uuid4().hex[:6]}"
        password = secrets.token_urlsafe(24)
        redact.register(password)
        with self._admin() as conn:
            conn.execute(sql.SQL(
                "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                "NOBYPASSRLS CONNECTION LIMIT 16 PASSWORD {}"
            ).format(sql.Identifier(name), sql.Literal(password)))
            self._roles.add(name)
            try:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
                    sql.Identifier(name), sql.Identifier(name)))
                self._names.add(name)
                # Only its owner (and the admin) may connect to it.
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
            except BaseException:
                self._drop(conn, name)
                raise
        dsn = psycopg.conninfo.make_conninfo(self._dsn(name), user=name, password=password)
        return PostgresTarget(name=f"scratch:{name}", dsn=dsn, role=Role.SCRATCH,
                              created_by_drillbook=True)

    def drop(self, target: PostgresTarget) -> None:
        """Drop a database :meth:`fresh` handed out, its role and the roles made for it.

        ``WITH (FORCE)``: sessions may linger.
        """
        dbname = self._handed_out(target, "drop")
        with self._admin() as conn:
            self._drop(conn, dbname)

    def create_roles(self, target: PostgresTarget, specs: Sequence[RoleRequest]) -> list[str]:
        """Create a prelude's roles (``drills.migrations.prelude_roles``) for a database of ours.

        The statements are the specs' own safe form (NOLOGIN, no superuser-like attribute,
        members only of each other). A name that exists on the server is refused before
        anything is created: names are cluster-wide, and a role drillbook did not make is never
        touched. The roles are recorded with the database at once, so :meth:`drop` (or a failed
        creation) drops them, whatever happens next.
        """
        dbname = self._handed_out(target, "create roles for")
        names = [spec.name for spec in specs]
        with self._admin() as conn:
            existing = {row[0] for row in conn.execute(
                "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)", (names,))}
            for name in names:
                if name in existing:
                    raise SafetyError(
                        f"role {name!r} already exists on the {self._what}: drillbook creates "
                        "only new roles and never changes an existing one", role=name,
                        hint="rename the role in the prelude, or drop it from that server if it is a "
                             "leftover of yours")
            made = self._made_for.setdefault(dbname, [])
            made.extend(names)  # recorded first: a drop after a half-done creation still finds them
            try:
                with conn.transaction():
                    for spec in specs:
                        conn.execute(spec.statement())
            except BaseException:
                del made[len(made) - len(names):]
                raise
        return names

    def _handed_out(self, target: PostgresTarget, doing: str) -> str:
        """The database name of a target :meth:`fresh` handed out; any other is refused."""
        target.require_scratch()
        info = psycopg.conninfo.conninfo_to_dict(target.dsn)
        dbname = str(info.get("dbname") or "")
        if dbname not in self._names or str(info.get("port")) != str(self._port):
            raise SafetyError(
                f"refusing to {doing} `{target.name}` ({target.describe()}): "
                f"this {self._what} did not create it",
                target=target.name,
                hint="drop only databases obtained from fresh_database() of the same scratch",
            )
        return dbname

    def _drop(self, conn: psycopg.Connection[Any], name: str) -> None:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self._names.discard(name)
        if name in self._roles:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
            self._roles.discard(name)
        made = self._made_for.get(name)
        if made:
            self._drop_roles(conn, made)
            del self._made_for[name]

    def _drop_roles(self, conn: psycopg.Connection[Any], names: list[str]) -> None:
        """Drop a prelude's roles; what they own or were granted anywhere goes first.

        Their database is gone already, and with it everything in it that named them. Anything
        left elsewhere (a grant in another database) would make ``DROP ROLE`` fail, so each
        database that takes connections gets ``DROP OWNED BY`` for them first when needed.
        """
        existing = [row[0] for row in conn.execute(
            "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)", (names,))]
        if not existing:
            return
        roles = sql.SQL(", ").join(map(sql.Identifier, existing))
        try:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(roles))
        except psycopg.Error as exc:
            if exc.sqlstate != _DEPENDENT_OBJECTS:
                raise
            databases = [row[0] for row in conn.execute(
                "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn")]
            for database in databases:
                with psycopg.connect(self._dsn(database), autocommit=True,
                                     connect_timeout=_CONNECT_TIMEOUT_S) as other:
                    other.execute(sql.SQL("DROP OWNED BY {}").format(roles))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(roles))

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._dsn("postgres"), autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S)

    def names(self) -> list[str]:
        """Databases handed out and not dropped yet."""
        return sorted(self._names)

    def roles(self) -> list[str]:
        """Drill roles (and roles made for a database) created and not dropped yet."""
        return sorted(self._roles | {name for made in self._made_for.values() for name in made})

    def forget_all(self) -> None:
        """The server is gone, and every database and role on it."""
        self._names.clear()
        self._roles.clear()
        self._made_for.clear()


class SigtermAsExit:
    """While installed, SIGTERM raises ``SystemExit`` so ``finally`` blocks and atexit handlers run.

    Only the main thread may set handlers, and a handler someone else installed
    (a supervisor, pytest-timeout) is theirs to keep: then this does nothing.
    """

    def __init__(self) -> None:
        self._previous: Any = None
        self._installed = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        self._previous = signal.signal(signal.SIGTERM, raise_system_exit)
        self._installed = True

    def restore(self) -> None:
        if self._installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)
            self._installed = False


def raise_system_exit(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM → SystemExit(128 + signum)."""
    raise SystemExit(128 + signum)

