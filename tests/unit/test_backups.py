"""Backup checks: newest backup, freshness, retention, dump formats (on real dumps), checksums."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import pwd
import random
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from checks.backups import (
    BackupObject,
    DumpFormat,
    backup_freshness,
    backup_retention,
    checksum_matches,
    compile_key_pattern,
    detect_format,
    gunzip_head,
    newest_backup,
    parse_checksum_sidecar,
)
from checks.errors import BackupUnreadable, ConfigError, EnvironmentError_, NoBackupFound
from checks.verdict import Outcome
from drills import pgtools

NOW = datetime(2026, 11, 22, 1, 10, tzinfo=UTC)
HEAD = 64 * 1024
FIXTURES = Path(os.environ.get("DRILLBOOK_FIXTURES")
                or Path(__file__).resolve().parents[3] / "shared" / "fixtures")
PAGILA = FIXTURES / "postgres" / "pagila"


def obj(key: str, modified: datetime = NOW, size: int = 100) -> BackupObject:
    return BackupObject(key=key, size=size, last_modified=modified)


def nightly(day: int, month: int = 11, hour: int = 2) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


# -- newest backup -----------------------------------------------------------------------------


class TestNewestBackup:
    pattern = compile_key_pattern("sark-backup-%Y%m%d-%H%M.dump")

    def test_key_date_wins_over_last_modified(self) -> None:
        """With a pattern, the date in the key decides, not when the object was uploaded."""
        objects = [
            obj("sark/postgres/sark-backup-20261121-0200.dump", modified=nightly(1)),
            obj("sark/postgres/sark-backup-20261120-0200.dump", modified=nightly(21)),  # re-uploaded later
        ]
        backup, taken = newest_backup(objects, pattern=self.pattern)
        assert backup.key.endswith("20261121-0200.dump")
        assert taken == nightly(21)

    def test_sidecars_and_non_matching_keys_are_ignored(self) -> None:
        """A .sha256/.md5 sidecar or an unrelated file is never the newest backup."""
        objects = [
            obj("sark/postgres/sark-backup-20261120-0200.dump"),
            obj("sark/postgres/sark-backup-20261121-0200.dump.sha256"),
            obj("sark/postgres/sark-backup-20261121-0200.dump.MD5"),
            obj("sark/postgres/README.txt"),
        ]
        backup, taken = newest_backup(objects, pattern=self.pattern)
        assert backup.key == "sark/postgres/sark-backup-20261120-0200.dump"
        assert taken == nightly(20)

    def test_without_pattern_last_modified_decides_and_sidecars_do_not_count(self) -> None:
        """Without a pattern the newest LastModified wins; the sidecar written after its dump does not."""
        objects = [
            obj("a.dump", modified=nightly(20)),
            obj("b.dump", modified=nightly(21)),
            obj("b.dump.sha256", modified=nightly(21) + timedelta(seconds=5)),
            obj("folder/", modified=nightly(22)),  # a console-made "directory" placeholder
        ]
        backup, taken = newest_backup(objects, pattern=None)
        assert backup.key == "b.dump"
        assert taken == nightly(21)

    def test_same_key_date_is_decided_by_upload_time(self) -> None:
        """Two backups on one day under a day-only pattern: the later upload is newest."""
        pattern = compile_key_pattern("db-%Y%m%d*.dump")
        objects = [obj("db-20261121-b.dump", modified=nightly(21, hour=3)),
                   obj("db-20261121-a.dump", modified=nightly(21, hour=4))]
        backup, taken = newest_backup(objects, pattern=pattern)
        assert backup.key == "db-20261121-a.dump"
        assert taken == datetime(2026, 11, 21, tzinfo=UTC)

    def test_no_objects(self) -> None:
        """An empty store is NoBackupFound saying nothing was seen."""
        with pytest.raises(NoBackupFound, match="0 objects seen"):
            newest_backup([], pattern=None)

    def test_nothing_matches_the_pattern(self) -> None:
        """When no key matches, the error names how many objects were seen, the pattern and examples."""
        objects = [obj("backup-2026-11-21.dump"), obj("backup-2026-11-20.dump"),
                   obj("backup-2026-11-20.dump.sha256")]
        with pytest.raises(NoBackupFound) as info:
            newest_backup(objects, pattern=self.pattern)
        message = info.value.message
        assert "3 objects seen" in message
        assert "'sark-backup-%Y%m%d-%H%M.dump'" in message
        assert "backup-2026-11-21.dump" in message
        assert info.value.hint

    def test_only_sidecars(self) -> None:
        """A store holding only checksum files holds no backup."""
        with pytest.raises(NoBackupFound, match="1 checksum sidecars"):
            newest_backup([obj("x.dump.sha256")], pattern=None)


# -- freshness ---------------------------------------------------------------------------------


class TestBackupFreshness:
    def test_within_the_limit_passes_with_a_readable_message(self) -> None:
        """A 23h 10m old backup passes a 26h limit, and the message says age, time and limit."""
        verdict = backup_freshness(nightly(21), now=NOW, max_age=timedelta(hours=26))
        assert verdict.outcome is Outcome.PASSED
        assert verdict.id == "backup.freshness"
        assert verdict.message == "newest backup is 23h 10m old (taken 2026-11-21T02:00Z), limit 26h"
        assert verdict.measured == timedelta(hours=23, minutes=10)
        assert verdict.expected == "<= 26h"

    def test_exactly_at_the_limit_passes(self) -> None:
        """Age equal to the limit is within it (`<=`)."""
        verdict = backup_freshness(NOW - timedelta(hours=26), now=NOW, max_age=timedelta(hours=26))
        assert verdict.outcome is Outcome.PASSED

    def test_one_second_over_fails(self) -> None:
        """One second past the limit fails, naming the age."""
        taken = NOW - timedelta(hours=26, seconds=1)
        verdict = backup_freshness(taken, now=NOW, max_age=timedelta(hours=26))
        assert verdict.outcome is Outcome.FAILED
        assert "26h 1s old" in verdict.message
        assert "limit 26h" in verdict.message

    def test_old_backup_fails_naming_its_age_in_days(self) -> None:
        """A week-old backup fails with its age in days."""
        verdict = backup_freshness(nightly(15), now=NOW, max_age=timedelta(hours=26))
        assert verdict.outcome is Outcome.FAILED
        assert "6d 23h 10m old" in verdict.message

    def test_far_future_backup_fails(self) -> None:
        """A backup dated hours ahead of `now` is a clock or pattern error, not a fresh backup."""
        verdict = backup_freshness(NOW + timedelta(hours=3), now=NOW, max_age=timedelta(hours=26))
        assert verdict.outcome is Outcome.FAILED
        assert "in the future" in verdict.message

    def test_small_clock_skew_passes(self) -> None:
        """A backup a minute 'ahead' (clock skew between hosts) is fresh."""
        verdict = backup_freshness(NOW + timedelta(minutes=1), now=NOW, max_age=timedelta(hours=26))
        assert verdict.outcome is Outcome.PASSED
        assert "0s old" in verdict.message

    def test_timezones_are_normalised(self) -> None:
        """A backup time in another zone is compared as the same instant."""
        taken = datetime(2026, 11, 21, 3, 0, tzinfo=timezone(timedelta(hours=1)))  # 02:00Z
        verdict = backup_freshness(taken, now=NOW, max_age=timedelta(hours=26))
        assert verdict.measured == timedelta(hours=23, minutes=10)
        assert "taken 2026-11-21T02:00Z" in verdict.message


# -- retention ---------------------------------------------------------------------------------


class TestBackupRetention:
    def test_every_day_present_passes(self) -> None:
        """A nightly backup for each of the last 7 days passes."""
        times = [nightly(d) for d in range(15, 22)]
        verdict = backup_retention(times, now=NOW, days=7, max_age=None)
        assert verdict.outcome is Outcome.PASSED
        assert verdict.id == "backup.retention"
        assert verdict.evidence["missing_days"] == []

    def test_a_missing_day_in_the_middle_is_named(self) -> None:
        """One night without a backup fails, the date listed in message and evidence."""
        times = [nightly(d) for d in range(15, 22) if d != 18]
        verdict = backup_retention(times, now=NOW, days=7, max_age=None)
        assert verdict.outcome is Outcome.FAILED
        assert verdict.evidence["missing_days"] == ["2026-11-18"]
        assert "1 of the last 7 days has no backup: 2026-11-18" in verdict.message

    def test_todays_backup_is_optional(self) -> None:
        """Before tonight's job has run, the check counts from yesterday back."""
        times = [nightly(d) for d in range(15, 22)]
        assert NOW.date() == datetime(2026, 11, 22).date()
        verdict = backup_retention(times, now=NOW, days=7, max_age=None)
        assert verdict.outcome is Outcome.PASSED

    def test_the_oldest_required_day_counts(self) -> None:
        """`days=7` needs the backup from 7 days ago: without it the check fails."""
        times = [nightly(d) for d in range(16, 22)]
        verdict = backup_retention(times, now=NOW, days=7, max_age=None)
        assert verdict.evidence["missing_days"] == ["2026-11-15"]

    def test_days_are_utc_calendar_days(self) -> None:
        """A backup at 23:30 at UTC-1 belongs to the next UTC day."""
        minus_one = timezone(timedelta(hours=-1))
        times = [nightly(20), datetime(2026, 11, 20, 23, 30, tzinfo=minus_one)]  # = 21st 00:30Z
        verdict = backup_retention(times, now=NOW, days=2, max_age=None)
        assert verdict.outcome is Outcome.PASSED

    def test_a_backup_older_than_retention_is_named(self) -> None:
        """What the retention policy should have deleted fails, naming its date."""
        times = [nightly(d) for d in range(1, 22)]
        verdict = backup_retention(times, now=NOW, days=7, max_age=timedelta(days=20))
        assert verdict.outcome is Outcome.FAILED
        assert verdict.evidence["older_than_max_age"] == [nightly(1).isoformat()]
        assert "1 backup is older than 20d: 2026-11-01T02:00Z" in verdict.message

    def test_exactly_at_max_age_is_kept(self) -> None:
        """A backup exactly max_age old is still within the policy."""
        verdict = backup_retention([NOW - timedelta(days=20)], now=NOW, days=0, max_age=timedelta(days=20))
        assert verdict.outcome is Outcome.PASSED

    def test_several_backups_a_day_count_once(self) -> None:
        """Extra backups on one day do not make up for a missing one."""
        times = [nightly(21), nightly(21, hour=14), nightly(19)]
        verdict = backup_retention(times, now=NOW, days=3, max_age=None)
        assert verdict.evidence["missing_days"] == ["2026-11-20"]

    def test_no_backups_fails(self) -> None:
        """No backups at all is no retention, not an empty pass."""
        verdict = backup_retention([], now=NOW, days=0, max_age=timedelta(days=30))
        assert verdict.outcome is Outcome.FAILED
        assert "no backups" in verdict.message

    def test_nothing_to_check_is_a_config_error(self) -> None:
        """days=0 and no max age would check nothing: refused rather than passed."""
        with pytest.raises(ConfigError, match="days > 0 or a max age"):
            backup_retention([NOW], now=NOW, days=0, max_age=None)


# -- dump formats ------------------------------------------------------------------------------


def _pg_user() -> str | None:
    """As root the server runs as `postgres` (initdb refuses root); otherwise as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no `postgres` OS user to run initdb/postgres as")
    return "postgres"


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[tuple[Path, Path]]:
    """A PostgreSQL cluster on a private unix socket: yields (bindir, socket dir); removed after."""
    try:
        bindir = pgtools.bindir()
    except EnvironmentError_ as exc:
        pytest.skip(f"no PostgreSQL binaries to make real dumps with: {exc.message}")
    user = _pg_user()
    # Not under tmp_path: pytest's directories are private to root, the server user must reach this one.
    base = Path(tempfile.mkdtemp(prefix="dbk-dumps-"))
    if user:
        shutil.chown(base, user, user)
    data = base / "data"
    server: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run([str(bindir / "initdb"), "--no-sync", "-A", "trust", "-U", "postgres",
                        "-E", "UTF8", "--locale", "C", "-D", str(data)],
                       user=user, group=user, capture_output=True, check=True)
        server = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(data), "-k", str(base), "-c", "listen_addresses=",
             "-c", "fsync=off", "-p", "5432"],
            user=user, group=user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while subprocess.run([str(bindir / "pg_isready"), "-h", str(base), "-p", "5432", "-U", "postgres"],
                             capture_output=True, check=False).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"throwaway PostgreSQL in {base} never became ready (exit {server.poll()})")
            time.sleep(0.05)
        yield bindir, base
    finally:
        if server is not None:
            server.terminate()
            server.wait(15)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def real_dumps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every dump format made by the real pg_dump / pg_dumpall from a small database."""
    out = tmp_path_factory.mktemp("dumps")
    with throwaway_cluster() as (bindir, socket_dir):
        conn = ["-h", str(socket_dir), "-p", "5432", "-U", "postgres"]

        def run(tool: str, *args: str) -> None:
            subprocess.run([str(bindir / tool), *conn, *args], capture_output=True, check=True)

        run("psql", "-X", "-q", "-d", "postgres", "-c", "CREATE DATABASE shop")
        run("psql", "-X", "-q", "-d", "shop", "-v", "ON_ERROR_STOP=1", "-c",
            "CREATE TABLE orders (id int PRIMARY KEY, note text);"
            "INSERT INTO orders SELECT g, 'Bestellung ' || g FROM generate_series(1, 500) g;")
        run("pg_dump", "-Fc", "-d", "shop", "-f", str(out / "shop.dump"))
        run("pg_dump", "-Ft", "-d", "shop", "-f", str(out / "shop.tar"))
        run("pg_dump", "-Fd", "-d", "shop", "-f", str(out / "shop.dir"))
        run("pg_dump", "-d", "shop", "-f", str(out / "shop.sql"))
        run("pg_dumpall", "-f", str(out / "all.sql"))
    with tarfile.open(out / "shop.dir.tar", "w") as tar:
        tar.add(out / "shop.dir", arcname="shop.dir")
    for name in ("shop.sql", "all.sql"):
        (out / f"{name}.gz").write_bytes(gzip.compress((out / name).read_bytes()))
    return {path.name: path for path in out.iterdir()}


def head_of(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(HEAD)


class TestDetectFormatOnRealDumps:
    @pytest.mark.parametrize(("name", "expected"), [
        ("shop.dump", DumpFormat.CUSTOM),
        ("shop.tar", DumpFormat.DIRECTORY_TAR),
        ("shop.dir.tar", DumpFormat.DIRECTORY_TAR),
        ("shop.sql", DumpFormat.PLAIN),
        ("shop.sql.gz", DumpFormat.GZIP_PLAIN),
        ("all.sql", DumpFormat.DUMPALL),
        ("all.sql.gz", DumpFormat.GZIP_DUMPALL),
    ])
    def test_each_format_is_recognised_from_its_head(self, real_dumps: dict[str, Path], name: str,
                                                     expected: DumpFormat) -> None:
        """pg_dump -Fc/-Ft/-Fd(tarred)/plain and pg_dumpall, gzipped or not, are told apart by 64 KiB."""
        assert detect_format(head_of(real_dumps[name]), name=name) is expected

    def test_dumpall_is_not_mistaken_for_plain(self, real_dumps: dict[str, Path]) -> None:
        """pg_dumpall output contains per-database plain-dump headers; it is still a dumpall."""
        data = real_dumps["all.sql"].read_bytes()
        assert b"-- PostgreSQL database dump" in data
        assert detect_format(data, name="all.sql") is DumpFormat.DUMPALL

    def test_half_a_gzip_is_still_recognised(self, real_dumps: dict[str, Path]) -> None:
        """A truncated gzip's head still decompresses: the format is known; the restore finds the cut."""
        data = real_dumps["shop.sql.gz"].read_bytes()
        assert detect_format(data[: len(data) // 2], name="cut.sql.gz") is DumpFormat.GZIP_PLAIN

    def test_directory_tar_found_when_toc_comes_late(self, real_dumps: dict[str, Path],
                                                     tmp_path: Path) -> None:
        """A tarred -Fd directory whose data files come before toc.dat is still a directory dump."""
        source = real_dumps["shop.dir"]
        path = tmp_path / "late.tar"
        with tarfile.open(path, "w") as tar:
            for member in sorted(source.iterdir(), key=lambda p: p.name == "toc.dat"):
                tar.add(member, arcname=f"shop.dir/{member.name}")
        head = path.read_bytes()[:2048]  # (pax header,) the first member's header, part of its data
        assert b"toc.dat" not in head
        assert detect_format(head, name="late.tar") is DumpFormat.DIRECTORY_TAR


class TestDetectFormatOnPagila:
    def test_upstream_schema_is_plain(self) -> None:
        """The Pagila schema file (pg_dump 15 plain output) is a plain dump."""
        path = PAGILA / "pagila-schema.sql"
        if not path.exists():
            pytest.skip(f"Pagila fixture missing: {path} (set DRILLBOOK_FIXTURES)")
        assert detect_format(head_of(path), name=path.name) is DumpFormat.PLAIN

    def test_upstream_gzipped_data_is_gzip_plain(self) -> None:
        """The gzipped Pagila data file is a gzipped plain dump."""
        path = PAGILA / "pagila-data.sql.gz"
        if not path.exists():
            pytest.skip(f"Pagila fixture missing: {path} (set DRILLBOOK_FIXTURES)")
        assert detect_format(head_of(path), name=path.name) is DumpFormat.GZIP_PLAIN


class TestDetectFormatRefuses:
    def test_zero_bytes(self) -> None:
        """An empty file is refused as empty, naming it."""
        expected = r"backup-20261121\.sql\.gz: the file is empty \(0 bytes\)"
        with pytest.raises(BackupUnreadable, match=expected):
            detect_format(b"", name="backup-20261121.sql.gz")

    def test_gzip_header_only(self) -> None:
        """A gzip cut inside its header yields nothing and is refused, naming the file."""
        data = gzip.compress(b"-- PostgreSQL database dump\n" * 100)
        with pytest.raises(BackupUnreadable, match=r"cut\.sql\.gz: gzip stream yields no data"):
            detect_format(data[:8], name="cut.sql.gz")

    def test_corrupt_gzip(self) -> None:
        """gzip magic followed by garbage is refused as undecompressable."""
        data = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(range(256)) * 4
        with pytest.raises(BackupUnreadable, match=r"bad\.sql\.gz: gzip data cannot be decompressed"):
            detect_format(data, name="bad.sql.gz")

    def test_random_bytes(self) -> None:
        """Random bytes are refused as binary data, showing the first bytes in hex."""
        data = random.Random(7).randbytes(4096)
        with pytest.raises(BackupUnreadable) as info:
            detect_format(data, name="noise.bin")
        assert "noise.bin: not a PostgreSQL dump" in info.value.message
        assert data[:4].hex(" ") in info.value.message
        assert info.value.hint

    def test_text_that_is_not_a_dump(self) -> None:
        """A text file is refused, quoting how it starts."""
        with pytest.raises(BackupUnreadable, match=r"backup\.sql: .*text: 'hello, this is a shopping list'"):
            detect_format(b"hello, this is a shopping list\neggs\n", name="backup.sql")

    def test_gzipped_text_that_is_not_a_dump(self) -> None:
        """A gzip of something else is refused, saying what the decompressed content looks like."""
        with pytest.raises(BackupUnreadable, match=r"log\.gz: gzip-compressed.*text: 'GET / HTTP/1\.1 200'"):
            detect_format(gzip.compress(b"GET / HTTP/1.1 200\n" * 50), name="log.gz")

    def test_gzipped_custom_dump_is_explained(self) -> None:
        """A gzipped -Fc dump is named as such, with the remedy in the hint."""
        with pytest.raises(BackupUnreadable) as info:
            detect_format(gzip.compress(b"PGDMP\x01\x0e\x00" + bytes(100)), name="x.dump.gz")
        assert "custom-format dump" in info.value.message
        assert "uncompressed" in info.value.hint

    def test_tar_without_toc(self, tmp_path: Path) -> None:
        """A tar of other files is not a pg_dump archive; the members seen are named."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo("notes.txt")
            info.size = 5
            tar.addfile(info, io.BytesIO(b"hello"))
        with pytest.raises(BackupUnreadable, match=r"etc\.tar: a tar archive without toc\.dat.*notes\.txt"):
            detect_format(buffer.getvalue(), name="etc.tar")

    def test_zip_is_named(self) -> None:
        """A known non-dump format is named rather than shown as hex."""
        with pytest.raises(BackupUnreadable, match="a ZIP archive"):
            detect_format(b"PK\x03\x04" + bytes(100), name="x.zip")


class TestGunzipHead:
    def test_stops_at_the_limit(self) -> None:
        """No more than `limit` bytes come out, however much the stream holds."""
        data = gzip.compress(b"x" * 1_000_000)
        assert gunzip_head(data, 1000) == b"x" * 1000

    def test_truncated_stream_yields_what_it_holds(self) -> None:
        """A stream cut short returns its decompressible prefix instead of failing."""
        payload = random.Random(1).randbytes(200_000)
        data = gzip.compress(payload)
        head = gunzip_head(data[: len(data) // 2], 1 << 20)
        assert 0 < len(head) < len(payload)
        assert payload.startswith(head)

    def test_concatenated_members_are_followed(self) -> None:
        """`cat a.gz b.gz` is one valid gzip stream."""
        data = gzip.compress(b"first\n") + gzip.compress(b"second\n")
        assert gunzip_head(data, 100) == b"first\nsecond\n"

    def test_garbage_raises_backup_unreadable(self) -> None:
        """Data that is not gzip raises the project's error, not zlib's."""
        with pytest.raises(BackupUnreadable, match="cannot be decompressed"):
            gunzip_head(b"\x1f\x8bnot really gzip at all", 100)


# -- checksums ---------------------------------------------------------------------------------

DIGEST = hashlib.sha256(b"the backup").hexdigest()
OTHER = hashlib.sha256(b"another file").hexdigest()


class TestParseChecksumSidecar:
    @pytest.mark.parametrize("text", [
        f"{DIGEST}  sark-backup-20261121-0200.dump\n",
        f"{DIGEST} *sark-backup-20261121-0200.dump\n",
        f"{DIGEST.upper()}  ./sark-backup-20261121-0200.dump",
        f"{DIGEST}\n",
        f"  {DIGEST}  ",
        f"SHA256 (sark-backup-20261121-0200.dump) = {DIGEST}\n",
    ])
    def test_single_entry_forms(self, text: str) -> None:
        """sha256sum text and binary mode, a bare digest and BSD style all give the lower-case digest."""
        assert parse_checksum_sidecar(text, filename="sark-backup-20261121-0200.dump") == DIGEST

    def test_several_lines_pick_the_file(self) -> None:
        """A SHA256SUMS-style file with several entries yields the line for the file."""
        text = f"{OTHER}  other.dump\n{DIGEST}  wanted.dump\n"
        assert parse_checksum_sidecar(text, filename="wanted.dump") == DIGEST

    def test_several_lines_without_the_file(self) -> None:
        """A multi-line sidecar that does not list the file is unreadable, naming what it lists."""
        text = f"{OTHER}  a.dump\n{OTHER}  b.dump\n"
        expected = r"lists 2 files but not wanted\.dump \(a\.dump, b\.dump\)"
        with pytest.raises(BackupUnreadable, match=expected):
            parse_checksum_sidecar(text, filename="wanted.dump")

    @pytest.mark.parametrize("text", ["", "\n\n", "not a checksum\n", "abc123  x.dump", "<html>404</html>"])
    def test_unparseable(self, text: str) -> None:
        """Empty text, prose, a too-short digest or an HTML error page is BackupUnreadable naming the file."""
        with pytest.raises(BackupUnreadable, match=r"x\.dump"):
            parse_checksum_sidecar(text, filename="x.dump")


class TestChecksumMatches:
    def test_equal_digests_pass(self) -> None:
        """The downloaded bytes hash to what the sidecar says: passed."""
        verdict = checksum_matches(DIGEST, DIGEST.upper(), key="b.dump")
        assert verdict.outcome is Outcome.PASSED
        assert verdict.id == "backup.checksum"
        assert verdict.evidence["key"] == "b.dump"

    def test_different_digests_fail_naming_both(self) -> None:
        """A mismatch fails, showing the computed and the recorded digest."""
        verdict = checksum_matches(DIGEST, OTHER, key="b.dump")
        assert verdict.outcome is Outcome.FAILED
        assert DIGEST in verdict.message and OTHER in verdict.message

    def test_wrong_algorithm_is_explained(self) -> None:
        """An MD5 digest in a .sha256 sidecar fails saying the algorithms differ."""
        verdict = checksum_matches(DIGEST, hashlib.md5(b"the backup").hexdigest(), key="b.dump")  # noqa: S324
        assert verdict.outcome is Outcome.FAILED
        assert "128-bit" in verdict.message and "wrong algorithm" in verdict.message
