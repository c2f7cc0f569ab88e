"""The ``live`` environment: subjects from ``drillbook.toml``.

Scratch comes from the config (a target marked ``scratch = true``, proven
on a server of its own, reached by a contained role, and empty before the
first write; left as found afterwards) or, when the config names none, from a
throwaway local PostgreSQL cluster started on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import psycopg

from checks.errors import (
    ConfigError,
    SafetyError,
    ScratchNotEmpty,
    ScratchNotRestored,
    TargetUnreachable,
)

from . import pgtools
from .config import Config
from .scratch_catalog import (
    CatalogState,
    describe_findings,
    differences,
    emptiness_findings,
    read_catalog,
    restore_catalog,
)
from .scratch_guard import ScratchGuard
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
    """A scratch database named in the config: used only when proven safe and empty, left as found.

    Before the first write (:mod:`drills.scratch_guard`): the database is on a
    server that holds none of ``subjects`` and is reached by a contained role;
    then, before every drill, it is empty (:mod:`drills.scratch_catalog`). Its
    catalog is captured then, and :meth:`drop` puts it back exactly as it was.
    """

    def __init__(self, target: PostgresTarget, *, subjects: Sequence[PostgresTarget] = ()) -> None:
        self.target = target
        self.bindir: Path = pgtools.bindir()
        self._guard = ScratchGuard(target, subjects)
        self._in_use = False
        self._before: CatalogState | None = None

    def fresh_database(self, purpose: str) -> PostgresTarget:
        """The configured database itself, after proving it is safe scratch and empty."""
        self.target.require_scratch()
        if self._in_use:
            raise ConfigError(
                f"scratch target `{self.target.name}` is already in use by another drill",
                hint="name one scratch target per concurrent drill, or let drillbook create them",
            )
        try:
            with psycopg.connect(self.target.dsn, connect_timeout=10, autocommit=True) as conn:
                self._guard.check(conn)
                state = read_catalog(conn)
        except psycopg.OperationalError as exc:
            raise TargetUnreachable(
                f"scratch target `{self.target.name}` ({self.target.describe()}) does not answer: "
                f"{str(exc).strip()}",
            ) from exc
        found = emptiness_findings(state)
        if found:
            raise ScratchNotEmpty(
                f"scratch target `{self.target.name}` ({self.target.describe()}) is not empty: "
                f"{describe_findings(found)}; it was left as it is",
                target=self.target.name, found={k: len(v) for k, v in found.items()},
            )
        self._before = state
        self._in_use = True
        return self.target

    def create_roles(self, target: PostgresTarget, specs: Sequence[object]) -> list[str]:
        """Refused: drillbook has no admin on this server, and roles are the whole server's."""
        raise SafetyError(
            f"the prelude creates roles, but scratch target `{target.name}` ({target.describe()}) is "
            "a server of yours: drillbook creates roles only in the scratch clusters it starts itself",
            target=target.name,
            hint="create the roles on that server yourself, or let drillbook create the scratch "
                 "(no --scratch, no `scratch = true` target)")

    def drop(self, target: PostgresTarget) -> None:
        """Leave the database as :meth:`fresh_database` found it: what the drill added is dropped.

        ``public`` is never dropped and recreated (its owner, ACL and OID stay);
        a difference that remains raises :class:`ScratchNotRestored` naming it.
        """
        target.require_scratch()
        before = self._before
        if before is None:
            raise ConfigError(f"scratch target `{target.name}` was not handed out by fresh_database()")
        try:
            with psycopg.connect(target.dsn, connect_timeout=10, autocommit=True) as conn:
                failures = restore_catalog(conn, before)
                after = read_catalog(conn)
        finally:
            # Handed back either way: the next drill proves emptiness again before writing.
            self._before = None
            self._in_use = False
        changed = differences(before, after)
        if changed:
            raise ScratchNotRestored(
                f"scratch target `{target.name}` ({target.describe()}) is not as it was found: "
                f"{'; '.join(changed[:10])}" + (f" (failed: {'; '.join(failures[:3])})" if failures else ""),
                target=target.name, differences=changed,
            )


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
                subjects = [t for t in self.config.postgres.values() if t.role is Role.SUBJECT]
                self._scratch = ConfiguredScratch(configured[0], subjects=subjects)
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
