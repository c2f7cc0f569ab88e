"""Barman cloud metadata parsers (checks/barman_info.py); `kind = "barman-cloud"` stores in drillbook.toml."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checks import redact
from checks.barman_info import (
    BarmanBackup,
    WalListing,
    parse_backup_list,
    stop_time,
    wal_continuity,
    wal_listing,
)
from checks.errors import ConfigError, UnusableAnswer
from checks.verdict import Outcome
from drills.config import load_config
from drills.physical.barman_cloud import BarmanCloudSource, tool_env
from drills.targets import StoreSpec

# barman 3.19's shape (design study A3), abridged to what drillbook reads and some it ignores.
NEW = {"backup_id": "20261203T172813", "status": "DONE", "begin_time": "Thu Dec  3 17:28:13 2026",
       "begin_time_iso": "2026-12-03T17:28:13.101010+00:00", "end_time": "Thu Dec  3 17:28:26 2026",
       "end_time_iso": "2026-12-03T17:28:26.458242+00:00", "begin_wal": "000000010000000000000007",
       "end_wal": "000000010000000000000007", "begin_offset": 40, "timeline": 1, "version": 150018,
       "systemid": "7715185749128921892", "error": None, "copy_stats": {"total_time": 5.3},
       "included_files": ["/srv/pg/postgresql.auto.conf"], "children_backup_ids": None}
# Debian's barman 3.4: no *_iso fields, ctime strings.
OLD = {"backup_id": "20261203T210105", "status": "DONE", "begin_time": "Thu Dec  3 21:01:05 2026",
       "end_time": "Thu Dec  3 21:01:08 2026", "begin_wal": "000000010000000000000007", "begin_offset": 40,
       "version": 150018, "systemid": "7715185749128921892"}


class TestBackupList:
    def test_the_new_shape_gives_precise_end_times(self) -> None:
        [backup] = parse_backup_list(json.dumps({"backups_list": [NEW]}))
        assert backup.end_time == datetime(2026, 12, 3, 17, 28, 26, 458242, tzinfo=UTC)
        assert backup.end_time_precise and backup.major == "15" and backup.status == "DONE"
        assert backup.history_file == "000000010000000000000007.00000028.backup"

    def test_debians_34_shape_reads_ctime_as_utc_and_says_so(self) -> None:
        [backup] = parse_backup_list(json.dumps({"backups_list": [OLD]}))
        assert backup.end_time == datetime(2026, 12, 3, 21, 1, 8, tzinfo=UTC)
        assert not backup.end_time_precise

    def test_backups_come_oldest_first_and_an_unknown_server_is_empty(self) -> None:
        assert [b.backup_id for b in parse_backup_list(json.dumps({"backups_list": [OLD, NEW]}))] == \
            ["20261203T172813", "20261203T210105"]
        assert parse_backup_list('{"backups_list": []}') == []

    @pytest.mark.parametrize(("document", "named"), [
        ("not json", "did not answer JSON"),
        ('{"backups": []}', "backups_list"),
        (json.dumps({"backups_list": [{**NEW, "backup_id": "--help"}]}), "'--help'"),
        (json.dumps({"backups_list": [{**NEW, "begin_wal": "../../etc"}]}), "begin_wal"),
        (json.dumps({"backups_list": [{**NEW, "end_time_iso": None, "end_time": "yesterday"}]}), "end_time"),
        (json.dumps({"backups_list": [NEW, NEW]}), "twice"),
        (json.dumps({"backups_list": [{**NEW, "status": None}]}), "no status"),
    ])
    def test_unusable_answers_are_named(self, document: str, named: str) -> None:
        with pytest.raises(UnusableAnswer, match=named):
            parse_backup_list(document)

    @settings(max_examples=200)
    @given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                        lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=20))
    def test_any_json_parses_or_is_unusable(self, value: object) -> None:
        """Whatever JSON the tool (or whoever wrote the bucket) answers: a list, or UnusableAnswer."""
        for document in (value, {"backups_list": value}, {"backups_list": [value]},
                         {"backups_list": [{**NEW, "status": value}]},
                         {"backups_list": [{**NEW, "version": value}]},
                         {"backups_list": [{**OLD, "end_time": value}]},
                         {"backups_list": [{**NEW, "end_time_iso": value}]}):
            try:
                backups = parse_backup_list(json.dumps(document))
            except UnusableAnswer:
                continue
            assert all(isinstance(b, BarmanBackup) for b in backups)

    @given(st.dictionaries(st.sampled_from(sorted(NEW)), st.none() | st.integers() | st.text(max_size=30)))
    def test_any_field_values_parse_or_are_unusable(self, changes: dict[str, object]) -> None:
        with contextlib.suppress(UnusableAnswer):
            parse_backup_list(json.dumps({"backups_list": [{**NEW, **changes}]}))


PREFIX = "pfx/src/wals/"


class TestWalListing:
    def test_barmans_layout_with_compressed_variants(self) -> None:
        listing = wal_listing([
            (PREFIX + "0000000100000000/000000010000000000000006", 1 << 20),
            (PREFIX + "0000000100000000/000000010000000000000007.gz", 9000),
            (PREFIX + "0000000100000000/000000010000000000000007.00000028.backup", 345),
            (PREFIX + "0000000100000000/000000010000000000000008.bz2", 8000),
            (PREFIX + "0000000100000000/000000010000000000000009.snappy", 10),
            (PREFIX + "00000002.history", 42),
            (PREFIX + "0000000100000001/000000010000000000000009", 1 << 20),  # the wrong folder
        ], PREFIX)
        assert sorted(listing.segments) == ["000000010000000000000006", "000000010000000000000007",
                                            "000000010000000000000008"]
        assert listing.segments["000000010000000000000007"].compression == "gzip"
        assert listing.segments["000000010000000000000008"].compression == "bzip2"
        assert sorted(listing.history) == ["000000010000000000000007.00000028.backup", "00000002.history"]
        assert listing.unsupported == (PREFIX + "0000000100000000/000000010000000000000009.snappy",
                                       PREFIX + "0000000100000001/000000010000000000000009")
        assert listing.timeline_segments("000000010000000000000007") == ["000000010000000000000007",
                                                                         "000000010000000000000008"]

    def test_a_plain_segment_wins_over_its_compressed_twin(self) -> None:
        listing = wal_listing([(PREFIX + "0000000100000000/000000010000000000000006.gz", 9),
                               (PREFIX + "0000000100000000/000000010000000000000006", 1 << 20)], PREFIX)
        assert listing.segments["000000010000000000000006"].compression is None

    @given(st.lists(st.tuples(st.text(max_size=80), st.integers(0, 1 << 40)), max_size=20), st.booleans())
    def test_any_keys_are_sorted_or_set_aside(self, objects: list[tuple[str, int]], flat: bool) -> None:
        listing = wal_listing(objects, PREFIX, flat=flat)
        assert len(listing.segments) + len(listing.history) + len(listing.unsupported) <= len(objects)
        assert all(o.key == PREFIX + o.key[len(PREFIX):] for o in listing.segments.values())

    def test_a_flat_prefix_as_an_archive_command_copying_f_writes_it(self) -> None:
        """A basebackup store's ``wal = "s3://…"``: every file directly under the prefix."""
        listing = wal_listing([
            ("wal/000000010000000000000006", 1 << 20),
            ("wal/000000010000000000000007.gz", 9000),
            ("wal/000000010000000000000007.00000028.backup", 345),
            ("wal/00000002.history", 42),
            ("wal/0000000100000000/000000010000000000000008", 1 << 20),  # barman's folder: not this layout
        ], "wal/", flat=True)
        assert sorted(listing.segments) == ["000000010000000000000006", "000000010000000000000007"]
        assert sorted(listing.history) == ["000000010000000000000007.00000028.backup", "00000002.history"]
        assert listing.unsupported == ("wal/0000000100000000/000000010000000000000008",)

    def test_stop_time_of_a_backup_history_file(self) -> None:
        text = ("START WAL LOCATION: 0/700028 (file 000000010000000000000007)\n"
                "STOP TIME: 2026-12-03 21:01:08 UTC\n")
        assert stop_time(text) == datetime(2026, 12, 3, 21, 1, 8, tzinfo=UTC)
        assert stop_time("STOP TIME: soon\n") is None and stop_time("") is None
        assert stop_time("STOP TIME: 2026-12-03 22:01:08 CET\n") is None  # an ambiguous zone: not guessed


def _config(tmp_path: Path, body: str, environ: dict[str, str]) -> object:
    path = tmp_path / "drillbook.toml"
    path.write_text('[targets.barman]\nkind = "barman-cloud"\n' + body, encoding="utf-8")
    return load_config(path, environ=environ)


class TestConfig:
    def test_a_barman_cloud_store_with_keys_from_the_environment(self, tmp_path: Path) -> None:
        secret = "barman-secret-4711"  # a fake key, checked to be masked
        config = _config(tmp_path, 'url = "s3://backups/barman/"\nserver = "pg-main"\n'
                         'endpoint_url = "http://127.0.0.1:9000"\naccess_key_id = "${KEY}"\n'
                         'secret_access_key = "${SECRET}"\n', {"KEY": "AKIAFAKE", "SECRET": secret})
        store = config.stores["barman"]  # type: ignore[attr-defined]
        assert (store.kind, store.url, store.server, store.bucket, store.secret_access_key) == \
            ("barman-cloud", "s3://backups/barman/", "pg-main", "backups", secret)
        shown = json.dumps(config.redacted())  # type: ignore[attr-defined]
        assert secret not in shown and '"server": "pg-main"' in shown
        assert secret not in redact.redact(f"aws said {secret}")

    @pytest.mark.parametrize(("body", "named"), [
        ('url = "s3://b/p/"\n', "server"),
        ('server = "s"\n', "url"),
        ('url = "/srv/barman"\nserver = "s"\n', "targets.barman.url"),
        ('url = "s3://b/p/"\nserver = "../etc"\n', "targets.barman.server"),
        ('url = "s3://b/p/"\nserver = "s"\nsecret_access_key = "literal"\naccess_key_id = "${K}"\n',
         "targets.barman.secret_access_key"),
        ('url = "s3://b/p/"\nserver = "s"\naccess_key_id = "${K}"\n', "both access_key_id"),
        ('url = "s3://b/p/"\nserver = "s"\nstanza = "x"\n', "targets.barman.stanza"),
    ])
    def test_bad_keys_are_named(self, tmp_path: Path, body: str, named: str) -> None:
        with pytest.raises(ConfigError) as caught:
            _config(tmp_path, body, {"K": "k"})
        assert named in str(caught.value) and str(tmp_path / "drillbook.toml") in str(caught.value)


class TestToolEnvironment:
    """barman-cloud-* children get the store's keys in their environment only, never in argv."""

    def _spec(self, key_id: str | None = None, secret: str | None = None) -> StoreSpec:
        return StoreSpec(name="b", url="s3://bucket/pg", kind="barman-cloud", server="main",
                         endpoint_url="http://user:pw@127.0.0.1:9000", access_key_id=key_id,
                         secret_access_key=secret)

    def test_the_keys_go_in_the_environment_and_nothing_else_of_drillbooks(self) -> None:
        spec = self._spec("AKIAFAKE", "barman-secret-4711")
        env = tool_env(spec, {"PGPASSWORD": "other-secret", "AWS_SECRET_ACCESS_KEY": "ambient",
                              "HOME": "/root"})
        assert env["AWS_SECRET_ACCESS_KEY"] == "barman-secret-4711" and env["AWS_ACCESS_KEY_ID"] == "AKIAFAKE"
        assert "PGPASSWORD" not in env and "HOME" not in env
        argv = BarmanCloudSource(spec).argv("true", "20261203T172813", "/scratch/data")
        assert "barman-secret-4711" not in " ".join(argv) and "pw" not in " ".join(argv)
        assert argv[1:] == ["--endpoint-url", "http://127.0.0.1:9000", "s3://bucket/pg", "main",
                            "20261203T172813", "/scratch/data"]

    def test_without_keys_drillbooks_own_aws_variables_pass(self) -> None:
        env = tool_env(self._spec(), {"AWS_PROFILE": "backup", "PGPASSWORD": "x"})
        assert env["AWS_PROFILE"] == "backup" and "PGPASSWORD" not in env


class TestContinuity:
    """checks.barman_info.wal_continuity: drillbook's own count over the wals/ listing."""

    @staticmethod
    def _listing(names: list[str]) -> WalListing:
        return wal_listing([(f"{PREFIX}{n[:16]}/{n}.gz", 100) for n in names], PREFIX)

    @given(st.integers(0, 0xFFF0), st.integers(3, 12), st.data())
    def test_a_removed_segment_is_named(self, start: int, length: int, data: st.DataObject) -> None:
        size = 1 << 20  # 4096 segments per log file: the run may cross into the next one
        names = [f"00000001{n // 4096:08X}{n % 4096:08X}" for n in range(start, start + length)]
        whole = wal_continuity(self._listing(names), since=names[0], segment_size=size, where="w")
        assert whole.outcome is Outcome.PASSED and names[-1] in whole.message
        gone = names.pop(data.draw(st.integers(1, length - 2)))
        gap = wal_continuity(self._listing(names), since=names[0], segment_size=size, where="w")
        assert gap.outcome is Outcome.FAILED and gap.evidence["first_missing"] == gone and gone in gap.message

    def test_nothing_from_the_start_on_fails_and_a_bad_size_cannot_be_checked(self) -> None:
        listing = self._listing(["000000010000000000000006"])
        assert wal_continuity(listing, since="000000010000000000000007", segment_size=1 << 20,
                              where="w").outcome is Outcome.FAILED
        assert wal_continuity(listing, since="000000010000000000000006", segment_size=3,
                              where="w").outcome is Outcome.ERROR
