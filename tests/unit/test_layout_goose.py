"""goose's layout: sections, StatementBegin/End, NO TRANSACTION, and the files goose refuses.

The parser is a transcription of goose's own (pressly/goose v3 ``internal/sqlparser/parser.go``);
the generated files below are written the way goose's documentation and test data write them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drills.migrations import LayoutError, Statement, load_migrations
from drills.migrations.layouts import detect_layout, goose
from drills.migrations.layouts.common import Listing
from drills.migrations.statements import read_script

HYPOTHESIS = settings(max_examples=150, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])

FUNCTION = """CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END;
$$;"""


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


# -- a well-formed goose file, generated with what goose must make of it ---------------------

@dataclass
class Rendered:
    """A goose file being written, line by line, with the statements goose will find in it."""

    lines: list[str] = field(default_factory=list)
    up: list[Statement] = field(default_factory=list)
    down: list[Statement] = field(default_factory=list)

    def add(self, *lines: str) -> int:
        """Append lines; the number of the first one."""
        self.lines.extend(lines)
        return len(self.lines) - len(lines) + 1

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


_UP = st.sampled_from(["-- +goose Up", "--+goose UP", "-- +goose   up  ", "-- +goose Up --"])
_DOWN = st.sampled_from(["-- +goose Down", "-- +goose down", "--  +goose DOWN"])
_NOISE = st.lists(st.sampled_from(["", "-- a note", "--", "-- +goose ENVSUB ON", "-- +goose envsub off"]),
                  max_size=2)


@st.composite
def _statement(draw: st.DrawFn, index: int) -> tuple[list[str], str, int, bool]:
    """(lines, the statement goose sends, offset of its first line in ``lines``, is a block)."""
    kind = draw(st.sampled_from(["one", "two", "comment-inside", "block", "block-with-envsub"]))
    if kind == "one":
        tail = draw(st.sampled_from(["", " -- trailing; comment", "   "]))
        line = f"CREATE TABLE t{index} (id int);{tail}"
        return [line], line.strip(), 0, False
    if kind == "two":
        lines = [f"INSERT INTO t{index}", "  VALUES (1);"]
        return lines, "\n".join(lines), 0, False
    if kind == "comment-inside":
        lines = [f"CREATE VIEW v{index} AS", "  -- kept: the statement has started", "  SELECT 1;"]
        return lines, "\n".join(lines), 0, False
    body = FUNCTION.replace("touch()", f"touch{index}()").split("\n")
    inner = ["-- +goose ENVSUB ON", *body[:2], "-- +goose ENVSUB OFF", *body[2:]] \
        if kind == "block-with-envsub" else body
    lead = draw(st.sampled_from([[], ["-- the function"], [""]]))
    # The body's first line follows StatementBegin, the dropped lead lines and an ENVSUB line.
    offset = 1 + len(lead) + (1 if kind == "block-with-envsub" else 0)
    return ["-- +goose StatementBegin", *lead, *inner, "-- +goose StatementEnd"], "\n".join(body), \
        offset, True


@st.composite
def goose_files(draw: st.DrawFn) -> tuple[Rendered, bool, bool]:
    """A well-formed goose file: (rendered, has a Down section, NO TRANSACTION)."""
    out = Rendered()
    no_tx = draw(st.booleans())
    out.add(*draw(st.lists(st.sampled_from(["", "-- header comment"]), max_size=2)))
    if no_tx and draw(st.booleans()):
        out.add("-- +goose NO TRANSACTION")
        no_tx_written = True
    else:
        no_tx_written = False
    out.add(draw(_UP))
    has_down = draw(st.booleans())
    sections = [(out.up, draw(st.integers(0, 4)))]
    if has_down:
        sections.append((out.down, draw(st.integers(0, 3))))
    counter = 0
    for number, (statements, count) in enumerate(sections):
        if number == 1:
            out.add(draw(_DOWN))
        for _ in range(count):
            out.add(*draw(_NOISE))
            if no_tx and not no_tx_written and draw(st.booleans()):
                out.add("-- +goose NO TRANSACTION")
                no_tx_written = True
            lines, text, offset, _block = draw(_statement(counter))
            counter += 1
            first = out.add(*lines)
            statements.append(Statement(text, first + offset))
    if no_tx and not no_tx_written:
        out.add("-- +goose NO TRANSACTION")
    out.add(*draw(st.lists(st.sampled_from(["", "-- trailing comment"]), max_size=2)))
    return out, has_down, no_tx


class TestSections:
    @HYPOTHESIS
    @given(goose_files())
    def test_well_formed_files_give_goose_statements_with_their_file_lines(
            self, generated: tuple[Rendered, bool, bool]) -> None:
        """Every statement goose sends, in order, with the line it starts on; none of the other section's."""
        rendered, has_down, no_tx = generated
        parsed = goose.parse_file(rendered.text, file="x.sql")
        assert list(parsed.up.statements) == rendered.up
        assert (parsed.down is not None) is has_down
        if parsed.down is not None:
            assert list(parsed.down.statements) == rendered.down
        assert parsed.transactional is not no_tx

    @HYPOTHESIS
    @given(goose_files())
    def test_section_text_holds_its_statements_at_their_file_lines(
            self, generated: tuple[Rendered, bool, bool]) -> None:
        """A Part's text starts at first_line: line L of the file is line L - first_line of the text."""
        rendered, _, _ = generated
        parsed = goose.parse_file(rendered.text, file="x.sql")
        for section in (parsed.up, parsed.down):
            if section is None:
                continue
            text_lines = section.text.split("\n")
            for statement in section.statements:
                assert text_lines[statement.line - section.first_line].strip() == \
                    statement.text.split("\n")[0].strip()

    def test_function_body_is_one_statement(self) -> None:
        """Semicolons inside StatementBegin/End do not split: the function is sent whole."""
        text = f"-- +goose Up\n-- +goose StatementBegin\n{FUNCTION}\n-- +goose StatementEnd\n" \
               "-- +goose Down\nDROP FUNCTION touch();\n"
        parsed = goose.parse_file(text, file="x.sql")
        assert parsed.up.statements == (Statement(FUNCTION, 3),)
        assert parsed.down is not None
        assert parsed.down.statements == (Statement("DROP FUNCTION touch();", 11),)

    def test_a_statement_ends_where_goose_ends_it_not_where_postgres_would(self) -> None:
        """goose ends a statement at a line ending in `;` even inside a string; the split is goose's."""
        text = "-- +goose Up\nINSERT INTO t VALUES ('a;\nb');\n"
        parsed = goose.parse_file(text, file="x.sql")
        assert [s.text for s in parsed.up.statements] == ["INSERT INTO t VALUES ('a;", "b');"]

    def test_no_transaction_anywhere_covers_both_directions(self) -> None:
        text = "-- +goose Up\nCREATE INDEX CONCURRENTLY i ON t (a);\n-- +goose Down\n" \
               "-- +goose NO TRANSACTION\nDROP INDEX CONCURRENTLY i;\n"
        assert goose.parse_file(text, file="x.sql").transactional is False

    def test_crlf_lines(self) -> None:
        """Windows line breaks: goose's scanner drops the CR; annotations and `;` are still seen."""
        text = "-- +goose Up\r\nCREATE TABLE t (id int);\r\n-- +goose Down\r\nDROP TABLE t;\r\n"
        parsed = goose.parse_file(text, file="x.sql")
        assert parsed.up.statements == (Statement("CREATE TABLE t (id int);", 2),)

    def test_the_parts_statements_reach_the_replay_unchanged(self, tmp_path: Path) -> None:
        """The replay runs goose's split (not PostgreSQL's) and only the up section on the way up."""
        _write(tmp_path, {"00001_a.sql": f"-- +goose Up\n-- +goose StatementBegin\n{FUNCTION}\n"
                                          "-- +goose StatementEnd\n-- +goose Down\nDROP FUNCTION touch();\n"})
        migration = load_migrations(tmp_path).migrations[0]
        script = read_script(migration.up)
        assert script.statements == (Statement(FUNCTION, 3),) and script.transactional
        assert migration.down is not None and "DROP" not in migration.up.text  # type: ignore[operator]


_VOCABULARY = st.sampled_from([
    "-- +goose Up", "-- +goose Down", "-- +goose StatementBegin", "-- +goose StatementEnd",
    "-- +goose NO TRANSACTION", "-- +goose ENVSUB ON", "-- +goose envsub off", "  -- +goose Up",
    "-- +goose", "-- +goose Sideways", "-- +goose Up +goose Down", "SELECT 1;", "SELECT", "1;",
    "-- comment", "", "   ", "CREATE TABLE x (a int); -- c", "\r", "$$;", "-- +goose statementend",
])


class TestAnySequence:
    @HYPOTHESIS
    @given(st.lists(st.one_of(_VOCABULARY, st.text(alphabet=st.characters(exclude_characters="\n"),
                                                     max_size=12)), max_size=14))
    def test_parts_or_a_layout_error_never_another_exception(self, lines: list[str]) -> None:
        """Any lines: goose's reading (statements on their lines), or a LayoutError naming the file."""
        text = "\n".join(lines)
        try:
            parsed = goose.parse_file(text, file="any.sql")
        except LayoutError as exc:
            assert exc.context["file"] == "any.sql" and "any.sql" in exc.message
            return
        file_lines = goose.scan_lines(text)
        for section in (parsed.up, parsed.down):
            for statement in section.statements if section else ():
                assert statement.text == statement.text.strip() != ""
                assert file_lines[statement.line - 1].strip() == statement.text.split("\n")[0].strip()
                assert "+goose" not in statement.text.split("\n")[0]


class TestRefused:
    @pytest.mark.parametrize(("text", "line", "words"), [
        ("CREATE TABLE t (id int);\n", None, "no `-- +goose Up`"),
        ("-- +goose Up\n-- +goose StatementBegin\nSELECT 1;\n", 2, "has no `-- +goose StatementEnd`"),
        ("-- +goose Down\nDROP TABLE t;\n-- +goose Up\n", 1, "before `-- +goose Up`"),
        ("-- +goose Up\n-- +goose Up\n", 2, "a second `-- +goose Up`"),
        ("-- +goose Up\n-- +goose Down\n-- +goose Down\n", 3, "`-- +goose Down` in the down section"),
        ("-- +goose Up\n-- +goose StatementEnd\n", 2, "without `-- +goose StatementBegin`"),
        ("-- +goose Up\nSELECT 1\n-- +goose Down\n", 2, "not ended by `;`"),
        ("-- +goose Up\n-- +goose Down\nSELECT 1\n", 3, "not ended by `;`"),
        ("-- +goose Up\n -- +goose Down\n", 2, "leading whitespace"),
        ("-- +goose Up\n-- +goose Sideways\n", 2, "does not know the annotation 'Sideways'"),
        ("SELECT 1;\n-- +goose Up\n", 1, "SQL before"),
        ("-- +goose Up\n-- +goose StatementBegin\n-- +goose StatementEnd\nSELECT 1;\n", 4, "would skip"),
    ])
    def test_goose_refuses_it_and_so_does_drillbook_naming_file_and_line(
            self, text: str, line: int | None, words: str) -> None:
        with pytest.raises(LayoutError) as caught:
            goose.parse_file(text, file="20240101_x.sql")
        assert words in caught.value.message
        assert caught.value.context.get("line") == line
        assert caught.value.message.startswith("20240101_x.sql" + (f":{line}" if line else ""))
        assert caught.value.hint


class TestFolder:
    def test_detected_by_an_up_annotation_and_loaded_in_version_order(self, tmp_path: Path) -> None:
        _write(tmp_path, {
            "20240102000000_b.sql": "-- +goose Up\nCREATE TABLE b (id int);\n-- +goose Down\nDROP TABLE b;\n",
            "20240101000000_a.sql": "-- +goose Up\nCREATE TABLE a (id int);\n",
            "README.md": "notes", "embed.go": "package migrations\n",
        })
        assert goose.detect(Listing.of(tmp_path)) and detect_layout(tmp_path) == "goose"
        loaded = load_migrations(tmp_path)
        assert [(m.version, m.description) for m in loaded.migrations] == [
            ("20240101000000", "a"), ("20240102000000", "b")]
        first, second = loaded.migrations
        assert first.down is None and second.down is not None
        assert second.down.statements == (Statement("DROP TABLE b;", 4),)

    def test_not_detected_without_the_annotation(self, tmp_path: Path) -> None:
        _write(tmp_path, {"1_a.sql": "-- goose Up, said in prose\nSELECT 1;\n"})
        assert not goose.detect(Listing.of(tmp_path))

    def test_a_file_without_up_is_named(self, tmp_path: Path) -> None:
        _write(tmp_path, {"1_a.sql": "-- +goose Up\nSELECT 1;\n", "2_b.sql": "SELECT 2;\n"})
        with pytest.raises(LayoutError, match=r"2_b\.sql: no `-- \+goose Up`"):
            load_migrations(tmp_path, layout="goose")

    def test_duplicate_versions_name_both_files(self, tmp_path: Path) -> None:
        _write(tmp_path, {"1_a.sql": "-- +goose Up\n", "001_b.sql": "-- +goose Up\n"})
        with pytest.raises(LayoutError, match=r"duplicate version 1: 001_b\.sql and 1_a\.sql"):
            load_migrations(tmp_path, layout="goose")

    @pytest.mark.parametrize(("name", "words"), [
        ("schema.sql", "does not fit the goose layout"),
        ("0_init.sql", "goose versions start at 1"),
        ("00002_seed.go", "Go migration"),
    ])
    def test_files_goose_would_not_run_as_sql_are_named(self, tmp_path: Path, name: str, words: str) -> None:
        _write(tmp_path, {"1_a.sql": "-- +goose Up\n", name: "-- +goose Up\n"})
        with pytest.raises(LayoutError, match=words) as caught:
            load_migrations(tmp_path, layout="goose")
        assert caught.value.context["file"] == name

    def test_go_test_files_are_not_migrations(self, tmp_path: Path) -> None:
        _write(tmp_path, {"1_a.sql": "-- +goose Up\n", "00002_a_test.go": "package x\n"})
        assert len(load_migrations(tmp_path, layout="goose").migrations) == 1
