"""Atlas layout: atlas.sum computed and validated as `atlas migrate validate` does, txmode, order."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drills.migrations import IntegrityFailed, LayoutError
from drills.migrations.layouts import atlas
from drills.migrations.layouts.atlas import SumMismatch, compute_sum, parse_sum, render_sum

HYPOTHESIS = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])

# Copied from ariga/atlas, cmd/atlas/internal/migrate/testdata/fixed/ (1.sql, 2.sql, 3.sql and the
# atlas.sum that `atlas migrate hash` wrote for them): the files have no trailing newline.
ATLAS_FIXED_FILES = [
    ("1.sql", b"CREATE TABLE `users` (`id` int NOT NULL PRIMARY KEY);"),
    ("2.sql", b"ALTER TABLE `users` ADD COLUMN `happy` boolean NOT NULL DEFAULT true;"),
    ("3.sql", b"CREATE TABLE `pets` (`id` int NOT NULL PRIMARY KEY);\n"
              b"ALTER TABLE `pets` ADD COLUMN `happy` boolean NULL;"),
]
ATLAS_FIXED_SUM = (
    "h1:oNV0f9HzMMCf2pzF+sA6CmsSHGjdkWYmcTjoc/lWxLs=\n"
    "1.sql h1:twN+zPVp8JzWEUcPPfNIT6/62Wa08dfxxZhT4gZxBzg=\n"
    "2.sql h1:KHLlrSPwSjbp4+KrpQHwYZf8zlSIiAR7MS3H2yd1yeE=\n"
    "3.sql h1:osHrPgu8uNgd6j09XCiyBQWWEh9aAmwjRgzdZZgm68M=\n"
)
# From ariga/atlas, cmd/atlas/internal/cmdapi/testdata/sqlite/: the first file and its atlas.sum line.
ATLAS_SQLITE_INITIAL = ("20220318104614_initial.sql",
                        b'-- create "tbl" table\nCREATE TABLE tbl (`col` int NOT NULL);\n')
ATLAS_SQLITE_INITIAL_HASH = "FifWjY2X0g2YVnb18Qm+QBPvoldDOOob7bS0LrFuCXc="


def _folder(directory: Path, files: dict[str, str], *, sum_text: str | None = None) -> Path:
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    if sum_text is None:
        sum_text = render_sum(compute_sum([(n, t.encode()) for n, t in sorted(files.items())]))
    (directory / "atlas.sum").write_text(sum_text, encoding="utf-8")
    return directory


class TestAtlasSum:
    def test_equals_atlas_own_sum_file(self) -> None:
        """The atlas.sum computed for Atlas's own test data is byte for byte the one Atlas wrote."""
        assert render_sum(compute_sum(ATLAS_FIXED_FILES)) == ATLAS_FIXED_SUM

    def test_per_file_hash_of_atlas_sqlite_testdata(self) -> None:
        """A file with a trailing newline and a comment hashes as in Atlas's sqlite testdata."""
        assert compute_sum([ATLAS_SQLITE_INITIAL])[0].hash == ATLAS_SQLITE_INITIAL_HASH

    def test_parse_round_trips_atlas_file(self) -> None:
        """Atlas's atlas.sum parses: its first line matches its entries."""
        recorded, entries = parse_sum(ATLAS_FIXED_SUM, path=Path("atlas.sum"))
        assert recorded == "oNV0f9HzMMCf2pzF+sA6CmsSHGjdkWYmcTjoc/lWxLs="
        assert [e.name for e in entries] == ["1.sql", "2.sql", "3.sql"]
        assert [e.line for e in entries] == [2, 3, 4]

    def test_hand_edited_sum_line_is_refused(self) -> None:
        """Changing one hash in atlas.sum without its first line is a SumMismatch on line 1."""
        tampered = ATLAS_FIXED_SUM.replace("KHLl", "KHLm")
        with pytest.raises(SumMismatch, match=r"atlas.sum:1: atlas.sum was edited by hand"):
            parse_sum(tampered, path=Path("atlas.sum"))

    def test_malformed_line_names_line(self) -> None:
        """A line without `h1:` is a SumMismatch naming its line."""
        with pytest.raises(SumMismatch, match=r"atlas.sum:3: .*not `<file> h1:<hash>`"):
            parse_sum(ATLAS_FIXED_SUM.replace("2.sql h1:", "2.sql "), path=Path("atlas.sum"))

    def test_crlf_sum_file_parses(self) -> None:
        """Go's line scanner drops a trailing \\r: a CRLF atlas.sum is the same file."""
        assert parse_sum(ATLAS_FIXED_SUM.replace("\n", "\r\n"), path=Path("atlas.sum"))[1]

    def test_sum_ignore_feeds_name_only(self) -> None:
        """`atlas:sum ignore` on the first line: no entry, but the name still feeds later hashes."""
        ignored = ("2_x.sql", b"-- atlas:sum ignore\nSELECT 1;\n")
        with_ignored = compute_sum([ATLAS_FIXED_FILES[0], ignored, ATLAS_FIXED_FILES[2]])
        without = compute_sum([ATLAS_FIXED_FILES[0], ATLAS_FIXED_FILES[2]])
        assert [e.name for e in with_ignored] == ["1.sql", "3.sql"]
        assert with_ignored[1].hash != without[1].hash
        edited = compute_sum([ATLAS_FIXED_FILES[0], ("2_x.sql", b"-- atlas:sum ignore\nSELECT 2;\n"),
                              ATLAS_FIXED_FILES[2]])
        assert edited == with_ignored

    @HYPOTHESIS
    @given(files=st.dictionaries(st.from_regex(r"[0-9]{1,4}_[a-z]{1,8}\.sql", fullmatch=True),
                                 st.binary(max_size=200), min_size=1, max_size=6))
    def test_render_parse_round_trip(self, files: dict[str, bytes]) -> None:
        """Whatever the files, the rendered atlas.sum parses back to the same entries."""
        entries = compute_sum(sorted(files.items()))
        _, parsed = parse_sum(render_sum(entries), path=Path("atlas.sum"))
        assert [(e.name, e.hash) for e in parsed] == [(e.name, e.hash) for e in entries]


class TestLoad:
    def test_versions_descriptions_and_hashes(self, tmp_path: Path) -> None:
        """Version before the first `_`; each migration carries its atlas.sum entry as `hashed`."""
        _folder(tmp_path, {"20220318104614_initial.sql": "CREATE TABLE t (a int);\n",
                           "20220318104615_second.sql": "ALTER TABLE t ADD b int;\n"})
        loaded = atlas.load(tmp_path)
        assert [(m.version, m.description) for m in loaded.migrations] == [
            ("20220318104614", "initial"), ("20220318104615", "second")]
        sums = parse_sum((tmp_path / "atlas.sum").read_text(), path=tmp_path)[1]
        assert [m.hashed for m in loaded.migrations] == [f"h1:{e.hash}".encode() for e in sums]
        assert loaded.layout == "atlas"

    def test_edited_file_is_named(self, tmp_path: Path) -> None:
        """A file changed after `atlas migrate hash` is a SumMismatch naming it and its atlas.sum line."""
        _folder(tmp_path, {"1_a.sql": "SELECT 1;\n", "2_b.sql": "SELECT 2;\n", "3_c.sql": "SELECT 3;\n"})
        (tmp_path / "2_b.sql").write_text("SELECT 22;\n", encoding="utf-8")
        with pytest.raises(SumMismatch, match=r"atlas.sum:3: 2_b.sql was edited") as caught:
            atlas.load(tmp_path)
        assert caught.value.context["file"] == "2_b.sql"
        assert caught.value.check_id == "migrations.atlas_sum"
        assert isinstance(caught.value, IntegrityFailed)

    def test_added_and_removed_files_are_named(self, tmp_path: Path) -> None:
        """A file not in atlas.sum, and one listed but gone, are both named."""
        _folder(tmp_path, {"1_a.sql": "SELECT 1;\n", "2_b.sql": "SELECT 2;\n"})
        (tmp_path / "2_b.sql").unlink()
        (tmp_path / "3_c.sql").write_text("SELECT 3;\n", encoding="utf-8")
        with pytest.raises(SumMismatch, match=r"added since atlas.sum was written: 3_c.sql; "
                                              r"listed in atlas.sum but missing: 2_b.sql"):
            atlas.load(tmp_path)

    def test_missing_sum_with_explicit_layout(self, tmp_path: Path) -> None:
        """Without atlas.sum Atlas refuses the folder (checksum file not found)."""
        (tmp_path / "1_a.sql").write_text("SELECT 1;\n", encoding="utf-8")
        with pytest.raises(SumMismatch, match=r"no atlas\.sum"):
            atlas.load(tmp_path)

    def test_txmode_none_and_file(self, tmp_path: Path) -> None:
        """`-- atlas:txmode none` in the header block runs outside a transaction; `file` inside."""
        _folder(tmp_path, {"1_a.sql": "-- atlas:txmode none\n\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
                           "2_b.sql": "-- atlas:txmode file\n\nSELECT 1;\n",
                           "3_c.sql": "SELECT 1;\n"})
        assert [m.up.transactional for m in atlas.load(tmp_path).migrations] == [False, True, True]

    def test_txmode_needs_blank_line_after_header(self, tmp_path: Path) -> None:
        """A directive glued to the statement is no file directive in Atlas: the default applies."""
        _folder(tmp_path, {"1_a.sql": "-- atlas:txmode none\nSELECT 1;\n"})
        assert atlas.load(tmp_path).migrations[0].up.transactional is True

    @pytest.mark.parametrize(("header", "message"), [
        ("-- atlas:txmode all\n", r"1_a.sql:1: atlas:txmode all is not allowed"),
        ("-- atlas:txmode sometimes\n", r"1_a.sql:1: unknown atlas:txmode 'sometimes'"),
        ("-- atlas:txmode none\n-- atlas:txmode file\n", r"1_a.sql:2: more than one atlas:txmode"),
    ])
    def test_bad_txmode_names_line(self, tmp_path: Path, header: str, message: str) -> None:
        """txmode `all`, an unknown mode or two directives are refused as Atlas refuses them."""
        _folder(tmp_path, {"1_a.sql": header + "\nSELECT 1;\n"})
        with pytest.raises(LayoutError, match=message):
            atlas.load(tmp_path)

    def test_text_order_differing_from_numbers_is_refused(self, tmp_path: Path) -> None:
        """Atlas runs 10_b.sql before 9_a.sql (name order): replaying by number would differ."""
        _folder(tmp_path, {"9_a.sql": "SELECT 1;\n", "10_b.sql": "SELECT 2;\n"})
        with pytest.raises(LayoutError, match=r"Atlas applies 10_b.sql before 9_a.sql"):
            atlas.load(tmp_path)

    def test_non_numeric_version_is_refused(self, tmp_path: Path) -> None:
        """A file whose name does not start with a number names the file."""
        _folder(tmp_path, {"init.sql": "SELECT 1;\n"})
        with pytest.raises(LayoutError, match=r"init.sql: Atlas's version .* 'init'"):
            atlas.load(tmp_path)

    def test_delimiter_directive_splits(self, tmp_path: Path) -> None:
        """`-- atlas:delimiter` gives the layout's own statements with their file lines."""
        _folder(tmp_path, {"1_a.sql": "-- atlas:delimiter \\n\\n\n\nSELECT 1\n\nSELECT 2;\n"})
        statements = atlas.load(tmp_path).migrations[0].up.statements
        assert statements is not None
        assert [s.line for s in statements][-1] == 5

    def test_checkpoint_is_refused(self, tmp_path: Path) -> None:
        """Checkpoint files change what Atlas runs on an empty database: refused, named."""
        _folder(tmp_path, {"1_a.sql": "-- atlas:checkpoint\n\nSELECT 1;\n"})
        with pytest.raises(LayoutError, match="checkpoint"):
            atlas.load(tmp_path)


class TestDetect:
    def test_atlas_sum_marks_the_folder(self, tmp_path: Path) -> None:
        """atlas.sum present: atlas; absent: not."""
        from drills.migrations.layouts.common import Listing
        (tmp_path / "1_a.sql").write_text("SELECT 1;\n", encoding="utf-8")
        assert not atlas.detect(Listing.of(tmp_path))
        (tmp_path / "atlas.sum").write_text("", encoding="utf-8")
        assert atlas.detect(Listing.of(tmp_path))
