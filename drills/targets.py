"""Targets a drill works with, and the environment protocol that supplies them.

A target is either a **subject** (verified, read-only, always) or **scratch**
(a drill may write to it). Every write path calls ``require_scratch()`` first.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import psycopg

from checks.errors import NotScratch, ScratchNotEmpty
from checks.http_health import FollowRedirects


class Role(enum.StrEnum):
    SUBJECT = "subject"
    SCRATCH = "scratch"


@dataclass(frozen=True)
class PostgresTarget:
    """A PostgreSQL database reached by a libpq connection string."""

    name: str
    dsn: str = field(repr=False)  # a DSN may hold a password: never in a traceback
    role: Role = Role.SUBJECT
    created_by_drillbook: bool = False

    def require_scratch(self) -> None:
        """Refuse unless this target is scratch."""
        if self.role is not Role.SCRATCH:
            raise NotScratch(
                f"refusing to write to `{self.name}` ({self.describe()}): it is a subject",
                target=self.name,
            )

    def describe(self) -> str:
        """Host, port and database, never the password."""
        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        host = info.get("host") or "local socket"
        port = info.get("port") or "5432"
        return f"{info.get('dbname') or '?'} on {host}:{port}"

    def conninfo(self, **overrides: str) -> str:
        return psycopg.conninfo.make_conninfo(self.dsn, **overrides)

    def assert_empty(self) -> None:
        """Scratch named in config must hold nothing before the first write (see drills.scratch_catalog).

        Not only relations: any schema but ``public``, any extension but
        ``plpgsql``, any function, type, operator, … makes it someone's database.
        """
        from .scratch_catalog import describe_findings, emptiness_findings, read_catalog

        with psycopg.connect(self.dsn, connect_timeout=10, autocommit=True) as conn:
            found = emptiness_findings(read_catalog(conn))
        if found:
            raise ScratchNotEmpty(
                f"scratch target `{self.name}` ({self.describe()}) is not empty: {describe_findings(found)}",
                target=self.name,
                found={kind: len(names) for kind, names in found.items()},
            )


@dataclass(frozen=True)
class StoreSpec:
    """Where backups live: ``s3://bucket/prefix`` or a local directory."""

    name: str
    url: str
    key_pattern: str | None = None
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    checksum_suffix: str = ".sha256"
    # The immutability probe (checks/immutability_probe.py): a role the backup job uses, and
    # where drillbook may write its own marker objects. Both or neither (drills/store_kinds/dump.py).
    probe_role_arn: str | None = None
    probe_prefix: str | None = None
    # kind = "basebackup" (drills/physical/): pg_basebackup output in ``url`` and its WAL archive.
    kind: str = "dump"
    wal: str | None = None
    # kind = "barman-cloud" (drills/physical/barman_cloud.py): barman's server name under ``url``.
    server: str | None = None
    # kind = "pgbackrest" (drills/pgbackrest_options.py, drills/physical/pgbackrest.py): the stanza,
    # which repoN to read, and the operator's pgbackrest options (name, value) — secrets among them.
    stanza: str | None = None
    repo: int | None = None
    options: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # Point in time (steps/physical.py): the runbook's RPO, and a timestamp column proving a recovery.
    rpo: timedelta | None = None
    pitr_column: tuple[str, str, str] | None = None

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")

    @property
    def bucket(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def prefix(self) -> str:
        return urlsplit(self.url).path.lstrip("/")

    @property
    def path(self) -> Path:
        return Path(self.url.removeprefix("file://"))


@dataclass(frozen=True)
class RedisTarget:
    name: str
    url: str
    role: Role = Role.SUBJECT


@dataclass(frozen=True)
class HttpTarget:
    """An HTTP(S) service a health check reads; TLS is always verified (``ca_file`` or the system store).

    ``follow_redirects``: a 3xx is the answer unless the config opts in to same-origin redirects;
    ``headers`` (tokens) are never sent to another origin either way.
    """

    name: str
    url: str
    ca_file: Path | None = None
    headers: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 10.0
    follow_redirects: FollowRedirects = FollowRedirects.NEVER


@dataclass(frozen=True)
class TlsTarget:
    """Certificates to check: a live endpoint (``host``/``port``) or a PEM file on disk."""

    name: str
    host: str | None = None
    port: int = 443
    server_name: str | None = None
    pem_file: Path | None = None
    ca_file: Path | None = None

    @property
    def expected_hostname(self) -> str | None:
        """The name the certificate must match: SNI when given, else the host."""
        return self.server_name or self.host


@dataclass(frozen=True)
class PrometheusTarget:
    """A Prometheus server read through its HTTP query API."""

    name: str
    url: str
    ca_file: Path | None = None
    timeout_s: float = 10.0


class ScratchPostgres(Protocol):
    """Supplies empty databases a drill may write to, and drops them afterwards."""

    bindir: Path

    def fresh_database(self, purpose: str) -> PostgresTarget: ...

    def drop(self, target: PostgresTarget) -> None: ...


class Environment(Protocol):
    """Resolves logical target names to real targets. See ARCHITECTURE.md, Environments."""

    name: str

    def postgres(self, name: str) -> PostgresTarget: ...

    def store(self, name: str) -> StoreSpec: ...

    def redis(self, name: str) -> RedisTarget: ...

    def http(self, name: str) -> HttpTarget: ...

    def tls(self, name: str) -> TlsTarget: ...

    def prometheus(self, name: str) -> PrometheusTarget: ...

    def scratch_postgres(self) -> ScratchPostgres: ...

    def details(self) -> Mapping[str, str]: ...

    def close(self) -> None: ...


@dataclass
class Journal:
    """A drill's timed record of phases, cleanup included (see STYLE.md, rule 7)."""

    entries: list[dict[str, object]] = field(default_factory=list)

    def add(self, phase: str, status: str, started: str, duration_s: float, **evidence: object) -> None:
        self.entries.append(
            {"phase": phase, "status": status, "started_at": started,
             "duration_s": round(duration_s, 6), **evidence}
        )
