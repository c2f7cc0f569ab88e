"""`kind = "basebackup"` stores in drillbook.toml: paths relative to the file, keys validated (exit 2)."""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.errors import BackupRefused, ConfigError
from checks.pitr import SEGMENT, first_missing
from drills.config import load_config
from drills.physical import extract_tar, restore_script
from steps.physical import parse_target


def test_a_basebackup_store_is_read_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "drillbook.toml"
    path.write_text('[targets.pitr]\nkind = "basebackup"\npath = "base"\nwal = "${WAL}"\n'
                    'key_pattern = "base_%Y%m%d_%H%M%S"\n', encoding="utf-8")
    config = load_config(path, environ={"WAL": "archive/wal"})
    store = config.stores["pitr"]
    assert (store.kind, store.url, store.wal) == ("basebackup", str(tmp_path / "base"),
                                                  str(tmp_path / "archive" / "wal"))
    assert config.redacted()["targets"]["pitr"]["kind"] == "basebackup"


def test_a_wal_archive_on_s3_takes_its_keys_from_the_environment_only(tmp_path: Path) -> None:
    path = tmp_path / "drillbook.toml"
    secret = "wal-secret-9c2e1f"
    path.write_text('[targets.pitr]\nkind = "basebackup"\npath = "base"\nwal = "s3://arch/pg/wal"\n'
                    'endpoint_url = "http://127.0.0.1:9000"\naccess_key_id = "${KEY}"\n'
                    'secret_access_key = "${SECRET}"\n', encoding="utf-8")
    config = load_config(path, environ={"KEY": "k", "SECRET": secret})
    store = config.stores["pitr"]
    assert (store.wal, store.endpoint_url, store.secret_access_key) == ("s3://arch/pg/wal/",
                                                                         "http://127.0.0.1:9000", secret)
    assert secret not in repr(config.redacted())
    path.write_text(path.read_text().replace('"${SECRET}"', f'"{secret}"'), encoding="utf-8")
    with pytest.raises(ConfigError, match="secret_access_key` must reference the environment"):
        load_config(path, environ={"KEY": "k"})


@pytest.mark.parametrize(("body", "named"), [
    ('path = "b"\nwal = "w"\nendpoint_url = "http://x"\n', "targets.pitr.endpoint_url"),  # a folder
    ('path = "b"\nwal = "s3:///w"\n', "targets.pitr.wal"),
    ('path = "b"\nwal = "w"\nwall = "x"\n', "targets.pitr.wall"),
    ('path = "b"\n', "wal"),
    ('wal = "w"\n', "path"),
    ('path = "b"\nwal = "w"\nkey_pattern = "%Q"\n', "targets.pitr.key_pattern"),
])
def test_bad_keys_are_named(tmp_path: Path, body: str, named: str) -> None:
    path = tmp_path / "drillbook.toml"
    path.write_text('[targets.pitr]\nkind = "basebackup"\n' + body, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert named in str(caught.value) and str(path) in str(caught.value)


HEX = "0123456789ABCDEF"


@given(st.text(alphabet=HEX, min_size=24, max_size=24), st.integers(0, 40))
def test_first_missing_finds_the_removed_segment(first: str, length: int) -> None:
    seg = 16 << 20  # 256 segments per log file
    first = first[:16] + f"{int(first[16:], 16) % 256:08X}"
    per_log = 0x100000000 // seg
    start = int(first[8:16], 16) * per_log + int(first[16:], 16)
    if start + length >= 0xFFFFFFFF * per_log:
        return
    names = [f"{first[:8]}{n // per_log:08X}{n % per_log:08X}" for n in range(start, start + length + 1)]
    assert first_missing(names, names[0], names[-1], seg) is None
    if length >= 2:
        gone = names.pop(length // 2)
        assert first_missing(names, names[0], names[-1], seg) == gone


@given(st.text(max_size=30))
def test_the_restore_script_takes_only_segment_names(text: str) -> None:
    if SEGMENT.fullmatch(text):
        assert text in restore_script(Path("/w"), text, text)
    else:
        with pytest.raises(ValueError, match="not a WAL segment"):
            restore_script(Path("/w"), text, "000000010000000000000001")


def test_the_restore_script_quotes_its_directory() -> None:
    script = restore_script(Path("/tmp/it's"), "000000010000000000000002", "000000010000000000000009")
    assert "'/tmp/it'\\''s'" in script and "exit 126" in script


@given(st.text(max_size=40))
def test_recovery_targets_parse_or_say_why(text: str) -> None:
    try:
        moment = parse_target(text)
    except ValueError as exc:
        assert "ISO 8601" in str(exc)
    else:
        assert moment.tzinfo is not None


def test_a_target_without_offset_is_utc() -> None:
    assert parse_target("2026-12-03 17:29:51") == datetime(2026, 12, 3, 17, 29, 51, tzinfo=UTC)


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize("hostile", [
    _member("/abs-escape"),
    _member("../escape"),
    _member("global/../../escape"),
    _member("link", tarfile.SYMTYPE, "/etc"),
    _member("link", tarfile.SYMTYPE, "../../etc"),
    _member("hard", tarfile.LNKTYPE, "/etc/passwd"),
    _member("dev", tarfile.CHRTYPE),
])
def test_a_hostile_tar_member_is_refused_before_anything_is_written(tmp_path: Path,
                                                                   hostile: tarfile.TarInfo) -> None:
    archive = tmp_path / "base.tar"
    with tarfile.open(archive, "w") as tar:
        tar.addfile(_member("PG_VERSION"), io.BytesIO(b""))
        tar.addfile(hostile, io.BytesIO(b""))
    dest = tmp_path / "scratch" / "data"
    dest.mkdir(parents=True)
    with pytest.raises(BackupRefused, match="refusing member"):
        extract_tar(archive, dest)
    assert list(dest.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.tar", "scratch"]
