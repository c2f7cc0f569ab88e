"""Migration layouts, ordering, statement splitting, history comparison, lint output, schema diffs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from checks.migration_history import (
    AppliedMigration,
    History,
    HistoryKind,
    LocalMigration,
    compare_history,
    flyway_checksum,
    validate_history,
    version_key,
)
from checks.migration_lint import (
    DEFAULT_BLOCKING_RULES,
    Finding,
    LinterUnavailable,
    lint_verdict,
    parse_squawk_json,
)
from checks.schema import SchemaSnapshot, diff_schemas, schemas_match
from checks.verdict import Outcome
from drills.migrations import (
    Direction,
    Layout,
    LayoutError,
    detect_layout,
    load_migrations,
    parse_name,
    read_script,
    split_statements,
)

HYPOTHESIS = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def _write(directory: Path, names: list[str], content: str = "SELECT 1;\n") -> None:
    for name in names:
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


class TestParseName:
    def test_flyway_versioned_undo_and_repeatable(self) -> None:
        """V/U prefixes give direction; underscores in the description become spaces; R__ has no version."""
        assert parse_name(Layout.FLYWAY, "V3__add_x.sql") == parse_name(Layout.FLYWAY, "V3__add_x.sql")
        up = parse_name(Layout.FLYWAY, "V1_1__add_user_table.sql")
        assert up is not None and up.version == "1_1" and up.description == "add user table"
        undo = parse_name(Layout.FLYWAY, "U3__add_x.sql")
        assert undo is not None and undo.direction is Direction.DOWN
        repeatable = parse_name(Layout.FLYWAY, "R__views.sql")
        assert repeatable is not None and repeatable.version is None

    def test_dotted_authelia_names(self) -> None:
        """V0001.Initial_Schema.up.sql: version 0001, description Initial_Schema, direction up."""
        parsed = parse_name(Layout.DOTTED, "V0001.Initial_Schema.down.sql")
        assert parsed is not None
        assert (parsed.version, parsed.description, parsed.direction) == ("0001", "Initial_Schema",
                                                                           Direction.DOWN)

    def test_numbered_refuses_up_down_names(self) -> None:
        """A golang-migrate name is not a numbered flat file (it would double every version)."""
        assert parse_name(Layout.NUMBERED, "0001_x.up.sql") is None
        assert parse_name(Layout.NUMBERED, "0001_x.sql") is not None

    @HYPOTHESIS
    @given(version=st.integers(min_value=0, max_value=10**12), width=st.integers(1, 14),
           desc=st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
           direction=st.sampled_from(["up", "down"]))
    def test_updown_round_trip(self, version: int, width: int, desc: str, direction: str) -> None:
        """Formatting a golang-migrate name and parsing it back gives the same version and description."""
        name = f"{version:0{width}d}_{desc}.{direction}.sql"
        parsed = parse_name(Layout.UPDOWN, name)
        assert parsed is not None
        assert version_key(parsed.version or "") == version_key(str(version))
        assert parsed.description == desc and parsed.direction.value == direction

    @HYPOTHESIS
    @given(name=st.text(min_size=0, max_size=40))
    def test_arbitrary_names_never_crash(self, name: str) -> None:
        """Any file name either parses in a layout or is refused with None."""
        for layout in Layout:
            result = parse_name(layout, name)
            if result is not None and result.version is not None:
                version_key(result.version)


class TestVersionKey:
    def test_trailing_zeros_are_insignificant(self) -> None:
        """Flyway treats 1.0 and 1 as the same version; zero padding never matters."""
        assert version_key("1.0") == version_key("1") == version_key("0001")
        assert version_key("1_1") == version_key("1.1") == (1, 1)

    @HYPOTHESIS
    @given(parts=st.lists(st.integers(0, 10_000), min_size=1, max_size=4),
           other=st.lists(st.integers(0, 10_000), min_size=1, max_size=4))
    def test_order_is_numeric_not_lexical(self, parts: list[int], other: list[int]) -> None:
        """Dotted versions compare part by part as numbers (1.10 > 1.9), as Flyway orders them."""
        a, b = ".".join(map(str, parts)), ".".join(map(str, other))

        def trimmed(p: list[int]) -> list[int]:
            q = list(p)
            while len(q) > 1 and q[-1] == 0:
                q.pop()
            return q

        assert (version_key(a) < version_key(b)) == (trimmed(parts) < trimmed(other))

    def test_no_digits_is_refused(self) -> None:
        with pytest.raises(ValueError, match="no digits"):
            version_key("abc")


class TestDetection:
    @pytest.mark.parametrize(("names", "layout"), [
        (["V1__init.sql", "V2__more.sql", "U2__more.sql", "R__views.sql"], Layout.FLYWAY),
        (["V0001.Init.up.sql", "V0001.Init.down.sql"], Layout.DOTTED),
        (["000001_init.up.sql", "000001_init.down.sql", "000002_x.up.sql"], Layout.UPDOWN),
        (["0001_init.sql", "0002_more.sql"], Layout.NUMBERED),
        (["0001_init/up.sql", "0001_init/down.sql", "0002_more/up.sql"], Layout.DIRECTORY),
        (["20230406064219_init/migration.sql", "20230407101500_post/migration.sql"], Layout.PRISMA),
        (["migration_lock.toml", "0_init/migration.sql"], Layout.PRISMA),
        (["20220318104614_init.sql", "20220318104615_more.sql", "atlas.sum"], Layout.ATLAS),
        (["00000000000000_diesel_initial_setup/up.sql", "00000000000000_diesel_initial_setup/down.sql",
          "2022-04-26-153628_users/up.sql", "2022-04-26-153628_users/down.sql"], Layout.DIESEL),
        (["2022-04-26-153628_users/up.sql", "2022-04-26-153628_users/down.sql"], Layout.DIESEL),
    ])
    def test_each_layout_is_detected(self, tmp_path: Path, names: list[str], layout: Layout) -> None:
        """Every file of a folder fits exactly the detected layout."""
        _write(tmp_path, names)
        (tmp_path / "README.md").write_text("not a migration")
        assert detect_layout(tmp_path) is layout

    def test_unknown_layout_names_the_file(self, tmp_path: Path) -> None:
        """A file fitting no layout is named, with the layouts it was tried against and a hint."""
        _write(tmp_path, ["0001_init.sql", "init-schema.sql"])
        with pytest.raises(LayoutError, match=r"init-schema\.sql fits none") as info:
            detect_layout(tmp_path)
        assert "V3__add_x.sql" in info.value.hint

    def test_mixed_layouts_are_refused(self, tmp_path: Path) -> None:
        """Flyway files next to golang-migrate files: neither tool would run that folder."""
        _write(tmp_path, ["V1__init.sql", "000002_more.up.sql"])
        expected = r"mixed layouts: 000002_more\.up\.sql is updown, V1__init\.sql is not"
        with pytest.raises(LayoutError, match=expected):
            detect_layout(tmp_path)

    def test_empty_and_missing_folders(self, tmp_path: Path) -> None:
        with pytest.raises(LayoutError, match="no migrations found"):
            detect_layout(tmp_path)
        with pytest.raises(LayoutError, match="does not exist"):
            detect_layout(tmp_path / "nope")

    def test_layout_override_is_checked(self, tmp_path: Path) -> None:
        """Naming a layout the files do not fit names the first misfit."""
        _write(tmp_path, ["0001_init.sql"])
        with pytest.raises(LayoutError, match="does not fit the flyway layout"):
            load_migrations(tmp_path, layout="flyway")


class TestOrderingAndDuplicates:
    def test_numeric_order_and_pairs(self, tmp_path: Path) -> None:
        """Versions 2 < 10 (not lexical); each up is paired with its down."""
        _write(tmp_path, ["10_ten.up.sql", "10_ten.down.sql", "2_two.up.sql", "0003_three.up.sql"])
        found = load_migrations(tmp_path)
        assert [m.version for m in found.migrations] == ["2", "0003", "10"]
        assert found.migrations[2].down is not None and found.migrations[0].down is None

    def test_flyway_repeatables_come_last(self, tmp_path: Path) -> None:
        _write(tmp_path, ["R__b.sql", "V2__x.sql", "R__a.sql", "V1.1__y.sql"])
        found = load_migrations(tmp_path)
        assert [m.version for m in found.migrations] == ["1.1", "2", "a", "b"]
        assert [m.repeatable for m in found.migrations] == [False, False, True, True]

    @pytest.mark.parametrize("names", [
        ["0003_a.up.sql", "3_b.up.sql"],
        ["V1__a.sql", "V1.0__b.sql"],
        ["0003_a.sql", "03_b.sql"],
        ["0003_a/up.sql", "3_b/up.sql"],
    ])
    def test_duplicate_versions_name_both_files(self, tmp_path: Path, names: list[str]) -> None:
        """Two files claiming one version: an error naming both."""
        _write(tmp_path, names)
        with pytest.raises(LayoutError, match="duplicate version") as info:
            load_migrations(tmp_path)
        for name in names:
            assert name in str(info.value)

    def test_step_directory_without_up_is_refused(self, tmp_path: Path) -> None:
        _write(tmp_path, ["0001_a/up.sql", "0002_b/down.sql"])
        with pytest.raises(LayoutError, match=r"step directory 0002_b/ has no up\.sql"):
            load_migrations(tmp_path)

    def test_down_without_up_is_refused(self, tmp_path: Path) -> None:
        _write(tmp_path, ["0001_a.up.sql", "0002_b.down.sql"])
        with pytest.raises(LayoutError, match=r"0002_b.down.sql undoes version 2"):
            load_migrations(tmp_path)

    @HYPOTHESIS
    @given(versions=st.sets(st.integers(0, 99_999), min_size=1, max_size=25),
           layout=st.sampled_from([Layout.UPDOWN, Layout.DOTTED, Layout.NUMBERED, Layout.FLYWAY,
                                   Layout.DIRECTORY]),
           seed=st.integers(0, 2**32 - 1))
    def test_order_is_the_tools_order_whatever_the_creation_order(
            self, tmp_path_factory: pytest.TempPathFactory, versions: set[int], layout: Layout,
            seed: int) -> None:
        """Files created in any order load in ascending version order, one migration per version."""
        directory = tmp_path_factory.mktemp("layout")
        ordered = sorted(versions)
        shuffled = list(ordered)
        random.Random(seed).shuffle(shuffled)
        for v in shuffled:
            name = {Layout.UPDOWN: f"{v:06d}_m{v}.up.sql", Layout.DOTTED: f"V{v:04d}.M{v}.up.sql",
                    Layout.NUMBERED: f"{v:04d}_m{v}.sql", Layout.FLYWAY: f"V{v}__m{v}.sql",
                    Layout.DIRECTORY: f"{v:04d}_m{v}/up.sql"}[layout]
            _write(directory, [name])
        found = load_migrations(directory)
        assert found.layout is layout
        assert [version_key(m.version) for m in found.migrations] == [(v,) if v else (0,) for v in ordered]


class TestStatements:
    def test_lines_comments_dollar_quotes_and_atomic_bodies(self) -> None:
        """Each statement starts on its own first line; semicolons inside bodies do not split."""
        text = (
            "-- header\n"
            "CREATE TABLE a (id int);\n"
            "\n"
            "/* block */ CREATE FUNCTION f() RETURNS int LANGUAGE sql\n"
            "BEGIN ATOMIC SELECT 1; SELECT 2; END;\n"
            "DO $$ BEGIN PERFORM 1; END $$;\n"
            "INSERT INTO a VALUES (1)"
        )
        statements = list(split_statements(text))
        assert [s.line for s in statements] == [2, 4, 6, 7]
        assert statements[1].text.endswith("END")
        assert not any(s.needs_autocommit for s in statements)

    def test_transaction_control_and_concurrently_need_autocommit(self) -> None:
        """Files with BEGIN/COMMIT or CONCURRENTLY manage their own transactions."""
        statements = list(split_statements(
            "BEGIN;\nCREATE INDEX CONCURRENTLY i ON t (a);\nCOMMIT;\nCREATE TABLE x (a int);"))
        assert [s.needs_autocommit for s in statements] == [True, True, True, False]

    def test_empty_and_comment_only_files_are_empty(self, tmp_path: Path) -> None:
        """Empty migrations are valid no-op steps."""
        (tmp_path / "a.sql").write_bytes(b"")
        (tmp_path / "b.sql").write_text("-- nothing for PostgreSQL\n;\n")
        assert read_script(tmp_path / "a.sql").empty
        assert read_script(tmp_path / "b.sql").empty

    def test_unparseable_file_is_sent_whole(self, tmp_path: Path) -> None:
        """pglast refusing a file is not a verdict: the server will judge it."""
        (tmp_path / "bad.sql").write_text("CREATE TABLE a (id int);\nSELEC 1;\n")
        script = read_script(tmp_path / "bad.sql")
        assert script.statements is None and script.parse_error

    def test_non_utf8_file_is_unreadable(self, tmp_path: Path) -> None:
        (tmp_path / "x.sql").write_bytes(b"SELECT '\xff';")
        with pytest.raises(LayoutError, match="not UTF-8"):
            read_script(tmp_path / "x.sql")

    @HYPOTHESIS
    @given(count=st.integers(1, 8), gaps=st.lists(st.integers(0, 3), min_size=8, max_size=8),
           comments=st.lists(st.booleans(), min_size=8, max_size=8))
    def test_statement_lines_follow_blank_lines_and_comments(self, count: int, gaps: list[int],
                                                             comments: list[bool]) -> None:
        """Whatever blank lines and comments sit between them, each statement's line is right."""
        lines: list[str] = []
        expected = []
        for i in range(count):
            lines += [""] * gaps[i]
            if comments[i]:
                lines.append(f"-- step {i}; not a statement")
            expected.append(len(lines) + 1)
            lines.append(f"CREATE TABLE t{i} (id int, note text DEFAULT ';');")
        found = list(split_statements("\n".join(lines)))
        assert [s.line for s in found] == expected


class TestFlywayChecksum:
    def test_line_endings_and_bom_do_not_matter(self) -> None:
        """Flyway reads lines: CRLF, CR, LF and a UTF-8 BOM give the same checksum."""
        lf = b"CREATE TABLE a (id int);\nSELECT 1;\n"
        assert flyway_checksum(lf) == flyway_checksum(lf.replace(b"\n", b"\r\n"))
        assert flyway_checksum(lf) == flyway_checksum(b"\xef\xbb\xbf" + lf)
        assert flyway_checksum(lf) != flyway_checksum(lf.replace(b"a", b"b"))

    @HYPOTHESIS
    @given(content=st.binary(max_size=300))
    def test_checksum_is_a_signed_32_bit_int(self, content: bytes) -> None:
        assert -(2**31) <= flyway_checksum(content) < 2**31


def _local(versions: list[int], *, edited: int | None = None) -> list[LocalMigration]:
    return [LocalMigration(f"{v:04d}", f"m{v}", f"{v:04d}_m{v}.sql",
                           f"-- {v}{' edited' if v == edited else ''}\n".encode()) for v in versions]


class TestHistoryComparison:
    def _history(self, versions: list[int], kind: HistoryKind = HistoryKind.DRILLBOOK,
                 failed: int | None = None) -> History:
        rows = tuple(AppliedMigration(str(v), f"m{v}", LocalMigration(
            "1", "", "", f"-- {v}\n".encode()).checksum(kind), success=v != failed) for v in versions)
        return History(kind, "drillbook_schema_version", rows)

    def test_clean_history_with_pending(self) -> None:
        """Applied 1-3, files 1-5: 4 and 5 are pending, which passes when pending is allowed."""
        report = compare_history(self._history([1, 2, 3]), _local([1, 2, 3, 4, 5]))
        assert report.applied == ["1", "2", "3"] and report.pending == ["4", "5"]
        assert validate_history(self._history([1, 2, 3]), _local([1, 2, 3, 4, 5])).outcome is Outcome.PASSED
        refused = validate_history(self._history([1, 2, 3]), _local([1, 2, 3, 4]), allow_pending=False)
        assert refused.outcome is Outcome.FAILED and "pending: 4" in refused.message

    @pytest.mark.parametrize(("applied", "files", "edited", "category", "version"), [
        ([1, 2, 3], [1, 3], None, "missing", "2"),
        ([1, 3], [1, 2, 3], None, "out_of_order", "2"),
        ([1, 2], [1, 2], 2, "edited", "2"),
    ])
    def test_each_problem_is_caught(self, applied: list[int], files: list[int], edited: int | None,
                                    category: str, version: str) -> None:
        """Missing, out-of-order and applied-then-edited migrations each fail the validation."""
        history = self._history(applied)
        report = compare_history(history, _local(files, edited=edited))
        assert getattr(report, category) == [version]
        verdict = validate_history(history, _local(files, edited=edited))
        assert verdict.outcome is Outcome.FAILED
        assert category.replace("_", " ") in verdict.message

    def test_flyway_failure_row_fails(self) -> None:
        history = self._history([1, 2], kind=HistoryKind.FLYWAY, failed=2)
        verdict = validate_history(history, _local([1, 2]))
        assert verdict.outcome is Outcome.FAILED and "failed: 2" in verdict.message

    def test_golang_migrate_current_version_and_dirty(self) -> None:
        """golang-migrate keeps one row: everything up to it is applied; dirty means failed."""
        clean = History(HistoryKind.GOLANG_MIGRATE, "schema_migrations",
                        (AppliedMigration("3", success=True),), current_only=True)
        report = compare_history(clean, _local([1, 2, 3, 4]))
        assert report.applied == ["1", "2", "3"] and report.pending == ["4"]
        dirty = History(HistoryKind.GOLANG_MIGRATE, "schema_migrations",
                        (AppliedMigration("3", success=False),), current_only=True)
        assert validate_history(dirty, _local([1, 2, 3])).outcome is Outcome.FAILED


class TestHistoryFromOutside:
    @HYPOTHESIS
    @given(rows=st.lists(st.tuples(st.text(max_size=12), st.one_of(st.none(), st.text(max_size=70)),
                                   st.booleans()), max_size=12),
           kind=st.sampled_from(list(HistoryKind)))
    def test_any_history_rows_give_a_verdict(self, rows: list[tuple[str, str | None, bool]],
                                             kind: HistoryKind) -> None:
        """Whatever a subject's history table holds, validation returns a verdict naming the rows."""
        history = History(kind, "t", tuple(AppliedMigration(v, "", c, ok) for v, c, ok in rows),
                          current_only=kind is HistoryKind.GOLANG_MIGRATE)
        verdict = validate_history(history, _local([1, 2, 3]))
        assert verdict.outcome in (Outcome.PASSED, Outcome.FAILED)
        for version, _, _ in rows:
            if not any(ch.isdigit() for ch in version):
                assert verdict.outcome is Outcome.FAILED


class TestSquawkOutput:
    def test_findings_are_one_based_and_deduplicated(self) -> None:
        output = ('[{"file":"/m/0001_a.sql","line":0,"column":0,"level":"Warning","message":"m",'
                  '"help":null,"rule_name":"ban-drop-table","column_end":1,"line_end":0},'
                  '{"file":"/m/0001_a.sql","line":4,"column":6,"level":"Error","message":"s",'
                  '"help":null,"rule_name":"syntax-error","column_end":6,"line_end":4},'
                  '{"file":"/m/0001_a.sql","line":4,"column":6,"level":"Error","message":"s",'
                  '"help":null,"rule_name":"syntax-error","column_end":6,"line_end":4}]')
        findings = parse_squawk_json(output, base=Path("/m"))
        assert [(f.file, f.line, f.column, f.rule) for f in findings] == [
            ("0001_a.sql", 1, 1, "ban-drop-table"), ("0001_a.sql", 5, 7, "syntax-error")]

    @HYPOTHESIS
    @given(text=st.text(max_size=200))
    def test_garbage_output_is_linter_unavailable(self, text: str) -> None:
        """Anything but a JSON list of findings is "could not check", never a pass."""
        assume(text.strip() not in ("", "[]"))
        try:
            parse_squawk_json(text)
        except LinterUnavailable:
            return

    def test_the_feature_decides_which_rules_fail(self) -> None:
        findings = [Finding("a.sql", 3, 1, "ban-drop-column", "Warning", "drop"),
                    Finding("a.sql", 5, 1, "prefer-bigint-over-int", "Warning", "int")]
        blocked = lint_verdict(findings, failing_rules=DEFAULT_BLOCKING_RULES, files=1)
        assert blocked.outcome is Outcome.FAILED and "a.sql:3:1 ban-drop-column" in blocked.message
        advisory = lint_verdict(findings[1:], failing_rules=DEFAULT_BLOCKING_RULES, files=1)
        assert advisory.outcome is Outcome.PASSED and "1 advisory" in advisory.message
        assert advisory.evidence["advisory"][0]["line"] == 5

    def test_syntax_errors_always_block(self) -> None:
        finding = Finding("a.sql", 2, 3, "syntax-error", "Error", "expected command")
        assert lint_verdict([finding], failing_rules=set(), files=1).outcome is Outcome.FAILED


class TestSchemaDiff:
    def test_only_one_side_and_changed_attributes(self) -> None:
        left = SchemaSnapshot({"table public.a": {"kind": "r"},
                               "column public.a.x": {"table": "public.a", "type": "integer"}})
        right = SchemaSnapshot({"column public.a.x": {"table": "public.a", "type": "bigint"},
                                "index public.a_x": {"table": "public.a", "definition": "..."}})
        diff = diff_schemas(left, right, left_name="replay", right_name="production")
        assert diff.lines() == [
            "only in replay: table public.a",
            "only in production: index public.a_x",
            "column public.a.x: type is 'integer' in replay, 'bigint' in production",
        ]
        verdict = schemas_match(left, right, check_id="x", expected_name="replay", actual_name="production")
        assert verdict.outcome is Outcome.FAILED and "3 schema differences" in verdict.message

    def test_ignored_tables_take_their_objects_along(self) -> None:
        snap = SchemaSnapshot({"table public.hist": {}, "column public.hist.id": {"table": "public.hist"},
                               "sequence public.hist_id_seq": {"table": "public.hist"},
                               "table public.keep": {}})
        assert list(snap.without_tables(["hist"]).objects) == ["table public.keep"]

    def test_a_tools_own_schema_goes_with_its_table_when_emptied(self) -> None:
        """Atlas keeps its history in a schema of its own: ignoring the table ignores that schema,
        but never a schema that still holds other objects."""
        snap = SchemaSnapshot({"schema atlas": {}, "table atlas.revisions": {},
                               "column atlas.revisions.version": {"table": "atlas.revisions"},
                               "schema public": {}, "table public.hist": {}, "table public.keep": {}})
        assert list(snap.without_tables(["atlas.revisions", "public.hist"]).objects) == [
            "schema public", "table public.keep"]
        assert snap.digest() == SchemaSnapshot(dict(reversed(list(snap.objects.items())))).digest()
