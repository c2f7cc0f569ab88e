"""The cadence ledger: an append-only, hash-chained record of every scenario outcome.

One JSON object per line (``ledger.jsonl``). Each entry carries the SHA-256 of
the previous entry (``prev``) and its own (``hash``, over the canonical JSON
of every other field), so an edited or deleted entry breaks the chain where
it happened. A sidecar ``ledger.jsonl.head`` records the sequence number and
hash of the last entry: deleting entries from the end, which a chain alone
cannot reveal, shows as a ledger shorter than its head. The head is created
(seq 0) before the first entry and written after every batch, so a writer
killed in between leaves a head that lags (recovered by checking the chain),
never a missing or empty one (damage).

Two entry versions, each parsed strictly (an unknown field is damage):

- v1 (no ``"v"`` field): what drillbook wrote before fleets;
- v2 (``"v": 2``): adds ``member``, the fleet member (one database) the scenario ran against,
  ``null`` outside fleet runs. Written by every append since; a v1 entry keeps its v1 body,
  so its hash, and every old ledger, verify unchanged.

Appends take an exclusive ``fcntl`` lock on ``ledger.jsonl.lock``, check the
tail, and write whole lines with a single ``write`` on an ``O_APPEND``
descriptor followed by ``fsync``: two runs appending at once lose nothing.
Nothing in the ledger is ever rewritten; a damaged ledger refuses appends and
names the damage. Someone with write access can still recompute chain and head
consistently: signed heads (reports/ledger_heads.py) are what catches that.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from checks.errors import DrillbookError
from checks.files import write_atomic
from checks.strict_json import loads_strict
from checks.verdict import Outcome

if TYPE_CHECKING:
    from reports.ledger_heads import SignedHead

GENESIS = "0" * 64
_HEAD_SIZE = 128  # bytes of the padded head record: seq (up to 19 digits) and a SHA-256 fit
_FIELDS = ("seq", "prev", "id", "scenario", "cadence", "pack", "outcome", "run_id", "time",
           "duration_s", "evidence_sha256", "waiver")
_FIELDS_V2 = (*_FIELDS, "v", "member")
ENTRY_VERSION = 2  # what appends write; readers accept 1 and 2


class LedgerError(DrillbookError):
    """The ledger cannot be read or appended to."""

    default_hint = "check the ledger path and its permissions (`[ledger] url` in drillbook.toml)"


class LedgerCorrupt(LedgerError):
    """The chain is broken: an entry was edited, deleted, reordered or truncated."""

    default_hint = ("the ledger is evidence and is never rewritten: keep the damaged file for "
                    "investigation and start a new ledger path (`[ledger] url`)")


@dataclass(frozen=True)
class LedgerEntry:
    """One scenario outcome of one run, chained to the entry before it."""

    seq: int
    prev: str
    id: str | None
    scenario: str
    cadence: str | None
    pack: str | None
    outcome: Outcome
    run_id: str
    time: str
    duration_s: float
    evidence_sha256: str
    waiver: str | None
    hash: str
    member: str | None = None  # the fleet member (v2); None outside fleets and in every v1 entry
    v: int = 1

    def __post_init__(self) -> None:
        if self.v not in (1, 2):
            raise ValueError(f"ledger entry version {self.v} is not one this drillbook writes or reads")
        if self.v == 1 and self.member is not None:
            raise ValueError("a v1 ledger entry cannot name a member")

    def body(self) -> dict[str, Any]:
        """Every hashed field. A v1 body has no ``v``/``member`` keys, so old hashes still match."""
        body: dict[str, Any] = {
            "seq": self.seq, "prev": self.prev, "id": self.id, "scenario": self.scenario,
            "cadence": self.cadence, "pack": self.pack, "outcome": self.outcome.value,
            "run_id": self.run_id, "time": self.time, "duration_s": self.duration_s,
            "evidence_sha256": self.evidence_sha256, "waiver": self.waiver,
        }
        if self.v >= 2:
            body["v"] = self.v
            body["member"] = self.member
        return body

    @property
    def display_id(self) -> str | None:
        """``FLT-01[db-042]`` for a member's entry, ``FLT-01`` otherwise (None without an id)."""
        if self.id is None:
            return None
        return f"{self.id}[{self.member}]" if self.member is not None else self.id

    def line(self) -> str:
        return _canonical({**self.body(), "hash": self.hash}) + "\n"

    @property
    def moment(self) -> datetime:
        return datetime.fromisoformat(self.time)


@dataclass(frozen=True)
class NewEntry:
    """What a run contributes before it is chained (no seq, prev or hash yet)."""

    id: str | None
    scenario: str
    cadence: str | None
    pack: str | None
    outcome: Outcome
    run_id: str
    time: str
    duration_s: float
    evidence_sha256: str
    waiver: str | None = None
    member: str | None = None  # the fleet member the scenario ran against


@dataclass(frozen=True)
class LedgerProblem:
    """Damage found while reading: where (line, seq) and what."""

    line: int
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.detail}" if self.line else self.detail


@dataclass
class LedgerRead:
    """Every entry that could be read, every problem found on the way, and the signed heads found."""

    path: Path
    entries: list[LedgerEntry] = field(default_factory=list)
    problems: list[LedgerProblem] = field(default_factory=list)
    heads: list[SignedHead] = field(default_factory=list)  # reports/ledger_heads.py

    @property
    def ok(self) -> bool:
        return not self.problems


def _canonical(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()


def chain(new: NewEntry, *, seq: int, prev: str) -> LedgerEntry:
    """Give a new entry its place in the chain: sequence number, previous hash, own hash."""
    draft = LedgerEntry(seq=seq, prev=prev, id=new.id, scenario=new.scenario, cadence=new.cadence,
                        pack=new.pack, outcome=new.outcome, run_id=new.run_id, time=new.time,
                        duration_s=round(new.duration_s, 3), evidence_sha256=new.evidence_sha256,
                        waiver=new.waiver, hash="", member=new.member, v=ENTRY_VERSION)
    return _with_hash(draft)


def _with_hash(entry: LedgerEntry) -> LedgerEntry:
    return replace(entry, hash=entry_digest(entry.body()))


def holds_run(text: str, run_id: str) -> bool:
    """Whether ledger ``text`` (lines as written by :meth:`LedgerEntry.line`) has an entry of ``run_id``.

    A substring test, exact because lines are canonical JSON: ``run_id`` is followed by
    ``scenario`` in every version, and the same characters inside another string value would
    have their quotes escaped. Cheap enough to run over the whole ledger on every merge.
    """
    return f'"run_id":{json.dumps(run_id, ensure_ascii=False)},"scenario":' in text


# ---------------------------------------------------------------- reading


def parse_entry(line: str) -> LedgerEntry:
    """One line as an entry (v1 or v2, each with exactly its own fields); ValueError naming what
    is wrong (a repeated key too)."""
    data = loads_strict(line)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    version = _version(data)
    fields = _FIELDS if version == 1 else _FIELDS_V2
    missing = [k for k in (*fields, "hash") if k not in data]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    extra = sorted(set(data) - {*fields, "hash"})
    if extra:
        raise ValueError(f"unknown field(s) {', '.join(extra)}")
    member = data.get("member")
    if member is not None and (not isinstance(member, str) or not member):
        raise ValueError(f"bad value: member must be a non-empty string or null, got {member!r}")
    try:
        entry = LedgerEntry(
            seq=_int(data["seq"]), prev=str(data["prev"]), id=_opt(data["id"]),
            scenario=str(data["scenario"]), cadence=_opt(data["cadence"]), pack=_opt(data["pack"]),
            outcome=Outcome(data["outcome"]), run_id=str(data["run_id"]), time=str(data["time"]),
            duration_s=float(data["duration_s"]), evidence_sha256=str(data["evidence_sha256"]),
            waiver=_opt(data["waiver"]), hash=str(data["hash"]), member=member, v=version,
        )
        datetime.fromisoformat(entry.time)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad value: {exc}") from exc
    return entry


def _version(data: Mapping[str, Any]) -> int:
    """1 for an entry without ``v`` (pre-fleet drillbook), else ``v`` itself, which must be 2."""
    if "v" not in data:
        return 1
    version = data["v"]
    if isinstance(version, bool) or not isinstance(version, int) or version != ENTRY_VERSION:
        raise ValueError(f"entry version {version!r} is unknown: this drillbook reads v1 (no \"v\") "
                         f"and v2 (written by a newer drillbook? upgrade it)")
    return ENTRY_VERSION


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"seq must be an integer, got {value!r}")
    return value


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def read_text(text: str, *, head: Mapping[str, Any] | None, path: Path,
              require_head: bool = True) -> LedgerRead:
    """Check the whole chain in ``text`` (and against ``head``); never raises on damage.

    ``require_head=False`` for stores without a head record (S3: objects are never overwritten).
    """
    result = LedgerRead(path=path)
    if text and not text.endswith("\n"):
        last = text.count("\n") + 1
        result.problems.append(LedgerProblem(last, "truncated: the last entry is incomplete "
                                                   "(no end of line)"))
    prev_hash, prev_seq = GENESIS, 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            result.problems.append(LedgerProblem(number, "empty line: entries are never blank"))
            continue
        try:
            entry = parse_entry(line)
        except (ValueError, json.JSONDecodeError) as exc:
            result.problems.append(LedgerProblem(number, f"not a ledger entry (edited or truncated): {exc}"))
            prev_hash, prev_seq = "?", prev_seq + 1
            continue
        if entry_digest(entry.body()) != entry.hash:
            result.problems.append(LedgerProblem(
                number, f"entry seq {entry.seq} was edited: its content does not match its hash"))
        if entry.seq != prev_seq + 1:
            if entry.seq > prev_seq + 1:
                gap = (f"entry seq {prev_seq + 1}" if entry.seq == prev_seq + 2
                       else f"entries seq {prev_seq + 1}..{entry.seq - 1}")
                result.problems.append(LedgerProblem(number, f"{gap} deleted before seq {entry.seq}"))
            else:
                result.problems.append(LedgerProblem(
                    number, f"entry seq {entry.seq} out of order after seq {prev_seq} (moved or duplicated)"))
        elif prev_hash not in ("?", entry.prev):
            result.problems.append(LedgerProblem(
                number, f"chain broken at seq {entry.seq}: `prev` does not match the hash of the entry "
                "before it (that entry was edited or replaced)"))
        result.entries.append(entry)
        prev_hash, prev_seq = entry.hash, entry.seq
    if head is not None or require_head:
        _check_head(result, head)
    return result


def _check_head(result: LedgerRead, head: Mapping[str, Any] | None) -> None:
    last = result.entries[-1] if result.entries else None
    if head is None:
        if last is not None:
            result.problems.append(LedgerProblem(0, f"the head record ({result.path.name}.head) is missing: "
                                                    "removal of the last entries cannot be ruled out"))
        return
    seq, digest = head.get("seq"), head.get("hash")
    if not isinstance(seq, int) or not isinstance(digest, str):
        result.problems.append(LedgerProblem(0, "the head record is damaged (needs integer seq and hash)"))
        return
    if seq == 0 and (last is None or digest == GENESIS):
        return  # no entry yet, or a writer died before recording its first batch: the head lags
    if last is None or last.seq < seq:
        ends = last.seq if last else 0
        result.problems.append(LedgerProblem(
            0, f"truncated: the head records seq {seq}, the ledger ends at seq {ends} "
            f"(entries {ends + 1}..{seq} were removed)"))
        return
    at_head = next((e for e in result.entries if e.seq == seq), None)
    if at_head is None or at_head.hash != digest:
        result.problems.append(LedgerProblem(0, f"entry seq {seq} does not match the head record"))


class Ledger(Protocol):
    """What runs, status and the cadence step need of a ledger, local or on S3."""

    path: Path

    def read(self) -> LedgerRead: ...

    def append(self, new: Sequence[NewEntry], *, unless_run: str | None = None) -> list[LedgerEntry]:
        """Chain and store ``new`` as one batch; with ``unless_run``, store nothing (return [])
        when the ledger already holds an entry of that run, decided atomically with the append."""
        ...


# ---------------------------------------------------------------- the local file


class LocalLedger:
    """A ledger in a local file, with its ``.head`` and ``.lock`` beside it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def __repr__(self) -> str:
        return f"LocalLedger({str(self.path)!r})"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LedgerError(f"cannot open the ledger lock {self.lock_path}: {exc.strerror}",
                              path=str(self.lock_path)) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _head(self) -> dict[str, Any] | None:
        try:
            raw = self.head_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LedgerError(f"cannot read {self.head_path}: {exc.strerror}",
                              path=str(self.head_path)) from exc
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            return {"seq": None, "hash": None}
        return data if isinstance(data, dict) else {"seq": None, "hash": None}

    def read(self) -> LedgerRead:
        """Every entry, with the chain and the head checked. A missing file is an empty ledger."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raw = b""
        except OSError as exc:
            raise LedgerError(f"cannot read the ledger {self.path}: {exc.strerror}",
                              path=str(self.path)) from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            result = LedgerRead(path=self.path)
            line = raw[: exc.start].count(b"\n") + 1
            result.problems.append(LedgerProblem(line, f"not UTF-8 text at byte {exc.start}: edited"))
            return result
        result = read_text(text, head=self._head(), path=self.path)
        from reports.ledger_heads import LocalHeads, check_claims  # it builds on this module

        check_claims(result, LocalHeads(self.path).load_heads())
        return result

    def append(self, new: Sequence[NewEntry], *, unless_run: str | None = None) -> list[LedgerEntry]:
        """Chain and append ``new`` under an exclusive lock; refuse (LedgerCorrupt) on a damaged tail.

        ``unless_run``: append nothing when an entry of that run is in the file (checked under the
        same lock, so two merges of one run group cannot both append).
        """
        if not new:
            return []
        with self._locked():
            seq, prev = self._tail()
            if unless_run is not None and seq and holds_run(self._text(), unless_run):
                return []
            entries = []
            for item in new:
                seq += 1
                entry = chain(item, seq=seq, prev=prev)
                entries.append(entry)
                prev = entry.hash
            data = "".join(e.line() for e in entries).encode("utf-8")
            try:
                if entries[0].seq == 1 and not self.head_path.exists():
                    # The head exists before the first entry: a writer killed between the entries
                    # and the head then leaves a head that lags (seq 0), never a missing one (damage).
                    self._write_head(0, GENESIS)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    written = os.write(fd, data)
                    if written != len(data):
                        raise LedgerError(f"short write to {self.path}: {written} of {len(data)} bytes",
                                          path=str(self.path))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self._write_head(seq, prev)
            except OSError as exc:
                raise LedgerError(f"cannot append to the ledger {self.path}: {exc.strerror}",
                                  path=str(self.path)) from exc
            return entries

    def _text(self) -> str:
        try:
            return self.path.read_bytes().decode("utf-8", errors="replace")
        except OSError as exc:
            raise LedgerError(f"cannot read the ledger {self.path}: {exc.strerror}",
                              path=str(self.path)) from exc

    def _tail(self) -> tuple[int, str]:
        """Sequence number and hash of the last entry, after checking the tail is intact."""
        last_line = _last_line(self.path)
        head = self._head()
        if last_line is None:
            if head is not None and head.get("seq") not in (0, None):
                raise LedgerCorrupt(f"{self.path} is empty or missing but its head records seq "
                                    f"{head.get('seq')}: the ledger was deleted or truncated",
                                    path=str(self.path))
            return 0, GENESIS
        text, complete = last_line
        if not complete:
            raise LedgerCorrupt(f"{self.path}: the last entry is incomplete (truncated)", path=str(self.path))
        try:
            last = parse_entry(text)
        except (ValueError, json.JSONDecodeError) as exc:
            raise LedgerCorrupt(f"{self.path}: the last line is not a ledger entry: {exc}",
                                path=str(self.path)) from exc
        if entry_digest(last.body()) != last.hash:
            raise LedgerCorrupt(f"{self.path}: the last entry (seq {last.seq}) was edited",
                                path=str(self.path))
        if head is None or head.get("seq") != last.seq or head.get("hash") != last.hash:
            # The head lags only if a writer died between the two writes; anything else is damage.
            full = self.read()
            if not full.ok:
                raise LedgerCorrupt(f"{self.path}: {full.problems[0]}", path=str(self.path))
        return last.seq, last.hash

    def _write_head(self, seq: int, digest: str) -> None:
        """One fixed-length ``pwrite`` under the lock (a rename costs as much as the fsync itself).

        The record is padded to a constant size, so it always overwrites the whole previous one.
        A head that lags after a crash is recovered by checking the chain (see ``_tail``).
        """
        record = (_canonical({"seq": seq, "hash": digest}).ljust(_HEAD_SIZE - 1) + "\n").encode("utf-8")
        try:
            fd = os.open(self.head_path, os.O_WRONLY)
        except FileNotFoundError:
            # Created whole (temp file, rename): a kill between create and write leaves no empty head.
            write_atomic(self.head_path, record, phase="creating the ledger head", what="[ledger] url")
            return
        try:
            os.pwrite(fd, record, 0)
        finally:
            os.close(fd)


def _last_line(path: Path) -> tuple[str, bool] | None:
    """The last line of a file (without reading all of it) and whether it ends with a newline."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            if size == 0:
                return None
            chunk, position = b"", size
            while position > 0:
                step = min(65536, position)
                position -= step
                handle.seek(position)
                chunk = handle.read(step) + chunk
                stripped = chunk[:-1] if chunk.endswith(b"\n") else chunk
                if b"\n" in stripped:
                    break
    except FileNotFoundError:
        return None
    complete = chunk.endswith(b"\n")
    body = chunk[:-1] if complete else chunk
    line = body.rsplit(b"\n", 1)[-1]
    return line.decode("utf-8", errors="replace"), complete
