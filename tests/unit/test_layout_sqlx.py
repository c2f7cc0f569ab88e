"""sqlx's layout (simple and reversible files, ``-- no-transaction``) and its SHA-384 checksum."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checks.migration_history import LocalMigration
from checks.migration_history.tables import sqlx as sqlx_table
from drills.migrations import LayoutError, load_migrations
from drills.migrations.layouts import detect_layout, sqlx
from drills.migrations.layouts.common import Listing


def _write(directory: Path, files: dict[str, str | bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = directory / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return directory


class TestNames:
    @pytest.mark.parametrize(("name", "expected"), [
        ("20240101000000_create_users.sql", ("20240101000000", "create users", "up")),
        ("1_create_users.up.sql", ("1", "create users", "up")),
        ("1_create_users.down.sql", ("1", "create users", "down")),
        ("0002_a_b_c.sql", ("0002", "a b c", "up")),
        ("3_.up.sql", ("3", "", "up")),
    ])
    def test_what_sqlx_reads_from_a_name(self, name: str, expected: tuple[str, str, str]) -> None:
        """Split at the first `_`; the suffix decides the type; `_` in the description is a space."""
        parsed = sqlx.parse(name)
        assert parsed is not None and (parsed.version, parsed.description, parsed.direction) == expected

    @pytest.mark.parametrize("name", ["init.sql", "1-init.sql", "v1_init.sql", "1_init.txt",
                                      "99999999999999999999_big.sql"])
    def test_not_a_sqlx_migration(self, name: str) -> None:
        """No version before `_`, not .sql, or a version beyond sqlx's i64."""
        assert sqlx.parse(name) is None

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=30))
    def test_any_name_parses_or_is_none(self, name: str) -> None:
        parsed = sqlx.parse(name)
        assert parsed is None or (parsed.version is not None and parsed.version.isdigit())


class TestNoTransaction:
    @pytest.mark.parametrize(("data", "expected"), [
        (b"-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n", True),
        (b"-- no-transaction because of the index\nSELECT 1;\n", True),  # sqlx: starts_with
        (b"\n-- no-transaction\nSELECT 1;\n", False),
        (b"\xef\xbb\xbf-- no-transaction\nSELECT 1;\n", False),  # sqlx does not drop a BOM
        (b"-- No-Transaction\nSELECT 1;\n", False),
        (b"SELECT 1; -- no-transaction\n", False),
    ])
    def test_only_a_file_that_starts_with_the_marker(self, data: bytes, expected: bool) -> None:
        assert sqlx.no_transaction(data) is expected


class TestFolder:
    def test_detected_by_the_marker_and_loaded_with_pairs(self, tmp_path: Path) -> None:
        _write(tmp_path, {
            "20240101000000_users.up.sql": "CREATE TABLE users (id int);\n",
            "20240101000000_users.down.sql": "DROP TABLE users;\n",
            "20240102000000_index.up.sql": "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON users (id);\n",
            "20240102000000_index.down.sql": "-- no-transaction\nDROP INDEX CONCURRENTLY i;\n",
            "20240103000000_seed.sql": "INSERT INTO users VALUES (1);\n",
        })
        assert sqlx.detect(Listing.of(tmp_path)) and detect_layout(tmp_path) == "sqlx"
        loaded = load_migrations(tmp_path)
        summary = [(m.version, m.description, m.up.transactional, m.down.transactional if m.down else None)
                   for m in loaded.migrations]
        assert summary == [("20240101000000", "users", True, True), ("20240102000000", "index", False, False),
                           ("20240103000000", "seed", True, None)]
        assert all(m.up.whole_file for m in loaded.migrations)

    def test_without_the_marker_the_names_decide(self, tmp_path: Path) -> None:
        """Without `-- no-transaction` the names say golang-migrate's layout; --layout sqlx reads it too."""
        _write(tmp_path, {"1_a.up.sql": "SELECT 1;\n", "1_a.down.sql": "SELECT 1;\n"})
        assert not sqlx.detect(Listing.of(tmp_path))
        assert detect_layout(tmp_path) == "updown"
        assert load_migrations(tmp_path, layout="sqlx").layout == "sqlx"

    @pytest.mark.parametrize(("files", "words"), [
        ({"1_a.sql": "", "schema.sql": ""}, r"schema\.sql does not fit the sqlx layout"),
        ({"1_a.sql": "", "1_b.up.sql": ""}, r"duplicate version 1"),
        ({"1_a.sql": "", "2_b.down.sql": ""}, r"2_b\.down\.sql undoes version 2"),
        ({"1_a.sql": b"\xff\xfe"}, r"not UTF-8"),
    ])
    def test_refused_with_the_file_named(self, tmp_path: Path, files: dict[str, str | bytes],
                                         words: str) -> None:
        _write(tmp_path, files)
        with pytest.raises(LayoutError, match=words):
            load_migrations(tmp_path, layout="sqlx")


class TestChecksum:
    def test_sha384_of_fixed_inputs(self) -> None:
        """sqlx's published algorithm (Sha384::digest of the SQL), checked on FIPS 180-2's own test vector."""
        assert sqlx_table.sqlx_checksum(b"abc") == (
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
            "8086072ba1e7cc2358baeca134c825a7")

    def test_the_file_as_read_line_breaks_and_bom_included(self) -> None:
        """No normalisation: CRLF and LF versions of a migration differ, as they do for sqlx."""
        lf = b"create table comment (\n\tid uuid primary key\n);\n"
        crlf = lf.replace(b"\n", b"\r\n")
        bodies = (lf, crlf, b"\xef\xbb\xbf" + lf)
        local = [LocalMigration("3", "comment", "3_comment.sql", body) for body in bodies]
        digests = [sqlx_table.checksum(m) for m in local]
        assert digests == [hashlib.sha384(m.content).hexdigest() for m in local]
        assert len(set(digests)) == 3

    def test_recognised_by_its_columns_not_flyways(self) -> None:
        columns = {"version", "description", "installed_on", "success", "checksum", "execution_time"}
        assert sqlx_table.recognises("_sqlx_migrations", columns)
        assert sqlx_table.recognises("app._migrations", columns)  # sqlx 0.9 lets the table be renamed
        assert not sqlx_table.recognises("schema_version", columns | {"installed_rank", "script"})
