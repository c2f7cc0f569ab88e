"""The Liquibase formatted SQL layout and the databasechangelog checksums.

The changelogs in tests/support/plan_projects.py were applied by the real Liquibase 4.28.0
(``9:`` checksums) and 4.4.0 (``8:``); every expected md5sum below is one it wrote.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.migration_history.model import LocalMigration
from checks.migration_history.tables import liquibase as table
from drills.migrations import LayoutError, Migration, MigrationSet
from drills.migrations.layouts import liquibase
from drills.migrations.layouts.common import Listing
from tests.support.plan_projects import CHANGELOGS, LIQUIBASE_8, LIQUIBASE_9, write

HEAD = "--liquibase formatted sql\n\n"


def _local(migration: Migration) -> LocalMigration:
    assert migration.hashed is not None
    return LocalMigration(migration.version, migration.description, migration.up.path.name,
                          migration.hashed, migration.history_id)


def _load(tmp_path: Path, files: dict[str, str]) -> MigrationSet:
    return liquibase.load(write(files, tmp_path / "changelog").resolve())


@pytest.fixture
def real(tmp_path: Path) -> MigrationSet:
    return _load(tmp_path, CHANGELOGS)


class TestTheRealChangelogs:
    def test_changesets_in_file_order_across_the_folder(self, real: MigrationSet) -> None:
        """Versions are positions across files taken by name; history ids are id:author."""
        assert [(m.version, m.description, m.history_id) for m in real.migrations] == [
            ("1", "1 by alice", "1:alice"), ("2", "2 by alice", "2:alice"), ("3", "3 by bob", "3:bob"),
            ("4", "idx-1 by carol", "idx-1:carol"), ("5", "empty-rb by carol", "empty-rb:carol"),
            ("6", "q-1 by dave smith", "q-1:dave smith")]
        assert real.ordinal_versions

    def test_checksums_are_the_9_form_liquibase_4_28_wrote(self, real: MigrationSet) -> None:
        """Every changeset's 9: checksum equals databasechangelog.md5sum from Liquibase 4.28.0."""
        assert [table.checksum(_local(m)) for m in real.migrations] == [row[3] for row in LIQUIBASE_9]

    def test_the_8_form_liquibase_4_4_wrote_is_accepted(self, real: MigrationSet) -> None:
        """An 8: md5sum (Liquibase 4.23 and older) is compared in its own form and matches."""
        pairs = zip(real.migrations, LIQUIBASE_8, strict=True)
        assert all(table.matches(_local(m), row[3]) for m, row in pairs)

    def test_an_edited_changeset_no_longer_matches(self, tmp_path: Path) -> None:
        """Changing the SQL (not only its white space) changes both checksum forms."""
        edited = {**CHANGELOGS, "001-schema.sql": CHANGELOGS["001-schema.sql"].replace(
            "email text NOT NULL", "email text")}
        first = _load(tmp_path, edited).migrations[0]
        assert not table.matches(_local(first), LIQUIBASE_9[0][3])
        assert not table.matches(_local(first), LIQUIBASE_8[0][3])
        spaced = {**CHANGELOGS, "001-schema.sql": CHANGELOGS["001-schema.sql"].replace(
            "email text NOT NULL", "email   text\tNOT NULL")}
        assert table.matches(_local(_load(tmp_path / "b", spaced).migrations[0]), LIQUIBASE_9[0][3])

    def test_run_in_transaction_split_and_end_delimiter(self, real: MigrationSet) -> None:
        """runInTransaction:false: autocommit; splitStatements:false: one statement; endDelimiter splits."""
        function, delimited, index = real.migrations[1], real.migrations[2], real.migrations[3]
        assert function.up.statements is not None and len(function.up.statements) == 1
        assert function.up.statements[0].text.endswith("$$;")
        assert delimited.up.statements is not None
        assert [s.line for s in delimited.up.statements] == [22, 28]
        assert delimited.up.statements[1].text == "CREATE TABLE t3 (a int)"
        assert index.up.transactional is False and real.migrations[0].up.transactional is True

    def test_rollbacks_are_the_down_parts(self, real: MigrationSet) -> None:
        """--rollback lines are the down; 'empty' is a no-op down; none is no down."""
        first, third, empty, last = (real.migrations[i] for i in (0, 2, 4, 5))
        assert first.down is not None and first.down.text == "DROP TABLE accounts;\n"
        assert third.down is not None
        assert third.down.text == "DROP TABLE t3;\nDROP FUNCTION add_one(integer);\n"
        assert third.down.first_line == 30
        assert empty.down is not None and empty.down.text == ""
        assert last.down is None

    def test_lines_are_file_lines(self, real: MigrationSet) -> None:
        """The up text starts at its file line; the --comment line is out of it but lines still map."""
        first = real.migrations[0]
        assert first.up.first_line == 5 and first.up.text is not None
        assert first.up.text.startswith("CREATE TABLE accounts (")

    def test_detected_by_its_first_line(self, tmp_path: Path) -> None:
        """A .sql file starting --liquibase formatted sql marks the folder; plain SQL does not."""
        root = write(CHANGELOGS, tmp_path / "c").resolve()
        assert liquibase.detect(Listing.of(root))
        plain = write({"001.sql": "CREATE TABLE a (b int);\n"}, tmp_path / "p").resolve()
        assert not liquibase.detect(Listing.of(plain))


class TestChangelogFeatures:
    def test_valid_checksum_and_run_on_change_accept_an_edit(self, tmp_path: Path) -> None:
        """--validCheckSum names an accepted old checksum; ANY and runOnChange accept any."""
        text = HEAD + ("--changeset a:1\n--validCheckSum: 9:aaaa\nSELECT 1;\n"
                       "--changeset a:2 runOnChange:true\nSELECT 2;\n"
                       "--changeset a:3\n--validCheckSum ANY\nSELECT 3;\n--changeset a:4\nSELECT 4;\n")
        one, two, three, four = (_local(m) for m in _load(tmp_path, {"c.sql": text}).migrations)
        assert table.matches(one, "9:AAAA") and not table.matches(one, "9:bbbb")
        assert table.matches(two, "9:bbbb") and table.matches(three, "9:bbbb")
        assert not table.matches(four, "9:bbbb")
        assert table.matches(four, "7:bbbb"), "versions before 8 are upgraded by Liquibase unchecked"

    def test_multi_line_rollback_lines_are_joined_as_liquibase_joins_them(self, tmp_path: Path) -> None:
        """Liquibase 4.28 joins a /* liquibase rollback */ block's lines with nothing between."""
        text = HEAD + ("--changeset eve:rb1 endDelimiter:GO\nCREATE TABLE rb1 (a int)\nGO\n"
                       "CREATE TABLE rb2 (a int)\nGO\n"
                       "/* liquibase rollback\nDROP TABLE rb2;\n-- gone\nDROP TABLE rb1;\n*/\n")
        migration = _load(tmp_path, {"c.sql": text}).migrations[0]
        assert migration.down is not None and migration.down.text == "DROP TABLE rb2;-- goneDROP TABLE rb1;\n"
        assert migration.up.statements is not None and len(migration.up.statements) == 2
        # What Liquibase 4.28.0 recorded for this changeset (its rollback SQL printed only DROP TABLE rb2).
        assert table.checksum(_local(migration)) == "9:af43cf18cc7872d69d2c0c865a5c3fff"

    def test_properties_ignore_lines_and_dbms(self, tmp_path: Path) -> None:
        """${name} expands; ignoreLines skips; ignore:true and dbms:mysql changesets are skipped."""
        text = HEAD + ("--property name:tbl value:things\n--changeset a:1\nCREATE TABLE ${tbl} (x int);\n"
                       "--ignoreLines:start\nGARBAGE\n--ignoreLines:end\n"
                       "--changeset a:2 ignore:true\nSELECT 2;\n--changeset a:3 dbms:mysql\nSELECT 3;\n"
                       "--changeset a:4 dbms:postgresql,h2\nSELECT 4;\n")
        loaded = _load(tmp_path, {"c.sql": text}).migrations
        assert [m.history_id for m in loaded] == ["1:a", "4:a"]
        assert loaded[0].up.text is not None and "CREATE TABLE things (x int);" in loaded[0].up.text
        assert "GARBAGE" not in loaded[0].up.text

    def test_a_rollback_naming_another_changeset(self, tmp_path: Path) -> None:
        """--rollback changesetId:x changesetAuthor:y runs that changeset's SQL."""
        text = HEAD + ("--changeset a:drop\nDROP TABLE t;\n--changeset a:1\nCREATE TABLE t (x int);\n"
                       "--rollback changesetId:drop changesetAuthor:a\n")
        down = _load(tmp_path, {"c.sql": text}).migrations[1].down
        assert down is not None and down.text == "DROP TABLE t;\n"


class TestBadChangelogs:
    def test_a_changeset_without_an_id(self, tmp_path: Path) -> None:
        """--changeset alice (no :id) is refused naming file and line."""
        with pytest.raises(LayoutError, match=r"c\.sql:3: a changeset needs an author and an id") as exc:
            _load(tmp_path, {"c.sql": HEAD + "--changeset alice\nSELECT 1;\n"})
        assert exc.value.context["line"] == 3

    def test_duplicate_id_and_author(self, tmp_path: Path) -> None:
        """The same id:author twice in the folder names both places."""
        files = {"a.sql": HEAD + "--changeset x:1\nSELECT 1;\n",
                 "b.sql": HEAD + "--changeset x:1\nSELECT 2;\n"}
        with pytest.raises(LayoutError, match=r"b\.sql:3: changeset 1 by x is also at a\.sql:3"):
            _load(tmp_path, files)

    def test_a_changeset_without_sql(self, tmp_path: Path) -> None:
        """A changeset with only a comment has no SQL."""
        with pytest.raises(LayoutError, match=r"c\.sql:3: changeset 1 by x has no SQL"):
            _load(tmp_path, {"c.sql": HEAD + "--changeset x:1\n--comment: nothing\n"
                                             "--changeset x:2\nSELECT 1;\n"})

    def test_a_plain_sql_file_among_changelogs(self, tmp_path: Path) -> None:
        """Every .sql file of the folder must be a formatted changelog."""
        with pytest.raises(LayoutError, match=r"plain\.sql: not a formatted SQL changelog"):
            _load(tmp_path, {"c.sql": HEAD + "--changeset x:1\nSELECT 1;\n", "plain.sql": "SELECT 2;\n"})

    def test_malformed_attribute_lines(self, tmp_path: Path) -> None:
        """A single-dash rollback and an unclosed rollback block are refused with their line."""
        with pytest.raises(LayoutError, match=r"c\.sql:5: unexpected formatting: write --rollback"):
            _load(tmp_path, {"c.sql": HEAD + "--changeset x:1\nSELECT 1;\n-rollback DROP x;\n"})
        with pytest.raises(LayoutError, match=r"c\.sql:5: the /\* liquibase rollback comment is not closed"):
            _load(tmp_path / "b", {"c.sql": HEAD + "--changeset x:1\nSELECT 1;\n"
                                                   "/* liquibase rollback\nDROP x;\n"})


_PIECES = st.sampled_from([
    "--changeset a:1", "--changeset a:2 runInTransaction:false", "--changeset b:1 splitStatements:false",
    "--changeset b:2 endDelimiter:/", "--changeset c", "--changeset :", '--changeset "x y":"z"',
    "--rollback DROP TABLE t;", "--rollback empty", "--rollback changesetId:1 changesetAuthor:a",
    "/* liquibase rollback", "*/", "--comment: hi", "--validCheckSum: 9:ab", "--preconditions onFail:HALT",
    "--precondition-sql-check expectedResult:0 SELECT 1", "--precondition-bogus x", "--ignoreLines:2",
    "--ignoreLines:start", "--ignoreLines:end", "--ignoreLines:x", "--property name:a value:b", "/",
    "SELECT 1;", "CREATE TABLE t (a int);", "$$", "", "-rollback x", "--include file:x.sql",
    "--changeset a:1 dbms:!postgresql",
])


class TestArbitraryChangelogs:
    @settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.one_of(_PIECES, st.text(max_size=30)), max_size=14), st.booleans())
    def test_any_changelog_text_parses_or_is_a_layout_error(self, lines: list[str], header: bool) -> None:
        """Arbitrary changelog text gives changesets or a LayoutError, never another exception."""
        text = (HEAD if header else "") + "\n".join(lines)
        try:
            found = liquibase.parse_changelog(text, Path("c.sql"))
        except LayoutError as exc:
            assert "c.sql" in str(exc)
            return
        for changeset in found:
            assert changeset.sql and changeset.id

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.one_of(_PIECES, st.text(max_size=20)), max_size=12))
    def test_any_folder_loads_or_is_a_layout_error(self, lines: list[str]) -> None:
        """load() turns arbitrary changelogs into steps with checksums, or a LayoutError."""
        with tempfile.TemporaryDirectory() as tmp:
            root = write({"c.sql": HEAD + "\n".join(lines) + "\n"}, Path(tmp)).resolve()
            try:
                loaded = liquibase.load(root)
            except LayoutError:
                return
            for migration in loaded.migrations:
                assert table.checksum(_local(migration)).startswith("9:")
