"""``pgbackrest info --output=json`` and ``pgbackrest verify --output=text`` read (pure; study A2).

``info`` exits 0 whatever the status (a missing stanza, an unreachable repo): the status is
``status.code`` and ``repo[].status.code`` in the JSON, read here. ``verify`` exits 0 with
``status: error``; a WAL gap shows only as the DETAIL ranges that exist, a bad file only as an
INFO line naming it. Both outputs are outside text: any shape this module does not know is a
:class:`~checks.errors.UnusableAnswer` naming what was expected, never a crash.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from checks.errors import NoBackupFound, UnusableAnswer

SEGMENT = re.compile(r"[0-9A-F]{24}")
_LABEL = re.compile(r"[0-9]{8}-[0-9]{6}F(?:_[0-9]{8}-[0-9]{6}[DI])?")
TYPES = ("full", "diff", "incr")
# `Then the newest {full|diff|incr} backup ...`: which set types count (pgBackRest's types: a diff
# holds everything since the last full, so a full is at least as recent a restore point).
COUNTS_AS = {"full": ("full",), "diff": ("full", "diff"), "incr": ("full", "diff", "incr")}


@dataclass(frozen=True)
class BackupSet:
    """One backup set of one repo."""

    label: str
    type: str
    start: datetime
    stop: datetime
    archive_start: str | None
    archive_stop: str | None
    repo: int
    db_id: int
    error: bool
    size: int


@dataclass(frozen=True)
class Archive:
    """One WAL archive of one repo (``archive[]``): only its min and max segment, no gap information."""

    id: str
    db_id: int
    repo: int
    min: str | None
    max: str | None


@dataclass(frozen=True)
class StanzaInfo:
    """One stanza as ``info`` reports it."""

    name: str
    code: int
    message: str
    repos: dict[int, tuple[int, str]]  # repo key → (status code, message)
    versions: dict[tuple[int, int], str]  # (db id, repo key) → PostgreSQL major ("15")
    archives: tuple[Archive, ...] = ()
    backups: tuple[BackupSet, ...] = field(default=())

    def usable(self, repo: int) -> tuple[BackupSet, ...]:
        """Repo ``repo``'s sets without an error flag, oldest stop first."""
        mine = (b for b in self.backups if b.repo == repo and not b.error)
        return tuple(sorted(mine, key=lambda b: b.stop))

    def archive_of(self, backup: BackupSet) -> Archive | None:
        return next((a for a in self.archives if a.repo == backup.repo and a.db_id == backup.db_id), None)

    def major(self, backup: BackupSet) -> str | None:
        return self.versions.get((backup.db_id, backup.repo))


def parse_info(text: str) -> list[StanzaInfo]:
    """The stanzas of an ``info --output=json`` answer; UnusableAnswer on any unknown shape."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UnusableAnswer(f"pgbackrest info did not answer JSON: {exc}"[:300]) from None
    stanzas = _list(data, "the answer")
    return [_stanza(item) for item in stanzas]


def stanza_for(stanzas: list[StanzaInfo], stanza: str, repo: int) -> StanzaInfo:
    """The stanza, usable in ``repo``; NoBackupFound naming the stanza, the repo and pgBackRest's words."""
    found = next((s for s in stanzas if s.name == stanza), None)
    if found is None:
        raise NoBackupFound(f"pgbackrest info does not list stanza `{stanza}`", stanza=stanza, repo=repo)
    code, message = found.repos.get(repo, (found.code, found.message))
    if repo not in found.repos:
        raise NoBackupFound(f"stanza `{stanza}`: pgbackrest info reports no repo{repo} "
                            f"(status {found.code}: {found.message})", stanza=stanza, repo=repo,
                            hint="check `repo` and the repoN-* options of this store")
    if code != 0:
        what = {1: "the stanza does not exist there", 2: "the stanza holds no valid backup set"}.get(
            code, "the repository could not be read")
        raise NoBackupFound(f"stanza `{stanza}` in repo{repo}: {message} (status {code}): {what}",
                            stanza=stanza, repo=repo, status=code,
                            hint="check the store's `stanza`, `repo` and repoN-* options (`pgbackrest info` "
                            "with the same options lists the stanzas), and that the backup job ran")
    return found


def choose(info: StanzaInfo, repo: int, target: datetime | None) -> BackupSet:
    """The newest set of ``repo``, or the newest whose stop is at or before ``target``."""
    sets = info.usable(repo)
    if not sets:
        raise NoBackupFound(f"stanza `{info.name}` in repo{repo} holds no backup set", stanza=info.name,
                            repo=repo)
    if target is None:
        return sets[-1]
    fitting = [b for b in sets if b.stop <= target]
    if not fitting:
        raise NoBackupFound(f"no backup set of stanza `{info.name}` in repo{repo} ended at or before "
                            f"{target.isoformat()} (the oldest, {sets[0].label}, ended "
                            f"{sets[0].stop.isoformat()})", stanza=info.name, repo=repo,
                            target=target.isoformat(), hint="pick a target after the oldest backup's end")
    return fitting[-1]


def newest_of(info: StanzaInfo, repo: int, kind: str | None = None) -> BackupSet | None:
    """The newest set (by stop) of ``repo`` counting as ``kind`` (see :data:`COUNTS_AS`), or None."""
    allowed = COUNTS_AS[kind] if kind else TYPES
    sets = [b for b in info.usable(repo) if b.type in allowed]
    return sets[-1] if sets else None


def _stanza(item: Any) -> StanzaInfo:
    obj = _dict(item, "a stanza")
    name = _str(obj.get("name"), "stanza name")
    status = _dict(obj.get("status"), f"stanza `{name}` status")
    repos: dict[int, tuple[int, str]] = {}
    for repo in _list(obj.get("repo", []), f"stanza `{name}` repo"):
        entry = _dict(repo, f"stanza `{name}` repo")
        repo_status = _dict(entry.get("status"), f"stanza `{name}` repo status")
        code = _int(repo_status.get("code"), "repo status code")
        message = _str(repo_status.get("message", ""), "repo status message")
        repos[_int(entry.get("key"), "repo key")] = (code, message)
    versions: dict[tuple[int, int], str] = {}
    for db in _list(obj.get("db", []), f"stanza `{name}` db"):
        entry = _dict(db, "a db entry")
        versions[(_int(entry.get("id"), "db id"), _int(entry.get("repo-key"), "db repo-key"))] = \
            _str(entry.get("version"), "db version")
    archives = tuple(_archive(a) for a in _list(obj.get("archive", []), f"stanza `{name}` archive"))
    backups = tuple(_backup(b) for b in _list(obj.get("backup", []), f"stanza `{name}` backup"))
    return StanzaInfo(name=name, code=_int(status.get("code"), "stanza status code"),
                      message=_str(status.get("message", ""), "stanza status message"), repos=repos,
                      versions=versions, archives=archives, backups=backups)


def _archive(item: Any) -> Archive:
    obj = _dict(item, "an archive entry")
    db = _dict(obj.get("database"), "archive database")
    return Archive(id=_str(obj.get("id"), "archive id"), db_id=_int(db.get("id"), "archive db id"),
                   repo=_int(db.get("repo-key"), "archive repo-key"),
                   min=_segment(obj.get("min"), "archive min"), max=_segment(obj.get("max"), "archive max"))


def _backup(item: Any) -> BackupSet:
    obj = _dict(item, "a backup set")
    label = _str(obj.get("label"), "backup label")
    if not _LABEL.fullmatch(label):
        raise UnusableAnswer(f"pgbackrest info: backup label {label[:80]!r} is not a pgBackRest label")
    kind = _str(obj.get("type"), f"backup {label} type")
    if kind not in TYPES:
        raise UnusableAnswer(f"pgbackrest info: backup {label} has type {kind[:20]!r}, not one of {TYPES}")
    stamps = _dict(obj.get("timestamp"), f"backup {label} timestamp")
    archive = obj.get("archive") or {}
    archive = _dict(archive, f"backup {label} archive")
    db = _dict(obj.get("database"), f"backup {label} database")
    info = obj.get("info") or {}
    size = _dict(info, f"backup {label} info").get("size", 0)
    error = obj.get("error", False)
    if not isinstance(error, bool):
        raise UnusableAnswer(f"pgbackrest info: backup {label} error flag is {type(error).__name__}")
    return BackupSet(label=label, type=kind, start=_time(stamps.get("start"), f"backup {label} start"),
                     stop=_time(stamps.get("stop"), f"backup {label} stop"),
                     archive_start=_segment(archive.get("start"), f"backup {label} archive start"),
                     archive_stop=_segment(archive.get("stop"), f"backup {label} archive stop"),
                     repo=_int(db.get("repo-key"), f"backup {label} repo-key"),
                     db_id=_int(db.get("id"), f"backup {label} db id"), error=error,
                     size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else 0)


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UnusableAnswer(f"pgbackrest info: {what} is {type(value).__name__}, expected an object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise UnusableAnswer(f"pgbackrest info: {what} is {type(value).__name__}, expected an array")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise UnusableAnswer(f"pgbackrest info: {what} is {type(value).__name__}, expected a string")
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnusableAnswer(f"pgbackrest info: {what} is {type(value).__name__}, expected an integer")
    return value


def _segment(value: Any, what: str) -> str | None:
    if value is None:
        return None
    text = _str(value, what)
    if not SEGMENT.fullmatch(text):
        raise UnusableAnswer(f"pgbackrest info: {what} {text[:40]!r} is not a WAL segment name")
    return text


def _time(value: Any, what: str) -> datetime:
    seconds = _int(value, what)
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise UnusableAnswer(f"pgbackrest info: {what} {seconds} is not a Unix time") from None
