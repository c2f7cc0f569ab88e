"""The ``kind = "pgbackrest"`` source: a stanza in one pgBackRest repository (study A2, B3).

Every pgbackrest child runs with ``--config=/dev/null`` (no file in /etc is read), the store's
options as ``PGBACKREST_*`` environment and nothing else of drillbook's environment (secrets
included only as the operator configured them), as the server user, with its lock and log paths
in this drill's scratch. **choose** reads ``info --output=json`` (the status codes, never the exit
code: 0 on errors); **materialize** runs ``restore --set=<label> --type=none`` (no recovery
settings written: drillbook writes its own); **fetch_wal** runs ``archive-get`` itself for each
segment from the set's start to the archive's max into scratch, so the recovered server's
restore_command is only a ``cp`` and never sees the repository or its credentials.
**archive_listing** (the point-in-time steps) lists the archive with ``repo-ls`` and fetches one
segment with ``repo-get`` (no data directory needed), decompressing gzip and bzip2 itself.
"""

from __future__ import annotations

import bz2
import gzip
import json
import re
import shutil
import subprocess
import tempfile
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from checks.errors import EnvironmentError_, RestoreFailed, RestoreTimedOut, UnusableAnswer
from checks.pgbackrest_info import StanzaInfo, choose, newest_of, parse_info, stanza_for
from checks.pgbackrest_verify import VerifyReport, parse_verify
from checks.pitr import BackupHistory
from checks.redact import redact
from drills.deadlines import Deadline
from drills.pgbackrest_options import environment
from drills.pitr_sample import WalListing as ArchiveListing
from drills.pitr_sample import check_segment_size
from drills.processes import hand_to_server_user, server_user_kwargs
from drills.targets import StoreSpec

from .source import Chosen, WalCopy

INFO_TIMEOUT_S = 120.0
_PATH = "/usr/bin:/bin"
_SEGMENT_SIZES = {1 << n for n in range(20, 31)}  # 1 MB … 1 GB: what initdb --wal-segsize allows
# An archived file in the repo: <segment>-<sha1>[.<codec>] in its <timeline+log> folder (A2).
_ARCHIVED = re.compile(r"([0-9A-F]{16})/([0-9A-F]{24})-[0-9a-f]{40}(\.gz|\.bz2|\.lz4|\.zst)?")
_DECOMPRESS = {".gz": gzip.GzipFile, ".bz2": bz2.BZ2File}
_LIST_BYTES = 64 << 20  # repo-ls JSON of a year of archive is a few MB: more is no listing


def binary() -> str:
    """The pgbackrest executable, or EnvironmentError_ saying how to install it."""
    found = shutil.which("pgbackrest", path=_PATH) or shutil.which("pgbackrest")
    if found is None:
        raise EnvironmentError_("pgbackrest is not installed",
                                hint="apt-get install pgbackrest (Debian 12: 2.45)")
    return found


def run(spec: StoreSpec, *args: str, timeout_s: float,
        scratch: Path | None = None) -> subprocess.CompletedProcess[str]:
    """One pgbackrest command for the store's stanza and repo; never raises on its exit status."""
    env = {"PATH": _PATH, "LANG": "C.UTF-8", **environment(spec), "PGBACKREST_LOG_LEVEL_FILE": "off"}
    if scratch is not None:  # never /tmp/pgbackrest, shared with other runs (A2)
        env.update(PGBACKREST_LOCK_PATH=str(scratch / "lock"), PGBACKREST_LOG_PATH=str(scratch / "log"),
                   PGBACKREST_SPOOL_PATH=str(scratch / "spool"))
    argv = [binary(), "--config=/dev/null", f"--stanza={spec.stanza}", f"--repo={spec.repo or 1}", *args]
    try:
        return subprocess.run(argv, env=env, capture_output=True, text=True, errors="replace", check=False,
                              timeout=timeout_s, cwd=str(scratch or "/"), **server_user_kwargs())
    except subprocess.TimeoutExpired:
        raise RestoreTimedOut(f"pgbackrest {args[-1]} for stanza `{spec.stanza}` did not finish within "
                              f"{timeout_s:.0f} s", store=spec.name) from None


def said(proc: subprocess.CompletedProcess[str]) -> str:
    """What pgbackrest said, redacted and short: its ERROR lines, else the end of its output."""
    text = "\n".join(x for x in (proc.stdout, proc.stderr) if x)
    errors = [line.split("ERROR: ", 1)[1].strip() for line in text.splitlines() if "ERROR: " in line]
    return redact(" / ".join(errors) if errors else " ".join(text.split()[-40:]))[:1000]


def read_info(spec: StoreSpec, *, timeout_s: float = INFO_TIMEOUT_S) -> StanzaInfo:
    """``info --output=json`` for the store's stanza and repo, usable or a NoBackupFound naming both."""
    proc = run(spec, "--log-level-console=off", "--log-level-stderr=warn", "--output=json", "info",
               timeout_s=timeout_s)
    if proc.returncode != 0:
        raise UnusableAnswer(f"pgbackrest info for stanza `{spec.stanza}` exited {proc.returncode}: "
                             f"{said(proc)}", store=spec.name, hint="check the store's pgbackrest options")
    return stanza_for(parse_info(proc.stdout), spec.stanza or "", spec.repo or 1)


def verify(spec: StoreSpec, *, timeout_s: float) -> VerifyReport:
    """``verify`` at detail level, parsed (its exit status is 0 even when it finds errors)."""
    proc = run(spec, "--output=text", "--verbose", "--log-level-console=detail", "--log-level-stderr=off",
               "verify", timeout_s=timeout_s)
    try:
        return parse_verify(redact(proc.stdout))  # its log lines may quote an option value
    except UnusableAnswer as exc:
        raise UnusableAnswer(f"{exc.message} (exit {proc.returncode}; {said(proc)})",
                             store=spec.name) from None


class PgBackRestSource:
    """A stanza's backup sets in one repo, restored and fed WAL by pgbackrest itself."""

    kind = "pgbackrest"
    format = "pgbackrest"

    def __init__(self, spec: StoreSpec) -> None:
        self.spec = spec
        self.archive = f"stanza `{spec.stanza}` repo{spec.repo or 1}"
        self._info: StanzaInfo | None = None
        self._datadir: Path | None = None
        self._deadline: Deadline | None = None
        self._archive_max: str | None = None

    def choose(self, target: datetime | None) -> Chosen:
        """The newest set, or the newest whose stop is at or before ``target`` (refused before restoring)."""
        info = self._info = read_info(self.spec)
        chosen = choose(info, self.spec.repo or 1, target)
        archive = info.archive_of(chosen)
        self._archive_max = archive.max if archive else None
        return Chosen(key=chosen.label, taken=chosen.start, end=chosen.stop, major=info.major(chosen),
                      start_segment=chosen.archive_start, size=chosen.size,
                      details={"type": chosen.type, "stop": chosen.stop.isoformat(),
                               "archive_id": archive.id if archive else None,
                               "archive_max": self._archive_max})

    def materialize(self, chosen: Chosen, datadir: Path, deadline: Deadline) -> dict[str, Any]:
        """``pgbackrest restore --set=<label> --type=none`` into ``datadir``, as the server user."""
        self._datadir, self._deadline = datadir, deadline
        scratch = self._scratch(datadir)
        hand_to_server_user(datadir)
        proc = run(self.spec, f"--pg1-path={datadir}", f"--set={chosen.key}", "--type=none",
                   "--log-level-console=warn", "--log-level-stderr=off", "restore",
                   timeout_s=max(deadline.remaining(), 1.0), scratch=scratch)
        if proc.returncode != 0:
            raise RestoreFailed(f"pgbackrest restore of set {chosen.key} ({self.archive}) failed "
                                f"(exit {proc.returncode}): {said(proc)}", key=chosen.key,
                                store=self.spec.name,
                                hint="run `pgbackrest verify` on this repository: a set that does not "
                                "restore is no backup")
        return {"set": chosen.key, "type": chosen.details.get("type")}

    def fetch_wal(self, first_segment: str, dest: Path) -> WalCopy:
        """``archive-get`` each segment from ``first_segment`` to the archive's max into ``dest``.

        A segment archive-get cannot find inside that range is the gap (``first_missing``); fetching
        stops there, since recovery cannot pass it.
        """
        last = self._archive_max
        if self._datadir is None or last is None or (last[:8] == first_segment[:8] and last < first_segment):
            raise RestoreFailed(f"{self.archive}: the WAL archive's newest segment ({last}) is before the "
                                f"set's start {first_segment}", segment=first_segment, store=self.spec.name)
        # The archive went on on a later timeline (a promotion): recovery stays on the set's
        # (recovery_target_timeline=current), so fetch that one to its end; no gap is known there.
        until = last if last[:8] == first_segment[:8] else None
        scratch = self._scratch(self._datadir)
        hand_to_server_user(dest)
        segment, previous, count, size, copied, missing = first_segment, first_segment, 0, 0, 0, None
        while True:
            if self._deadline is not None and self._deadline.expired():
                raise RestoreTimedOut(f"fetching WAL from {self.archive} took past the limit (at {segment})",
                                      store=self.spec.name)
            proc = run(self.spec, f"--pg1-path={self._datadir}", "--log-level-console=warn",
                       "--log-level-stderr=off", "archive-get", segment, str(dest / segment),
                       timeout_s=INFO_TIMEOUT_S, scratch=scratch)
            if proc.returncode == 1:  # "not found" (A2): inside the range, that is the gap
                if until is None and count:
                    return WalCopy(last=previous, first_missing=None, count=count, bytes=copied)
                missing = segment
                break
            if proc.returncode != 0:
                raise RestoreFailed(f"pgbackrest archive-get {segment} from {self.archive} failed "
                                    f"(exit {proc.returncode}): {said(proc)}", segment=segment,
                                    store=self.spec.name)
            got = (dest / segment).stat().st_size
            size = size or got
            if size not in _SEGMENT_SIZES:
                raise RestoreFailed(f"{segment} from {self.archive} is {got} bytes: not a WAL segment",
                                    segment=segment, store=self.spec.name)
            count, copied = count + 1, copied + got
            if until is not None and segment >= until:
                break
            previous, segment = segment, next_segment(segment, size)
        return WalCopy(last=last, first_missing=missing, count=count, bytes=copied)

    def archive_listing(self) -> ArchiveListing:
        """The newest set's archive (``repo-ls``) and the stanza's sets, for the point-in-time steps."""
        info = self._info = self._info or read_info(self.spec)
        repo = self.spec.repo or 1
        newest = newest_of(info, repo)
        archive = info.archive_of(newest) if newest else None
        if archive is None:
            raise UnusableAnswer(f"{self.archive} has no backup set with a WAL archive", store=self.spec.name,
                                 hint="`pgbackrest info` lists the sets and the archive")
        path = f"archive/{self.spec.stanza}/{archive.id}"
        proc = run(self.spec, "--log-level-console=off", "--log-level-stderr=warn", "--output=json",
                   "--recurse", "repo-ls", path, timeout_s=INFO_TIMEOUT_S)
        if proc.returncode != 0 or len(proc.stdout) > _LIST_BYTES:
            raise UnusableAnswer(f"pgbackrest repo-ls {path} ({self.archive}) exited {proc.returncode}: "
                                 f"{said(proc)}", store=self.spec.name)
        files = archived_files(proc.stdout, path)
        backups = [BackupHistory(b.label, b.archive_start, b.stop, b.start)
                   for b in info.usable(repo) if b.archive_start and info.archive_of(b) == archive]

        def fetch(segment: str, dest: Path) -> None:
            self._repo_get(files[segment], dest / segment)

        segments = sorted(files)
        size = 16 << 20
        if segments:  # the repo stores segments compressed: the newest one, fetched, tells the size
            with tempfile.TemporaryDirectory(prefix="drillbook-pgbr-") as probe:
                hand_to_server_user(Path(probe))
                size = self._repo_get(files[segments[-1]], Path(probe) / segments[-1])
            check_segment_size(size, segments[-1], self.archive)
        return ArchiveListing(where=self.archive, segments=segments, backups=backups, segment_bytes=size,
                              fetch=fetch)

    def _repo_get(self, key: str, dest: Path) -> int:
        """``repo-get`` one archived file into ``dest`` (decompressed by drillbook); its size."""
        codec = next((c for c in _DECOMPRESS if key.endswith(c)), None)
        if key.endswith((".lz4", ".zst")):
            raise UnusableAnswer(f"{key} in {self.archive} is compressed with {key.rsplit('.', 1)[1]}: "
                                 "drillbook reads gzip and bzip2 archives", store=self.spec.name,
                                 hint="set compress-type=gz for the archive, or check continuity with "
                                 "`pgbackrest verify`")
        raw = dest.with_name(dest.name + ".raw")
        env = {"PATH": _PATH, "LANG": "C.UTF-8", **environment(self.spec), "PGBACKREST_LOG_LEVEL_FILE": "off"}
        argv = [binary(), "--config=/dev/null", f"--stanza={self.spec.stanza}",
                f"--repo={self.spec.repo or 1}", "--log-level-console=off", "--log-level-stderr=error",
                "repo-get", key]
        with raw.open("wb") as out:
            try:
                proc = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.PIPE, check=False,
                                      timeout=INFO_TIMEOUT_S, cwd="/", stdin=subprocess.DEVNULL,
                                      **server_user_kwargs())
            except subprocess.TimeoutExpired:
                raise RestoreTimedOut(f"pgbackrest repo-get {key} did not finish within "
                                      f"{INFO_TIMEOUT_S:.0f} s", store=self.spec.name) from None
        if proc.returncode != 0:
            raw.unlink(missing_ok=True)
            raise UnusableAnswer(f"pgbackrest repo-get {key} ({self.archive}) exited {proc.returncode}: "
                                 f"{redact(proc.stderr.decode('utf-8', 'replace').strip())[:300]}",
                                 store=self.spec.name)
        size = 0
        with raw.open("rb") as file, dest.open("wb") as out:
            stream: IO[bytes] = _DECOMPRESS[codec](fileobj=file) if codec else file
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > 1 << 30:
                    raise UnusableAnswer(f"{key} decompresses to more than 1 GiB: not a WAL segment",
                                         store=self.spec.name)
                out.write(chunk)
        raw.unlink()
        dest.chmod(0o644)
        return size

    @staticmethod
    def _scratch(datadir: Path) -> Path:
        """pgbackrest's private lock/log/spool directory beside the data directory (in scratch)."""
        scratch = datadir.parent / "pgbackrest"
        if not scratch.exists():
            scratch.mkdir(mode=0o700)
            hand_to_server_user(scratch)
        return scratch


def archived_files(text: str, path: str) -> dict[str, str]:
    """``repo-ls --recurse --output=json`` of an archive id → segment name → its repo path.

    Only ``<timeline+log>/<segment>-<sha1>[.codec]`` names count (history and ``.backup`` files, and
    anything else pgbackrest might print, are not segments); the first of two copies wins.
    """
    try:
        entries = json.loads(text)
    except ValueError:
        entries = None
    if not isinstance(entries, dict):
        raise UnusableAnswer(f"pgbackrest repo-ls {path} printed no JSON object")
    files: dict[str, str] = {}
    for name in sorted(entries):
        found = _ARCHIVED.fullmatch(name)
        if found and found.group(1) == found.group(2)[:16]:
            files.setdefault(found.group(2), f"{path}/{name}")
    return files


def next_segment(name: str, segment_bytes: int) -> str:
    """The WAL segment after ``name`` on its timeline (``segment_bytes`` per segment)."""
    per_log = 0x100000000 // segment_bytes
    number = int(name[8:16], 16) * per_log + int(name[16:], 16) + 1
    return f"{name[:8]}{number // per_log:08X}{number % per_log:08X}"
