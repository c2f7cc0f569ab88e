"""Signed ledger heads: what makes a *consistent* rewrite of the cadence ledger detectable.

The hash chain and the ``.head`` record catch accidental damage, truncation and an entry
edited without recomputing the chain. Someone with write access to the ledger can recompute
all of them. What they cannot recompute is a signature without the signing identity: a run
that signs (``drillbook run --sign`` keyless in CI, ``--sign-sandbox`` offline) stores one
*signed head* beside the ledger, create-only, named by the first sequence number it appended::

    ledger.jsonl.heads/000000000042.json          a file ledger
    s3://bucket/prefix/heads/000000000042.json    an S3 ledger (If-None-Match: *)

Each holds the head statement and a sigstore bundle over the statement's RFC 8785 bytes::

    {"format": "drillbook-ledger-head/1",
     "head": {"ledger": <hash of entry seq 1>, "location": ..., "run_id": ..., "signed_at": ...,
              "first_seq": 42, "seq": 44, "hash": <hash of entry 44>,
              "entries": [<hash of 42>, <hash of 43>, <hash of 44>]},
     "sigstore": {...}}

An entry's hash covers its ``prev`` link, so a head vouches for the whole chain up to ``seq``;
``entries`` lets verification name the exact entry that changed. Two levels of checking:

- **claims**, on every read, without trust: each head parses, and every hash it lists equals
  the chain's entry at that seq. Catches a rewrite whose author left the heads in place.
- **trust** (``--trusted-root``, ``--staging``, ``--identity/--issuer``): every head's signature
  verifies against the pinned root (and signer), and every entry of the ledger lies in the
  ``first_seq..seq`` range of a verified head, that is, the run that appended it vouched for it.
  Deleting the head that covers a rewritten entry leaves that run's entries unvouched, and a
  later honest run cannot launder the rewrite: it signs only its own entries.

What no stored data reveals is a rollback: the last runs' entries *and* their heads removed
together. That takes an outside record: sigstore's transparency log (keyless heads are in
Rekor), an earlier exported bundle, or S3 Object Lock on the prefix.

Exceptions: :class:`HeadError` (a :class:`~reports.ledger.LedgerError`) when a head cannot be
stored; a malformed head is never raised, it becomes a named :class:`LedgerProblem`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

import rfc8785

from checks.strict_json import DuplicateKeyError, loads_strict
from reports.ledger import LedgerEntry, LedgerError, LedgerProblem, LedgerRead, LocalLedger

if TYPE_CHECKING:
    from reports.evidence_signature import Trust

HEAD_FORMAT = "drillbook-ledger-head/1"
HEADS_SUFFIX = ".heads"  # ledger.jsonl -> ledger.jsonl.heads/
_NAME = re.compile(r"^(\d{12})\.json$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MAX_SEQ = 10**12 - 1  # the 12 digits of a head's name
# A head holds ~5 KB of bundle plus 67 bytes per entry of its run; anything far larger is not one,
# and reading it whole would let a planted file exhaust memory.
MAX_HEAD_BYTES = 16 * 1024 * 1024
_STATEMENT_KEYS = frozenset({"ledger", "location", "run_id", "signed_at", "first_seq", "seq", "hash",
                             "entries"})


class HeadError(LedgerError):
    """A signed head could not be stored (exists already, unwritable, the bucket refused)."""

    default_hint = ("signed heads are create-only: check the ledger's permissions; a head that exists "
                    "already means two runs claimed the same entries")


@dataclass(frozen=True)
class HeadStatement:
    """What a run signs: its own entries' hashes, the last of which commits to the whole chain."""

    ledger: str
    location: str
    run_id: str
    signed_at: str
    first_seq: int
    seq: int
    hash: str
    entries: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"ledger": self.ledger, "location": self.location, "run_id": self.run_id,
                "signed_at": self.signed_at, "first_seq": self.first_seq, "seq": self.seq,
                "hash": self.hash, "entries": list(self.entries)}

    def signed_bytes(self) -> bytes:
        """The exact bytes the signature covers: RFC 8785, so any re-spelling verifies the same."""
        return rfc8785.dumps(self.to_dict())


@dataclass(frozen=True)
class SignedHead:
    """A head as found beside the ledger: where (``name``), what it claims, its sigstore bundle."""

    name: str
    statement: HeadStatement
    bundle: bytes


def statement_for(entries: Sequence[LedgerEntry], *, ledger_id: str, location: str,
                  now: datetime) -> HeadStatement:
    """The statement for one run's appended ``entries`` (consecutive, as ``append`` returns them)."""
    if not entries:
        raise ValueError("a head needs at least one entry")
    return HeadStatement(ledger=ledger_id, location=location, run_id=entries[0].run_id,
                         signed_at=now.isoformat(timespec="seconds"), first_seq=entries[0].seq,
                         seq=entries[-1].seq, hash=entries[-1].hash,
                         entries=tuple(e.hash for e in entries))


def head_name(statement: HeadStatement) -> str:
    return f"{statement.first_seq:012d}.json"


def head_document(statement: HeadStatement, bundle: bytes) -> bytes:
    """The stored file: canonical JSON of format, statement and the sigstore bundle."""
    return rfc8785.dumps({"format": HEAD_FORMAT, "head": statement.to_dict(),
                          "sigstore": json.loads(bundle)})


# ---------------------------------------------------------------- parsing (untrusted input)


def parse_head(name: str, data: bytes) -> SignedHead:
    """One stored head; ValueError naming what is wrong. Everything here is untrusted input."""
    if len(data) > MAX_HEAD_BYTES:
        raise ValueError(f"{len(data)} bytes, more than a head can hold ({MAX_HEAD_BYTES})")
    try:
        document = loads_strict(data.decode("utf-8"))
    except DuplicateKeyError as exc:
        raise ValueError(str(exc)) from exc
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(document, dict) or set(document) != {"format", "head", "sigstore"}:
        raise ValueError("expected an object with exactly format, head and sigstore")
    if document["format"] != HEAD_FORMAT:
        raise ValueError(f"format is {document['format']!r}, expected {HEAD_FORMAT!r}")
    head, bundle = document["head"], document["sigstore"]
    if not isinstance(head, dict) or set(head) != _STATEMENT_KEYS:
        raise ValueError(f"head must hold exactly {', '.join(sorted(_STATEMENT_KEYS))}")
    if not isinstance(bundle, dict):
        raise ValueError("sigstore must be a bundle object")
    for key in ("location", "run_id", "signed_at"):
        if not isinstance(head[key], str):
            raise ValueError(f"head.{key} must be a string")
    for key in ("ledger", "hash"):
        if not isinstance(head[key], str) or not _HEX64.match(head[key]):
            raise ValueError(f"head.{key} must be a lower-case SHA-256")
    first, last = head["first_seq"], head["seq"]
    for key, value in (("first_seq", first), ("seq", last)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_SEQ:
            raise ValueError(f"head.{key} must be an integer from 1 to {_MAX_SEQ}")
    if first > last:
        raise ValueError(f"head.first_seq {first} is after head.seq {last}")
    entries = head["entries"]
    if (not isinstance(entries, list) or len(entries) != last - first + 1
            or not all(isinstance(h, str) and _HEX64.match(h) for h in entries)):
        raise ValueError(f"head.entries must list {last - first + 1} SHA-256 hashes (seq {first}..{last})")
    if entries[-1] != head["hash"]:
        raise ValueError("head.hash is not the hash of its last entry")
    expected = f"{first:012d}.json"
    if PurePosixPath(name).name != expected:
        raise ValueError(f"a head for seq {first}..{last} is named {expected}")
    statement = HeadStatement(ledger=head["ledger"], location=head["location"], run_id=head["run_id"],
                              signed_at=head["signed_at"], first_seq=first, seq=last, hash=head["hash"],
                              entries=tuple(entries))
    try:
        canonical_bundle = rfc8785.dumps(bundle)
    except (ValueError, TypeError, RecursionError) as exc:  # rfc8785's errors are ValueErrors
        raise ValueError(f"sigstore: {exc}") from exc
    return SignedHead(name=name, statement=statement, bundle=canonical_bundle)


# ---------------------------------------------------------------- where heads live


class HeadStore(Protocol):
    """Create-only storage of signed heads beside a ledger."""

    def load_heads(self) -> list[tuple[str, bytes | None]]: ...

    def create_head(self, name: str, data: bytes) -> str: ...


class LocalHeads:
    """``<ledger>.heads/`` beside a file ledger; files are linked into place, never overwritten."""

    def __init__(self, ledger_path: Path) -> None:
        self.dir = ledger_path.with_name(ledger_path.name + HEADS_SUFFIX)

    def load_heads(self) -> list[tuple[str, bytes | None]]:
        """Every entry of the heads folder (a missing folder: none), named ``<folder>/<file>``.

        ``None`` stands for something that is not a regular file (a folder, a symlink).
        """
        try:
            names = sorted(p.name for p in self.dir.iterdir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise LedgerError(f"cannot list the signed heads {self.dir}: {exc.strerror}",
                              path=str(self.dir)) from exc
        found: list[tuple[str, bytes | None]] = []
        for name in names:
            if name.startswith("."):
                continue  # a head being written (see create_head): not there yet
            path = self.dir / name
            try:
                if path.is_symlink() or not path.is_file():
                    found.append((f"{self.dir.name}/{name}", None))
                    continue
                with path.open("rb") as handle:
                    # One byte more than a head may hold: enough to refuse it, never a planted giant.
                    found.append((f"{self.dir.name}/{name}", handle.read(MAX_HEAD_BYTES + 1)))
            except OSError as exc:
                raise LedgerError(f"cannot read the signed head {path}: {exc.strerror}",
                                  path=str(path)) from exc
        return found

    def create_head(self, name: str, data: bytes) -> str:
        """Write, fsync, then hard-link into place: readers never see half a head, nothing is replaced."""
        target = self.dir / name
        tmp = self.dir / f".{name}.{os.getpid()}.tmp"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, target)
            except FileExistsError as exc:
                raise HeadError(f"signed head {target} exists already: heads are create-only",
                                path=str(target)) from exc
        except OSError as exc:
            raise HeadError(f"cannot write the signed head {target}: {exc.strerror}",
                            path=str(target)) from exc
        finally:
            tmp.unlink(missing_ok=True)
        return str(target)


def heads_of(ledger: object) -> HeadStore:
    """Where ``ledger`` keeps its signed heads: a folder beside a file, a sub-prefix on S3."""
    if isinstance(ledger, LocalLedger):
        return LocalHeads(ledger.path)
    if hasattr(ledger, "load_heads") and hasattr(ledger, "create_head"):
        return ledger  # S3Ledger stores its heads itself
    raise LedgerError(f"{ledger!r} cannot keep signed heads")


def sign_run_head(ledger: object, entries: Sequence[LedgerEntry], sign: Callable[[bytes], bytes], *,
                  ledger_id: str, location: str, now: datetime) -> str:
    """Sign the head of one run's ``entries`` and store it create-only; returns where it went."""
    statement = statement_for(entries, ledger_id=ledger_id, location=location, now=now)
    bundle = rfc8785.dumps(json.loads(sign(statement.signed_bytes())))
    return heads_of(ledger).create_head(head_name(statement), head_document(statement, bundle))


# ---------------------------------------------------------------- checking


def check_claims(read: LedgerRead, stored: Sequence[tuple[str, bytes | None]]) -> None:
    """Parse ``stored`` heads into ``read.heads`` and add a problem for every claim the chain breaks.

    Signatures are not looked at here (that needs a trust root): this is what every read can
    afford, and it already catches a rewrite that left the heads in place.
    """
    chain = _chain(read)
    for name, data in stored:
        if data is None:
            read.problems.append(LedgerProblem(0, f"signed head {name} is not a regular file"))
            continue
        try:
            head = parse_head(name, data)
        except ValueError as exc:
            read.problems.append(LedgerProblem(0, f"signed head {name} is not a drillbook signed head: "
                                                  f"{exc}"))
            continue
        read.heads.append(head)
    read.heads.sort(key=lambda h: h.statement.first_seq)
    end = max(chain, default=0)
    rewritten: list[tuple[int, SignedHead]] = []
    for head in read.heads:
        st = head.statement
        if st.seq > end:
            read.problems.append(LedgerProblem(0, (
                f"truncated: signed head {head.name} (run {st.run_id}) vouches for entries up to seq "
                f"{st.seq}, the ledger ends at seq {end}")))
            continue
        first_bad = _first_mismatch(head, chain)
        if first_bad is not None:
            rewritten.append((first_bad, head))
        elif 1 in chain and st.ledger != chain[1].hash:
            read.problems.append(LedgerProblem(0, (
                f"signed head {head.name} names another ledger (first entry {st.ledger[:12]}…, "
                f"this one {chain[1].hash[:12]}…)")))
    if rewritten:
        read.problems.append(_rewrite_problem(read, rewritten))


def _chain(read: LedgerRead) -> dict[int, LedgerEntry]:
    found: dict[int, LedgerEntry] = {}
    for entry in read.entries:
        found.setdefault(entry.seq, entry)  # a duplicated seq is damage read_text names already
    return found


def _first_mismatch(head: SignedHead, chain: dict[int, LedgerEntry]) -> int | None:
    st = head.statement
    for offset, digest in enumerate(st.entries):
        entry = chain.get(st.first_seq + offset)
        if entry is None or entry.hash != digest:
            return st.first_seq + offset
    return None


def _rewrite_problem(read: LedgerRead, rewritten: list[tuple[int, SignedHead]]) -> LedgerProblem:
    """One problem naming the earliest rewritten entry and every signed head that no longer matches."""
    rewritten.sort(key=lambda item: item[0])
    seq, head = rewritten[0]
    entry = _chain(read).get(seq)
    what = f"entry seq {seq}" + (f" ({entry.id or entry.scenario}, run {entry.run_id}, now "
                                 f"{entry.outcome.value})" if entry else "")
    later = [h.name for _, h in rewritten[1:]]
    also = (f"; {len(later)} later signed head(s) no longer match either ({', '.join(later[:3])}"
            f"{', …' if len(later) > 3 else ''}): the chain after it was recomputed") if later else ""
    return LedgerProblem(0, (f"{_where(read)}: {what} was rewritten after run {head.statement.run_id} "
                             f"signed it: its hash does not match signed head {head.name}{also}"))


@dataclass
class HeadsVerdict:
    """What verifying the signed heads with a trust root found."""

    problems: list[LedgerProblem] = field(default_factory=list)
    verified: int = 0
    signers: list[str] = field(default_factory=list)
    covered_to: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_heads(read: LedgerRead, trust: Trust) -> HeadsVerdict:
    """Every head's signature against ``trust``, and every entry vouched for by a verified,
    matching head of the run that appended it."""
    # Imported here: sigstore loads only when a trust root was asked for, not on every read.
    from reports.evidence_signature import verify_signed_bytes

    verdict = HeadsVerdict()
    chain = _chain(read)
    covered: set[int] = set()
    for head in read.heads:
        st = head.statement
        check = verify_signed_bytes(st.signed_bytes(), head.bundle, trusted_root=trust.root,
                                    identity=trust.identity, issuer=trust.issuer,
                                    name=PurePosixPath(head.name).name, check_id="ledger.signed_head")
        if check.problem is not None:
            verdict.problems.append(LedgerProblem(0, f"signed head {head.name} (run {st.run_id}): "
                                                     f"signature not verified: {check.problem}"))
            continue
        verdict.verified += 1
        signer = f"{check.signer} ({check.issuer})"
        if signer not in verdict.signers:
            verdict.signers.append(signer)
        if st.seq <= max(chain, default=0) and _first_mismatch(head, chain) is None:
            covered.update(range(st.first_seq, st.seq + 1))
    uncovered = [seq for seq in sorted(chain) if seq not in covered]
    for first, last in _ranges(uncovered):
        runs = sorted({chain[s].run_id for s in range(first, last + 1) if s in chain})
        span = f"seq {first}" if first == last else f"seq {first}..{last}"
        verdict.problems.append(LedgerProblem(0, (
            f"{_where(read)}: entries {span} (run {', '.join(runs[:3])}{', …' if len(runs) > 3 else ''}) "
            "are vouched for by no verified signed head: appended by a run that did not sign, or its "
            "signed head was deleted or fails; a consistent rewrite of them cannot be ruled out")))
    verdict.covered_to = max(covered, default=0)
    return verdict


def _where(read: LedgerRead) -> str:
    """The ledger as its reader knows it (an S3 ledger's Path spells ``s3:/``)."""
    text = str(read.path)
    return "s3://" + text[4:] if text.startswith("s3:/") and not text.startswith("s3://") else text


def _ranges(numbers: list[int]) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    for n in numbers:
        if found and found[-1][1] == n - 1:
            found[-1] = (found[-1][0], n)
        else:
            found.append((n, n))
    return found
