"""The versions of the servers a run talked to, for the evidence's environment fingerprint.

The plugin hands scenarios an :class:`ObservedEnvironment`; it remembers
which PostgreSQL and Redis targets they resolved. When the run ends (before
the environment closes) each is asked its version once, read-only, with a
short timeout: an auditor then knows which server versions were drilled.
"""

from __future__ import annotations

from typing import Any

from checks import redact

PROBE_TIMEOUT_S = 5


class ObservedEnvironment:
    """An environment that remembers the subject targets it resolved; everything else passes through."""

    def __init__(self, env: Any) -> None:
        self._env = env
        self.resolved: dict[tuple[str, str], Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def postgres(self, name: str) -> Any:
        target = self._env.postgres(name)
        self.resolved[("postgres", name)] = target
        return target

    def redis(self, name: str) -> Any:
        target = self._env.redis(name)
        self.resolved[("redis", name)] = target
        return target

    def server_versions(self) -> dict[str, str]:
        """``server.<kind>.<name>`` -> version string, or why it could not be read."""
        found: dict[str, str] = {}
        for (kind, name), target in sorted(self.resolved.items()):
            probe = _postgres_version if kind == "postgres" else _redis_version
            try:
                found[f"server.{kind}.{name}"] = probe(target)
            except Exception as exc:  # noqa: BLE001 - a fingerprint never fails the run
                found[f"server.{kind}.{name}"] = redact.redact(f"unknown ({type(exc).__name__})")
        return found


def _postgres_version(target: Any) -> str:
    import psycopg

    with psycopg.connect(target.dsn, connect_timeout=PROBE_TIMEOUT_S, autocommit=True,
                         options="-c default_transaction_read_only=on") as conn:
        row = conn.execute("SELECT version()").fetchone()
    return str(row[0]) if row else "unknown"


def _redis_version(target: Any) -> str:
    import redis

    client = redis.Redis.from_url(target.url, socket_timeout=PROBE_TIMEOUT_S,
                                  socket_connect_timeout=PROBE_TIMEOUT_S)
    try:
        info = client.info("server")
    finally:
        client.close()
    return f"Redis {info.get('redis_version', 'unknown')} ({info.get('redis_mode', '?')})"
