"""Health of a live Redis subject: PING, memory, hit ratio, key counts, queue lengths, flags.

Read-only: only ``PING``, ``INFO``, ``SCAN``, ``TYPE``, ``LLEN``, ``GET`` and
``HVALS``. Keys are always found with ``SCAN`` (never ``KEYS``, which blocks
the server on a large keyspace). A target is shown as ``name (host:port/db)``:
the URL, and so the password, never appears in a message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import redact
from .errors import AuthenticationFailed, DrillbookError, TargetUnreachable, UnusableAnswer
from .thresholds import compare, format_size
from .verdict import Verdict, verdict_from_error

TIMEOUT_S = 10.0
# Keys asked for per SCAN round trip: large enough to be quick, small enough not to block the server.
SCAN_BATCH = 1000
# Matching keys quoted in evidence; the count is always exact.
_EXAMPLES = 20
T = TypeVar("T")


def describe(url: str, name: str) -> str:
    """``cache (127.0.0.1:6379/0)``: host, port and database, never the password."""
    parts = urlsplit(url)
    db = parts.path.lstrip("/") or "0"
    return f"{name} ({parts.hostname or '?'}:{parts.port or 6379}/{db})"


def open_client(url: str) -> redis.Redis:
    """A client with timeouts and no silent retries (the check reports what happened, once)."""
    return redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S,
                                retry=Retry(NoBackoff(), 0), decode_responses=False)


def guarded(check_id: str, label: str, check: Callable[[], Verdict]) -> Verdict:
    """Run a check; unreachable, refused credentials, wrong key types: error verdicts naming ``label``."""
    try:
        return check()
    except redis.AuthenticationError as exc:
        error: DrillbookError = AuthenticationFailed(
            f"Redis {label} refused the credentials: {redact.redact(str(exc))}", target=label,
        )
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        error = TargetUnreachable(f"Redis {label} is unreachable: {redact.redact(str(exc))}", target=label,
                                  hint="check the target's `url` and that redis-server runs")
    except redis.ResponseError as exc:
        text = redact.redact(str(exc))
        if "NOAUTH" in text or "WRONGPASS" in text:
            error = AuthenticationFailed(f"Redis {label} refused the credentials: {text}", target=label)
        else:
            error = UnusableAnswer(f"Redis {label}: {text}", target=label)
    except DrillbookError as exc:
        error = exc
    return verdict_from_error(check_id, error)


def ping(client: redis.Redis, *, label: str) -> Verdict:
    """``PING`` answers ``PONG``."""
    return guarded("redis.ping", label, lambda: _ping(client, label))


def _ping(client: redis.Redis, label: str) -> Verdict:
    answered = client.ping()
    if answered is not True:
        return Verdict.failed("redis.ping", f"Redis {label} answered PING with {answered!r}",
                              evidence={"target": label})
    server = client.info("server")
    return Verdict.passed("redis.ping", f"Redis {label} answered PING",
                          evidence={"target": label, "redis_version": server.get("redis_version")})


def memory_within(client: redis.Redis, *, percent: int, label: str) -> Verdict:
    """``used_memory`` is at most ``percent`` % of ``maxmemory``; not applicable when no limit is set."""

    def check() -> Verdict:
        info = client.info("memory")
        used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        evidence = {"target": label, "used_memory": used, "maxmemory": limit,
                    "maxmemory_policy": info.get("maxmemory_policy")}
        if limit == 0:
            return Verdict.not_applicable(
                "redis.memory", f"Redis {label} has no maxmemory limit (maxmemory 0): it grows until "
                f"the machine runs out; uses {format_size(used)}", evidence=evidence,
            )
        share = 100.0 * used / limit
        return Verdict.compare(
            "redis.memory", measured=round(share, 2), expected=f"<= {percent} %", ok=share <= percent,
            message=f"Redis {label} uses {format_size(used)} of {format_size(limit)} "
                    f"maxmemory ({share:.1f} %), limit {percent} %",
            evidence=evidence,
        )

    return guarded("redis.memory", label, check)


def hit_ratio_at_least(client: redis.Redis, *, percent: int, label: str) -> Verdict:
    """``keyspace_hits / (hits + misses)`` is at least ``percent`` %; not applicable before any lookup."""

    def check() -> Verdict:
        info = client.info("stats")
        hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
        evidence = {"target": label, "keyspace_hits": hits, "keyspace_misses": misses}
        if hits + misses == 0:
            return Verdict.not_applicable(
                "redis.hit_ratio", f"Redis {label} has served no key lookups since its statistics "
                "were last reset: there is no hit ratio yet", evidence=evidence,
            )
        ratio = 100.0 * hits / (hits + misses)
        return Verdict.compare(
            "redis.hit_ratio", measured=round(ratio, 3), expected=f">= {percent} %", ok=ratio >= percent,
            message=f"Redis {label} keyspace hit ratio {ratio:.2f} % ({hits} hits, {misses} misses), "
                    f"floor {percent} %",
            evidence=evidence,
        )

    return guarded("redis.hit_ratio", label, check)


def scan_keys(client: redis.Redis, pattern: str) -> Iterator[bytes]:
    """Every key matching ``pattern``, by ``SCAN`` (a key may repeat; callers keep a set)."""
    yield from client.scan_iter(match=pattern, count=SCAN_BATCH)


def key_count(client: redis.Redis, pattern: str, *, comparison: str, count: int, label: str) -> Verdict:
    """The number of keys matching ``pattern`` (by SCAN) compares as the runbook says."""

    def check() -> Verdict:
        keys = set(scan_keys(client, pattern))
        found = len(keys)
        examples = sorted(k.decode("utf-8", "replace") for k in keys)[:_EXAMPLES]
        return Verdict.compare(
            "redis.key_count", measured=found, expected=f"{comparison} {count}",
            ok=compare(found, comparison, count),
            message=f"Redis {label}: {found} keys match {pattern!r}, expected {comparison} {count}",
            evidence={"target": label, "pattern": pattern, "count": found, "examples": examples},
        )

    return guarded("redis.key_count", label, check)


def _list_length(client: redis.Redis, key: str, label: str) -> tuple[int, bool]:
    """LLEN, and whether the key exists; a key of another type is :class:`UnusableAnswer`."""
    kind = _text(client.type(key))
    if kind == "none":
        return 0, False
    if kind != "list":
        raise UnusableAnswer(f"Redis {label}: `{key}` is a {kind}, not a list", target=label, key=key,
                             hint="name the list key the runbook documents")
    return int(client.llen(key)), True


def list_length_bands(client: redis.Redis, key: str, *, warning: int, failed: int, label: str) -> Verdict:
    """``LLEN key``: below ``warning`` passes, ``warning``..``failed`` warns, above ``failed`` fails.

    SARK's ``siem:event_queue``: < 1,000 passed, 1,000–10,000 warning, > 10,000 failed.
    A missing key is an empty list (Redis deletes empty lists).
    """

    def check() -> Verdict:
        length, exists = _list_length(client, key, label)
        evidence = {"target": label, "key": key, "length": length, "exists": exists,
                    "warning_from": warning, "failed_above": failed}
        expected = f"< {warning} (warning up to {failed})"
        text = f"Redis {label}: list `{key}` holds {length:,} items{_absent(exists)}"
        if length < warning:
            return Verdict.passed("redis.list_length", f"{text} (below {warning:,})", measured=length,
                                  expected=expected, evidence=evidence)
        if length <= failed:
            return Verdict.warning("redis.list_length", f"{text}: in the warning band {warning:,}–{failed:,}",
                                   measured=length, expected=expected, evidence=evidence)
        return Verdict.failed("redis.list_length", f"{text}: above {failed:,}", measured=length,
                              expected=expected, evidence=evidence)

    return guarded("redis.list_length", label, check)


def list_empty(client: redis.Redis, key: str, *, label: str) -> Verdict:
    """``LLEN key`` is 0 (e.g. SARK's ``siem:failed_events``)."""

    def check() -> Verdict:
        length, exists = _list_length(client, key, label)
        return Verdict.compare(
            "redis.list_empty", measured=length, expected=0, ok=length == 0,
            message=f"Redis {label}: list `{key}` holds {length:,} items{_absent(exists)}, expected none",
            evidence={"target": label, "key": key, "length": length, "exists": exists},
        )

    return guarded("redis.list_empty", label, check)


def no_key_holds(client: redis.Redis, pattern: str, value: str, *, label: str) -> Verdict:
    """No key matching ``pattern`` holds ``value`` (a string key's value, or any field of a hash).

    A circuit breaker not ``open``. No matching key at all is not applicable,
    with that reason: the pattern may be wrong, and nothing was checked.
    """

    def check() -> Verdict:
        keys = sorted(set(scan_keys(client, pattern)))
        holding: list[str] = []
        values: dict[str, Any] = {}
        unsupported: list[str] = []
        for raw in keys:
            key = raw.decode("utf-8", "replace")
            kind = _text(client.type(raw))
            if kind == "string":
                current = _text(client.get(raw))
                values[key] = current
                if current == value:
                    holding.append(key)
            elif kind == "hash":
                fields = [_text(v) for v in client.hvals(raw)]
                values[key] = fields
                if value in fields:
                    holding.append(key)
            elif kind != "none":  # "none": expired between SCAN and TYPE
                unsupported.append(f"{key} ({kind})")
        evidence = {"target": label, "pattern": pattern, "value": value,
                    "values": dict(list(values.items())[:_EXAMPLES]), "keys": len(keys)}
        if unsupported:
            return Verdict.error(
                "redis.no_key_holds", f"Redis {label}: keys matching {pattern!r} that are neither strings "
                f"nor hashes cannot hold {value!r}: {', '.join(unsupported[:_EXAMPLES])}",
                evidence=evidence,
            )
        if not keys:
            return Verdict.not_applicable(
                "redis.no_key_holds", f"Redis {label}: no key matches {pattern!r}, so none holds {value!r}",
                evidence=evidence,
            )
        if holding:
            return Verdict.failed(
                "redis.no_key_holds", f"Redis {label}: {len(holding)} of {len(keys)} keys matching "
                f"{pattern!r} hold {value!r}: {', '.join(holding[:_EXAMPLES])}",
                measured=holding, expected=f"none holds {value!r}", evidence=evidence,
            )
        return Verdict.passed(
            "redis.no_key_holds",
            f"Redis {label}: none of {len(keys)} keys matching {pattern!r} holds {value!r}",
            measured=[], expected=f"none holds {value!r}", evidence=evidence,
        )

    return guarded("redis.no_key_holds", label, check)


def _absent(exists: bool) -> str:
    """Said aloud: an absent key reads as an empty list, which a wrong database number also gives."""
    return "" if exists else " (no such key: Redis drops empty lists; check the database number)"


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
