"""The cadence ledger on S3, for teams: ``[ledger] url = "s3://bucket/prefix/"``.

S3 cannot append to an object, so each run's entries are one object named by
the sequence number of its first entry: ``<prefix>000000000042.jsonl``. The
object is written with ``If-None-Match: *``: of two runs racing for the same
position exactly one wins; the other reads the new tail and chains after it.
No object is ever overwritten or deleted by drillbook.

Reading lists the prefix, fetches every object in key order, and checks the
same chain as the local ledger (an edited, deleted or reordered entry is
named), plus that each object's name matches the first entry it holds. A
deleted *last* object leaves a valid chain: enable bucket versioning or S3
Object Lock on the prefix so that deletions are recoverable and visible.

Signed heads (reports/ledger_heads.py) live under ``<prefix>heads/``, one
object per signing run, created with ``If-None-Match: *`` as well.

Under contention (a fleet merge, two cadences and a manual run appending at once) an append
lists the prefix once. When its create-only write loses (412), it reads the object that won
(its own, if botocore retried a PUT whose reply was lost: then it is done), pauses for a
jittered, exponentially growing time, and catches up with one listing of the keys *after* the
last it knows (``StartAfter``), so it jumps to the new tail however many runs landed meanwhile.
A 409 ``ConditionalRequestConflict`` (a concurrent write to the same key in flight) pauses and
catches up the same way. It gives up only when the time budget (``[ledger] append_timeout``,
default 2 minutes) is spent, with an error naming that key.
"""

from __future__ import annotations

import random
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from reports.ledger import (
    GENESIS,
    LedgerCorrupt,
    LedgerEntry,
    LedgerError,
    LedgerProblem,
    LedgerRead,
    NewEntry,
    chain,
    entry_digest,
    holds_run,
    parse_entry,
    read_text,
)

_KEY = re.compile(r"^(\d{12})\.jsonl$")
HEADS = "heads/"  # the sub-prefix of signed heads, beside the run objects
_LOST = ("PreconditionFailed", "ConditionalRequestConflict")  # 412, 409: another write got there
# User metadata naming the append attempt that wrote an object: a 412 on a PUT that botocore
# retried after a lost reply finds our own object, which is success (not a race to follow).
_WRITER = "drillbook-append"


@dataclass(frozen=True)
class AppendPolicy:
    """How long an append keeps trying while other runs keep winning the race for the tail.

    The pause after the n-th lost attempt is uniform in ``[0, min(cap_s, base_s * 2**n)]``
    ("full jitter"): losers that retried in lockstep would collide again on the next position.
    """

    budget_s: float = 120.0
    base_s: float = 0.05
    cap_s: float = 2.0

    def pause(self, attempt: int, rng: random.Random) -> float:
        """The pause after ``attempt`` lost attempts (1 = the first loss)."""
        return rng.uniform(0.0, min(self.cap_s, self.base_s * 2.0 ** min(attempt, 32)))


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
            raise LedgerError(f"ledger url {url!r} must look like s3://bucket/prefix/")
        bucket, _, prefix = url[5:].partition("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(bucket, prefix)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


class S3Ledger:
    """A ledger as immutable objects under an S3 prefix; ``client`` is a boto3 S3 client."""

    def __init__(self, location: S3Location, client: Any, *, endpoint: str | None = None,
                 policy: AppendPolicy | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None) -> None:
        self.location = location
        self.client = client
        self.endpoint = endpoint
        self.policy = policy or AppendPolicy()
        self._clock = clock
        self._sleep = sleep
        # Not seeded: writers on different machines must not draw the same pauses.
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        # Read results name this "path"; it is where the ledger lives, for messages.
        self.path = Path(str(location))

    def __repr__(self) -> str:
        return f"S3Ledger({str(self.location)!r})"

    def _where(self) -> str:
        return f"{self.location}" + (f" at {self.endpoint}" if self.endpoint else "")

    def _fail(self, action: str, exc: Exception) -> LedgerError:
        code = _code(exc)
        return LedgerError(f"cannot {action} the S3 ledger {self._where()}: {code or type(exc).__name__}",
                           hint="check the bucket, prefix, endpoint and credentials in `[ledger]`",
                           url=str(self.location))

    def _keys(self, prefix: str | None = None) -> list[str]:
        keys: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.location.bucket,
                                      "Prefix": self.location.prefix if prefix is None else prefix}
            if token:
                kwargs["ContinuationToken"] = token
            try:
                page = self.client.list_objects_v2(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise self._fail("list", exc) from exc
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = page.get("NextContinuationToken")

    def _get(self, key: str) -> bytes:
        try:
            body: bytes = self.client.get_object(Bucket=self.location.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(f"read {key} of", exc) from exc
        return body

    def read(self) -> LedgerRead:
        """Every entry, chain checked; object names checked against their first entry."""
        heads_prefix = self.location.prefix + HEADS
        keys = [k for k in self._keys() if not k.startswith(heads_prefix)]
        texts = []
        problems = []
        for key in keys:
            name = key[len(self.location.prefix):]
            match = _KEY.match(name)
            if match is None:
                problems.append(LedgerProblem(
                    0, f"object {key} is not a ledger object (expected NNNNNNNNNNNN.jsonl)"))
                continue
            raw = self._get(key)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(LedgerProblem(0, f"object {key}: not UTF-8 at byte {exc.start}: edited"))
                continue
            first = text.split("\n", 1)[0]
            if f'"seq":{int(match.group(1))},' not in first:
                problems.append(LedgerProblem(0, f"object {key} does not start with entry seq "
                                                 f"{int(match.group(1))}: renamed or edited"))
            texts.append(text)
        result = read_text("".join(texts), head=None, path=self.path, require_head=False)
        result.problems[:0] = problems
        from reports.ledger_heads import check_claims  # it builds on reports.ledger

        check_claims(result, self.load_heads())
        return result

    def load_heads(self) -> list[tuple[str, bytes | None]]:
        """Every object under ``<prefix>heads/``, named ``heads/<name>``."""
        from reports.ledger_heads import MAX_HEAD_BYTES

        found: list[tuple[str, bytes | None]] = []
        heads_prefix = self.location.prefix + HEADS
        for key in self._keys(heads_prefix):
            name = HEADS + key[len(heads_prefix):]
            try:
                # A ranged read: an object larger than any head is refused, never downloaded whole.
                body: bytes = self.client.get_object(Bucket=self.location.bucket, Key=key,
                                                     Range=f"bytes=0-{MAX_HEAD_BYTES}")["Body"].read()
            except (ClientError, BotoCoreError) as exc:
                raise self._fail(f"read {key} of", exc) from exc
            found.append((name, body))
        return found

    def create_head(self, name: str, data: bytes) -> str:
        """Create ``<prefix>heads/<name>`` only if it does not exist (a head is never replaced)."""
        from reports.ledger_heads import HeadError

        key = f"{self.location.prefix}{HEADS}{name}"
        try:
            self.client.put_object(Bucket=self.location.bucket, Key=key, Body=data, IfNoneMatch="*",
                                   ContentType="application/json")
        except (ClientError, BotoCoreError) as exc:
            if _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise HeadError(f"signed head s3://{self.location.bucket}/{key} exists already: heads "
                                "are create-only", url=str(self.location)) from exc
            raise self._fail(f"write the signed head {name} to", exc) from exc
        return f"s3://{self.location.bucket}/{key}"

    def _ledger_keys(self, start_after: str | None = None) -> list[str]:
        """The run objects' keys (after ``start_after``), in order. ``Delimiter`` leaves ``heads/``
        (and any sub-prefix) out."""
        keys: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.location.bucket, "Prefix": self.location.prefix,
                                      "Delimiter": "/"}
            if start_after is not None:
                kwargs["StartAfter"] = start_after
            if token:
                kwargs["ContinuationToken"] = token
            try:
                page = self.client.list_objects_v2(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise self._fail("list", exc) from exc
            keys.extend(obj["Key"] for obj in page.get("Contents", [])
                        if _KEY.match(obj["Key"][len(self.location.prefix):]))
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = page.get("NextContinuationToken")

    def _object_text(self, key: str) -> str | None:
        """An object's text; None when it is not there (yet: a 409 left the position empty)."""
        found = self._object(key)
        return found[0] if found else None

    def _object(self, key: str) -> tuple[str, str | None] | None:
        """An object's text and the append that wrote it (``_WRITER``); None when it is not there."""
        try:
            answer = self.client.get_object(Bucket=self.location.bucket, Key=key)
            body: bytes = answer["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._fail(f"read {key} of", exc) from exc
        writer = (answer.get("Metadata") or {}).get(_WRITER)
        return body.decode("utf-8", errors="replace"), writer if isinstance(writer, str) else None

    def _end_of(self, key: str, text: str) -> tuple[int, str]:
        """Sequence number and hash of the last entry in object ``key``, checked intact."""
        if not text.endswith("\n"):
            raise LedgerCorrupt(f"{self._where()}: the object {key} is incomplete (truncated)")
        try:
            last = parse_entry(text.rstrip("\n").rsplit("\n", 1)[-1])
        except ValueError as exc:
            raise LedgerCorrupt(f"{self._where()}: the last entry of {key} is damaged: {exc}") from exc
        if entry_digest(last.body()) != last.hash:
            raise LedgerCorrupt(f"{self._where()}: the last entry (seq {last.seq}) was edited")
        return last.seq, last.hash

    def _key(self, seq: int) -> str:
        return f"{self.location.prefix}{seq:012d}.jsonl"

    def _create(self, key: str, body: bytes, writer: str) -> str | None:
        """Create ``key`` only if it does not exist; None when created, else the code that lost."""
        try:
            self.client.put_object(Bucket=self.location.bucket, Key=key, Body=body, IfNoneMatch="*",
                                   ContentType="application/x-ndjson", Metadata={_WRITER: writer})
        except (ClientError, BotoCoreError) as exc:
            code = _code(exc)
            if code in _LOST:
                return code
            raise self._fail("append to", exc) from exc
        return None

    def append(self, new: Sequence[NewEntry], *, unless_run: str | None = None) -> list[LedgerEntry]:
        """Chain after the current tail and create the object only if nobody took that position.

        ``unless_run``: append nothing (return []) when an entry of that run is in the ledger. Every
        object is read once: those listed at the start, and each that won a position since, so a
        batch of that run appended concurrently is found before this one could follow it.
        """
        if not new:
            return []
        started = self._clock()
        tail = self._catch_up(None, 0, GENESIS, unless_run)
        if tail is None:
            return []
        after, seq, prev = tail
        lost = 0
        writer = secrets.token_hex(8)  # this append's name on every object it tries to create
        while True:
            entries = _chained(new, seq, prev)
            key = self._key(entries[0].seq)
            body = "".join(e.line() for e in entries).encode("utf-8")
            code = self._create(key, body, writer)
            if code is None:
                return entries
            lost += 1
            if code == "PreconditionFailed":
                found = self._object(key)
                if found is not None:
                    winner, winner_writer = found
                    if winner_writer == writer:
                        # Our own write: botocore retried a PUT whose reply was lost, and the
                        # retry met the object the first try created. The batch is in, once.
                        return entries
                    if unless_run is not None and holds_run(winner, unless_run):
                        return []  # a twin merge of the same run group won: nothing to add
                    after, (seq, prev) = key, self._end_of(key, winner)
            # A 409 (a write to that key in flight) or a 412 whose object is not readable yet
            # leave the position as it was; catching up after the pause finds what landed.
            pause = self.policy.pause(lost, self._rng)
            spent = self._clock() - started
            if spent + pause > self.policy.budget_s:
                raise LedgerError(
                    f"could not append to the S3 ledger {self._where()}: other appends won the race "
                    f"{lost} times in {spent:.1f} s (time budget {self.policy.budget_s:g} s)",
                    hint="raise `[ledger] append_timeout` in drillbook.toml, or spread the runs that "
                    "append at the same moment", url=str(self.location))
            self._sleep(pause)
            tail = self._catch_up(after, seq, prev, unless_run)
            if tail is None:
                return []
            after, seq, prev = tail

    def _catch_up(self, after: str | None, seq: int, prev: str, unless_run: str | None
                  ) -> tuple[str | None, int, str] | None:
        """The tail past object ``after`` (whose last entry is ``seq``/``prev``): key, seq, hash.

        Lists only the keys after ``after`` (``StartAfter``), so a loser that paused while others
        appended jumps to the new tail in one listing instead of losing once per object that
        landed meanwhile. With ``unless_run``, each new object is read: None when one holds it.
        """
        keys = self._ledger_keys(start_after=after)
        text = ""
        for key in keys if unless_run is not None else keys[-1:]:
            text = self._object_text(key) or ""
            if unless_run is not None and holds_run(text, unless_run):
                return None
        if not keys:
            return after, seq, prev
        last_seq, last_hash = self._end_of(keys[-1], text)
        return keys[-1], last_seq, last_hash


def _chained(new: Sequence[NewEntry], seq: int, prev: str) -> list[LedgerEntry]:
    """``new`` chained after entry ``seq`` whose hash is ``prev``."""
    entries = []
    for item in new:
        seq += 1
        entry = chain(item, seq=seq, prev=prev)
        entries.append(entry)
        prev = entry.hash
    return entries


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
