"""dbmate's layout: ``-- migrate:up`` / ``-- migrate:down`` blocks, their options, the file names.

The rules are dbmate's own (amacneil/dbmate ``pkg/dbmate/migration.go``); several cases below are
the ones dbmate's ``migration_test.go`` checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drills.migrations import LayoutError, load_migrations
from drills.migrations.layouts import dbmate, detect_layout
from drills.migrations.layouts.common import Listing
from drills.migrations.statements import read_script

HYPOTHESIS = settings(max_examples=150, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


class TestBlocks:
    def test_the_typical_file(self) -> None:
        """dbmate's own first case: up block, then down block, both in a transaction."""
        text = ("-- migrate:up\ncreate table users (id serial, name text);\n"
                "-- migrate:down\ndrop table users;\n")
        parsed = dbmate.parse_file(text, file="1_a.sql")
        assert parsed.up.text == "-- migrate:up\ncreate table users (id serial, name text);\n"
        assert parsed.up.first_line == 1 and parsed.up.transactional
        assert parsed.down is not None and parsed.down.text == "-- migrate:down\ndrop table users;\n"
        assert parsed.down.first_line == 3

    def test_no_space_needed_after_the_dashes_and_comments_may_lead(self) -> None:
        text = "\n-- This migration creates the users table.\n\n--migrate:up\ncreate table t (id int);\n" \
               "\n--migrate:down\ndrop table t;\n"
        parsed = dbmate.parse_file(text, file="1_a.sql")
        assert parsed.up.first_line == 4 and parsed.down is not None and parsed.down.first_line == 7

    @pytest.mark.parametrize(("directive", "transactional"), [
        ("-- migrate:up transaction:false", False),
        ("-- migrate:up transaction:true", True),
        ("-- migrate:up transaction:False", True),  # dbmate compares with "false" exactly
        ("-- migrate:up foo:bar transaction:false", False),
        ("-- migrate:up transaction:false:x", True),  # not a key:value word: ignored
    ])
    def test_transaction_option(self, directive: str, transactional: bool) -> None:
        parsed = dbmate.parse_file(f"{directive}\nALTER TYPE colors ADD VALUE 'orange';\n-- migrate:down\n",
                              file="1_a.sql")
        assert parsed.up.transactional is transactional
        assert parsed.down is not None and parsed.down.transactional

    def test_crlf_options(self) -> None:
        """dbmate's Windows case: the CR is not part of the option's value."""
        text = ("-- migrate:up transaction:false\r\ncreate table t (id int);\r\n"
                "-- migrate:down\r\ndrop table t;\r\n")
        assert dbmate.parse_file(text, file="1_a.sql").up.transactional is False

    def test_the_down_of_a_file_without_one_is_none(self) -> None:
        """dbmate 1 read a file without `-- migrate:down` as up only; so does drillbook."""
        assert dbmate.parse_file("-- migrate:up\nselect 1;\n", file="1_a.sql").down is None

    def test_postgres_splits_the_block_with_file_lines(self, tmp_path: Path) -> None:
        """The replay splits the block's text; the down block's statements are not in the up part."""
        _write(tmp_path, {"20240101000000_a.sql": "-- about\n-- migrate:up\ncreate table a (id int);\n"
                                                  "create table b (id int);\n\n-- migrate:down\n"
                                                  "drop table b;\ndrop table a;\n"})
        migration = load_migrations(tmp_path).migrations[0]
        up = read_script(migration.up)
        assert [(s.text, s.line) for s in up.statements or ()] == [
            ("create table a (id int)", 3), ("create table b (id int)", 4)]
        assert migration.down is not None
        down = read_script(migration.down)
        assert [(s.text, s.line) for s in down.statements or ()] == [("drop table b", 7), ("drop table a", 8)]


@dataclass
class Generated:
    lines: list[str] = field(default_factory=list)
    # file line → "up" / "down": where each statement was written.
    statements: dict[int, str] = field(default_factory=dict)
    up_transactional: bool = True
    down_transactional: bool = True

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@st.composite
def dbmate_files(draw: st.DrawFn) -> tuple[Generated, bool]:
    """A well-formed dbmate file of one or more sections: (generated, has a down direction)."""
    out = Generated()
    out.lines += draw(st.lists(st.sampled_from(["", "-- leading comment", "  -- indented comment"]),
                               max_size=2))
    sections = draw(st.integers(1, 3))
    has_down = sections > 1 or draw(st.booleans())
    counter = 0
    for _ in range(sections):
        for direction in ("up", "down") if has_down else ("up",):
            no_tx = draw(st.booleans())
            spacing = draw(st.sampled_from(["-- ", "--", "--  "]))
            out.lines.append(f"{spacing}migrate:{direction}" + (" transaction:false" if no_tx else ""))
            if no_tx:
                if direction == "up":
                    out.up_transactional = False
                else:
                    out.down_transactional = False
            for _ in range(draw(st.integers(0, 3))):
                out.lines += draw(st.lists(st.sampled_from(["", "-- note"]), max_size=1))
                out.lines.append(f"create table {direction}{counter} (id int);")
                out.statements[len(out.lines)] = direction
                counter += 1
    return out, has_down


class TestGenerated:
    @HYPOTHESIS
    @given(dbmate_files())
    def test_each_direction_holds_its_own_statements_at_their_file_lines(
            self, generated: tuple[Generated, bool]) -> None:
        """File line L is line L - first_line of the direction's text; blank when the other direction's."""
        out, has_down = generated
        parsed = dbmate.parse_file(out.text, file="1_a.sql")
        assert (parsed.down is not None) is has_down
        for direction, section in (("up", parsed.up), ("down", parsed.down)):
            if section is None:
                continue
            lines = section.text.split("\n")
            for line, owner in out.statements.items():
                index = line - section.first_line
                shown = lines[index] if 0 <= index < len(lines) else ""
                assert (shown == out.lines[line - 1]) is (owner == direction)
        assert parsed.up.transactional is out.up_transactional
        if parsed.down is not None:
            assert parsed.down.transactional is out.down_transactional


_VOCABULARY = st.sampled_from([
    "-- migrate:up", "-- migrate:down", "--migrate:up transaction:false", "-- migrate:down transaction:false",
    "  -- migrate:up", "-- migrate:upgrade", "-- migrate:up:slave", "select 1;", "", "-- c", "\r",
    "-- migrate:down a:b c:d",
])


class TestAnySequence:
    @HYPOTHESIS
    @given(st.lists(st.one_of(_VOCABULARY, st.text(max_size=12)), max_size=12))
    def test_directions_or_a_layout_error_never_another_exception(self, lines: list[str]) -> None:
        text = "\n".join(lines)
        try:
            parsed = dbmate.parse_file(text, file="any.sql")
        except LayoutError as exc:
            assert exc.context["file"] == "any.sql" and exc.message.startswith("any.sql")
            return
        file_lines = text.split("\n")
        for section in (parsed.up, parsed.down):
            if section is None:
                continue
            assert section.text.split("\n")[0] == file_lines[section.first_line - 1]
            assert "migrate:" in section.text.split("\n")[0]


class TestRefused:
    @pytest.mark.parametrize(("text", "line", "words"), [
        ("alter table users add column status text;\n", None, "no `-- migrate:up`"),
        ("-- migrate:down\ndrop table users;\n", None, "no `-- migrate:up`"),
        ("-- migrate:down\ndrop table t;\n-- migrate:up\ncreate table t (id int);\n", 1,
         "before `-- migrate:up`"),
        ("-- c\ncreate type s as enum ('a');\n-- migrate:up\n-- migrate:down\n", 2, "SQL before"),
        ("-- migrate:up\nselect 1;\n-- migrate:up\nselect 2;\n-- migrate:down\n", 1,
         "has no `-- migrate:down`"),
        ("-- migrate:up\nselect 1;\n-- migrate:down\nselect 2;\n-- migrate:down\n", 5,
         "a second `-- migrate:down`"),
    ])
    def test_dbmate_refuses_it_and_so_does_drillbook(self, text: str, line: int | None, words: str) -> None:
        with pytest.raises(LayoutError) as caught:
            dbmate.parse_file(text, file="1_a.sql")
        assert words in caught.value.message and caught.value.context.get("line") == line
        assert caught.value.hint


class TestFolder:
    def test_detected_loaded_and_versions_are_the_leading_digits(self, tmp_path: Path) -> None:
        _write(tmp_path, {
            "20240101000000_create_users.sql": "-- migrate:up\ncreate table users (id int);\n"
                                               "-- migrate:down\n",
            "20240102000000_add_index.sql.sql": "-- migrate:up transaction:false\n"
                                                "create index concurrently i on users (id);\n"
                                                "-- migrate:down\n",
            "README.md": "# db",
        })
        assert dbmate.detect(Listing.of(tmp_path)) and detect_layout(tmp_path) == "dbmate"
        loaded = load_migrations(tmp_path)
        assert [(m.version, m.description, m.up.transactional) for m in loaded.migrations] == [
            ("20240101000000", "create_users", True), ("20240102000000", "add_index", False)]

    def test_not_detected_without_a_directive(self, tmp_path: Path) -> None:
        _write(tmp_path, {"1_a.sql": "-- migrate up later\nselect 1;\n"})
        assert not dbmate.detect(Listing.of(tmp_path))

    def test_a_file_of_other_name_is_named(self, tmp_path: Path) -> None:
        _write(tmp_path, {"1_a.sql": "-- migrate:up\n", "schema.sql": "create table t (id int);\n"})
        with pytest.raises(LayoutError, match=r"schema\.sql does not fit the dbmate layout"):
            load_migrations(tmp_path, layout="dbmate")

    def test_name_order_against_version_order_is_refused(self, tmp_path: Path) -> None:
        """dbmate runs 10_b.sql before 9_a.sql (name order): drillbook will not replay another order."""
        _write(tmp_path, {"9_a.sql": "-- migrate:up\n", "10_b.sql": "-- migrate:up\n"})
        with pytest.raises(LayoutError, match=r"10_b\.sql runs before 9_a\.sql"):
            load_migrations(tmp_path, layout="dbmate")

    def test_duplicate_versions_name_both_files(self, tmp_path: Path) -> None:
        _write(tmp_path, {"1_a.sql": "-- migrate:up\n", "01_b.sql": "-- migrate:up\n"})
        with pytest.raises(LayoutError, match=r"duplicate version 1"):
            load_migrations(tmp_path, layout="dbmate")
