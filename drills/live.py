"""The ``live`` environment: subjects from ``drillbook.toml``.

Scratch comes from the config (a target marked ``scratch = true``, proven
empty before the first write) or, when the config names none, from a
throwaway local PostgreSQL cluster started on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import psycopg
from psycopg import sql

from checks.errors import ConfigError, TargetUnreachable

from . import pgtools
from .config import Config
from .targets import (
    HttpTarget,
    PostgresTarget,
    PrometheusTarget,
    RedisTarget,
    Role,
    ScratchPostgres,
    StoreSpec,
    TlsTarget,
)

ScratchFactory = Callable[[], ScratchPostgres]
T = TypeVar("T")


class ConfiguredScratch:
    """A scratch database named in the config: used only when empty, emptied after."""

    def __init__(self, target: PostgresTarget) -> None:
        self.target = target
        self.bindir: Path = pgtools.bindir()
        self._in_use = False

    def fresh_database(self, purpose: str) -> PostgresTarget:
        """The configured database itself, after proving it is scratch and empty."""
        self.target.require_scratch()
        if self._in_use:
            raise ConfigError(
                f"scratch target `{self.target.name}` is already in use by another drill",
                hint="name one scratch target per concurrent drill, or let drillbook create them",
            )
        try:
            self.target.assert_empty()
        except psycopg.OperationalError as exc:
            raise TargetUnreachable(
                f"scratch target `{self.target.name}` ({self.target.describe()}) does not answer: "
                f"{str(exc).strip()}",
            ) from exc
        self._in_use = True
        return self.target

    def drop(self, target: PostgresTarget) -> None:
        """Empty the database again: every non-system schema dropped, ``public`` recreated."""
        target.require_scratch()
        with psycopg.connect(target.dsn, connect_timeout=10, autocommit=True) as conn:
            schemas = [r[0] for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname NOT IN "
                "('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg_toast%' "
                "AND nspname NOT LIKE 'pg_temp%'"
            ).fetchall()]
            for schema in schemas:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            conn.execute("CREATE SCHEMA IF NOT EXISTS public")
        self._in_use = False


class LiveEnvironment:
    """Targets from a validated :class:`Config`."""

    name = "live"

    def __init__(self, config: Config, *, local_scratch: ScratchFactory | None = None) -> None:
        self.config = config
        self._local_scratch_factory = local_scratch
        self._scratch: ScratchPostgres | None = None

    def postgres(self, name: str) -> PostgresTarget:
        return _lookup(self.config.postgres, name, "postgres", self.config)

    def store(self, name: str) -> StoreSpec:
        return _lookup(self.config.stores, name, "s3 or directory", self.config)

    def redis(self, name: str) -> RedisTarget:
        return _lookup(self.config.redis, name, "redis", self.config)

    def http(self, name: str) -> HttpTarget:
        return _lookup(self.config.http, name, "http", self.config)

    def tls(self, name: str) -> TlsTarget:
        return _lookup(self.config.tls, name, "tls", self.config)

    def prometheus(self, name: str) -> PrometheusTarget:
        return _lookup(self.config.prometheus, name, "prometheus", self.config)

    def scratch_postgres(self) -> ScratchPostgres:
        if self._scratch is None:
            configured = [t for t in self.config.postgres.values() if t.role is Role.SCRATCH]
            if configured:
                self._scratch = ConfiguredScratch(configured[0])
            elif self._local_scratch_factory is not None:
                self._scratch = self._local_scratch_factory()
            else:
                raise ConfigError(
                    f"{self.config.path}: no scratch PostgreSQL to restore into",
                    hint="add a postgres target with `scratch = true`, "
                    "or install PostgreSQL locally so drillbook can create one",
                )
        return self._scratch

    def details(self) -> Mapping[str, str]:
        details = {f"postgres.{n}": t.describe() for n, t in self.config.postgres.items()}
        details.update({f"store.{n}": s.url for n, s in self.config.stores.items()})
        details.update({f"http.{n}": _without_password(t.url) for n, t in self.config.http.items()})
        details.update({f"tls.{n}": str(t.pem_file) if t.pem_file else f"{t.host}:{t.port}"
                        for n, t in self.config.tls.items()})
        details.update({f"prometheus.{n}": _without_password(t.url)
                        for n, t in self.config.prometheus.items()})
        return details

    def close(self) -> None:
        closer = getattr(self._scratch, "close", None)
        if callable(closer):
            closer()
        self._scratch = None


def _lookup(table: Mapping[str, T], name: str, kind: str, config: Config) -> T:
    if name not in table:
        known = ", ".join(sorted(table)) or "none"
        raise ConfigError(
            f"{config.path}: no {kind} target named `{name}` (configured: {known})",
            key=f"targets.{name}",
        )
    return table[name]


def _without_password(url: str) -> str:
    """``https://host:port/path``: user info dropped (the redactor masks secrets, this drops the rest)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
