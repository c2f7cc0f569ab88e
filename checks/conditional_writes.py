"""Does an S3 endpoint honour ``If-None-Match: *`` atomically? The ledger's safety rests on it.

The S3 ledger (reports/ledger_s3.py) lets runs race for the next position with create-only
writes: exactly one may win. AWS S3 guarantees that; some S3-compatible servers ignore the header
or check it and write in separate steps (FLEET.md §4.3: moto with multi-MiB bodies, several
on-premises servers before their fixes). This races ``writers`` clients, released together, on a
fresh scratch key per trial and counts who was told "created": more than one winner in any trial
means a second run could silently overwrite another's ledger batch.

Passing proves little (a race lost by luck looks the same as atomicity); failing proves the
endpoint unsafe. It writes only scratch keys under ``scratch_prefix`` and deletes them after.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .verdict import Verdict

CHECK_ID = "s3.conditional_writes"
_LOST = {"PreconditionFailed", "ConditionalRequestConflict"}  # 412, 409: refused as it should be
_JOIN_S = 120.0  # a writer that has not answered by then is a hung endpoint, reported as such


@dataclass(frozen=True)
class Trial:
    """One race: the key, who won (writer indexes), what the others got, what the key holds after."""

    key: str
    winners: tuple[int, ...]
    refused: int
    errors: tuple[str, ...]
    kept: int | None  # the writer whose body the key holds afterwards (None: unreadable or foreign)


def race_create_only(make_client: Callable[[], Any], *, bucket: str, scratch_prefix: str,
                     writers: int = 8, trials: int = 5, body_bytes: int = 1024) -> Verdict:
    """Race ``writers`` create-only PUTs on one new key, ``trials`` times; passed when every trial
    has exactly one winner, failed when any has more, error when the endpoint could not be tested."""
    if writers < 2 or trials < 1:
        raise ValueError("needs at least 2 writers and 1 trial")
    clients = [make_client() for _ in range(writers)]
    run = secrets.token_hex(6)
    results: list[Trial] = []
    written: list[str] = []
    try:
        for number in range(trials):
            key = f"{scratch_prefix}{run}/trial-{number:03d}"
            written.append(key)
            results.append(_trial(clients, bucket, key, body_bytes))
    finally:
        cleanup = _delete(clients[0], bucket, written)
    return _verdict(results, writers=writers, bucket=bucket, scratch_prefix=scratch_prefix,
                    cleanup=cleanup)


def _body(writer: int, size: int) -> bytes:
    head = f"drillbook doctor: writer {writer:03d}\n".encode()
    return head + b"." * max(0, size - len(head))


def _trial(clients: list[Any], bucket: str, key: str, size: int) -> Trial:
    barrier = threading.Barrier(len(clients))
    answers: dict[int, str] = {}
    lock = threading.Lock()

    def put(index: int) -> None:
        barrier.wait()
        try:
            clients[index].put_object(Bucket=bucket, Key=key, Body=_body(index, size), IfNoneMatch="*")
            answer = "created"
        except Exception as exc:  # noqa: BLE001 - every failure is an answer to count and name
            answer = _code(exc)
        with lock:
            answers[index] = answer

    threads = [threading.Thread(target=put, args=(i,), daemon=True) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=_JOIN_S)
    for index in range(len(clients)):
        answers.setdefault(index, f"no answer within {_JOIN_S:g} s")
    winners = tuple(sorted(i for i, a in answers.items() if a == "created"))
    refused = sum(1 for a in answers.values() if a in _LOST)
    errors = tuple(sorted(a for a in answers.values() if a != "created" and a not in _LOST))
    return Trial(key=key, winners=winners, refused=refused, errors=errors,
                 kept=_kept(clients[0], bucket, key))


def _kept(client: Any, bucket: str, key: str) -> int | None:
    try:
        data: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read(64)
    except Exception:  # noqa: BLE001 - unreadable is reported as "holds no writer's body"
        return None
    prefix = b"drillbook doctor: writer "
    if not data.startswith(prefix):
        return None
    try:
        return int(data[len(prefix):len(prefix) + 3])
    except ValueError:
        return None


def _delete(client: Any, bucket: str, keys: list[str]) -> list[str]:
    """Delete the scratch keys; the ones that could not be deleted, with why."""
    left = []
    for key in keys:
        try:
            client.delete_object(Bucket=bucket, Key=key)
        except Exception as exc:  # noqa: BLE001 - named in the verdict's evidence, never hidden
            left.append(f"{key}: {_code(exc)}")
    return left


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(error.get("Code") or "")
        return f"{code} ({status})" if code not in _LOST and status else code or f"HTTP {status}"
    return type(exc).__name__


def _verdict(results: list[Trial], *, writers: int, bucket: str, scratch_prefix: str,
             cleanup: list[str]) -> Verdict:
    doubled = [t for t in results if len(t.winners) > 1]
    lost_write = [t for t in results if len(t.winners) == 1 and t.kept not in (None, t.winners[0])]
    none = [t for t in results if not t.winners]
    evidence: dict[str, Any] = {
        "bucket": bucket, "scratch_prefix": scratch_prefix, "writers": writers, "trials": len(results),
        "winners_per_trial": [len(t.winners) for t in results],
        "errors": dict(Counter(e for t in results for e in t.errors)),
        "not_deleted": cleanup,
    }
    where = f"s3://{bucket}/{scratch_prefix}"
    if doubled or lost_write:
        worst = max(doubled, key=lambda t: len(t.winners)) if doubled else lost_write[0]
        return Verdict.compare(
            CHECK_ID, measured=f"{len(doubled) + len(lost_write)} of {len(results)} trials with a lost write",
            expected="exactly one create-only PUT wins each race", ok=False,
            message=(f"{where}: the endpoint does not honour If-None-Match atomically: in "
                     f"{len(doubled)} of {len(results)} races of {writers} writers more than one PUT was "
                     f"told it created the key (up to {len(worst.winners)} at once; {worst.key})"
                     + (f", and {len(lost_write)} race(s) kept a body its winner never wrote"
                        if lost_write else "")
                     + ": a run could overwrite another's ledger batch; do not keep the ledger here"),
            evidence=evidence)
    if none:
        first = none[0]
        return Verdict.error(
            CHECK_ID, f"{where}: could not test conditional writes: no writer created {first.key} "
            f"({', '.join(sorted(set(first.errors))) or 'every PUT was refused'})", evidence=evidence)
    return Verdict.compare(
        CHECK_ID, measured=f"1 winner in each of {len(results)} races",
        expected="exactly one winner per race", ok=True,
        message=(f"{where}: each of {len(results)} races of {writers} create-only writers had exactly "
                 "one winner (consistent with atomic If-None-Match; a race cannot prove it)"),
        evidence=evidence)
