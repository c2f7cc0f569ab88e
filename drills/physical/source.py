"""The seam between the generic recovery driver (recovery.py) and one physical backup tool.

A source answers four questions, each in drillbook's own process (never in the recovered server):

- ``choose(target)``: which backup — the newest, or for a target the newest whose END is at or
  before it (PostgreSQL would silently land later otherwise, study A4). Raises
  :class:`~checks.errors.NoBackupFound` / :class:`~checks.errors.RestoreFailed` naming what and where.
- ``materialize(chosen, datadir, deadline)``: the tool's own restore into ``datadir`` (created
  0700 by the driver, empty). The tree may be owned by drillbook: the driver hands it to the
  server user afterwards. Returns journal notes (plain JSON values, no secret).
- ``fetch_wal(first_segment, dest)``: copy or download the archive's segments from
  ``first_segment`` on (and the timeline ``.history`` files) into ``dest`` in scratch, so the
  untrusted server's ``restore_command`` is only a ``cp`` from there: no secret, no network.
  Returns :class:`WalCopy`; a segment missing inside the range is ``first_missing``, not an error
  (the generated restore_command exits 126 on it, so recovery aborts naming it).

- ``archive_listing()``: for the point-in-time steps (sampling, continuity, a gap's range), without
  restoring: the archive's segment names, the backups it knows (start segment, end) and its segment
  size, as :class:`drills.pitr_sample.WalListing`, whose ``fetch(segment, directory)`` copies one
  segment into scratch for pg_waldump (the server user never reads the archive itself).

Optional: ``segment_location(segment)`` — where the archive keeps a segment (an S3 key), named
when recovery stops at a missing one.

Attributes: ``kind`` (the store kind, e.g. ``"basebackup"``), ``archive`` (where the WAL lives,
for messages: a directory, URL or ``stanza … repo N``, never a secret) and ``format`` (the
evidence's ``format``, e.g. ``"pg_basebackup"``). The driver does everything else: the major check
(``Chosen.major`` before materializing, ``PG_VERSION`` after), quarantine, ``backup_label``'s start
segment when ``Chosen.start_segment`` is None, forced settings, start, wait, first query, cleanup.
A source may keep state between the calls (one source object serves one drill).
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from drills.deadlines import Deadline
from drills.pitr_sample import WalListing
from drills.processes import SERVER_USER, running_as_root


@dataclass(frozen=True)
class Chosen:
    """The backup a source picked: enough for the driver's checks and evidence."""

    key: str                            # label / id / directory name: named in every verdict
    taken: datetime                     # when it started (the evidence's backup_time)
    end: datetime | None = None         # when it ended (STOP TIME), if known before restoring
    major: str | None = None            # PostgreSQL major ("15"), if known before restoring
    start_segment: str | None = None    # its start WAL segment, if known before restoring
    size: int = 0                       # bytes, as the tool reports (0 = unknown)
    details: dict[str, Any] = field(default_factory=dict)  # tool-specific evidence (no secret)


@dataclass(frozen=True)
class WalCopy:
    """What ``fetch_wal`` put in scratch: the newest segment, the first missing inside the range."""

    last: str
    first_missing: str | None
    count: int
    bytes: int


class Source(Protocol):
    """One physical backup tool behind the driver (see the module docstring)."""

    kind: str
    archive: str
    format: str

    def choose(self, target: datetime | None) -> Chosen: ...

    def materialize(self, chosen: Chosen, datadir: Path, deadline: Deadline) -> dict[str, Any]: ...

    def fetch_wal(self, first_segment: str, dest: Path) -> WalCopy: ...

    def archive_listing(self) -> WalListing: ...


def chown_tree(path: Path) -> None:
    """Hand a tree to the server user (drillbook may run as root; the server must own its files)."""
    if not running_as_root():
        return
    entry = pwd.getpwnam(SERVER_USER)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(Path(root) / name, entry.pw_uid, entry.pw_gid)
    os.lchown(path, entry.pw_uid, entry.pw_gid)
