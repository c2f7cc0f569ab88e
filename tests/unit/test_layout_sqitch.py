"""The sqitch layout: plans read as sqitch reads them, checked against what sqitch itself recorded.

The flipr projects in tests/support/plan_projects.py were made and deployed by sqitch 1.3.1;
the change IDs and script hashes below are the ones it wrote to ``sqitch.changes``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.migration_history.model import LocalMigration
from checks.migration_history.tables import sqitch as sqitch_table
from drills.migrations import LayoutError, MigrationSet
from drills.migrations.layouts import sqitch
from tests.support.plan_projects import FLIPR, FLIPR_EXT, SQITCH_CHANGES, write

HEADER = "%syntax-version=1.0.0\n%project=demo\n\n"
WHO = "2024-01-02T03:04:05Z Ann <ann@example.com>"


def _project(tmp_path: Path, plan: str, scripts: dict[str, str] | None = None) -> Path:
    root = tmp_path / "demo"
    files = {"sqitch.plan": plan, **(scripts or {})}
    return write(files, root).resolve()


def _deploys(*names: str) -> dict[str, str]:
    return {f"deploy/{n}.sql": f"SELECT '{n}';\n" for n in names}


@pytest.fixture
def flipr(tmp_path: Path) -> MigrationSet:
    return sqitch.load(write(FLIPR, tmp_path / "flipr").resolve())


class TestTheRealProject:
    def test_changes_come_in_plan_order_with_the_reworked_instance_first(self, flipr: MigrationSet) -> None:
        """Versions are plan positions; the older instance of a reworked change is name@tag."""
        assert [(m.version, m.description) for m in flipr.migrations] == [
            ("1", "appschema"), ("2", "users"), ("3", "insert_user@v1.0.0-dev1"),
            ("4", "insert_user"), ("5", "functions/count_users")]

    def test_reworked_scripts_are_the_tagged_files(self, flipr: MigrationSet) -> None:
        """The older instance deploys, reverts and verifies with the @tag files sqitch rework made."""
        older = flipr.migrations[2]
        assert older.up.path.name == "insert_user@v1.0.0-dev1.sql"
        assert older.down is not None and older.down.path.parent.name == "revert"
        assert older.verify is not None and older.verify.path.name == "insert_user@v1.0.0-dev1.sql"
        assert flipr.migrations[3].up.path.name == "insert_user.sql"

    def test_a_change_in_a_subfolder_keeps_its_path(self, flipr: MigrationSet) -> None:
        """functions/count_users lives in deploy/functions/count_users.sql."""
        up = flipr.migrations[4].up.path
        assert up.parts[-3:] == ("deploy", "functions", "count_users.sql")

    def test_history_ids_are_the_change_ids_sqitch_recorded(self, flipr: MigrationSet) -> None:
        """Each change's ID (SHA-1 of its plan entry) equals sqitch.changes.change_id."""
        recorded = [row[0] for row in SQITCH_CHANGES if row[3] == "flipr"]
        assert [m.history_id for m in flipr.migrations] == recorded

    def test_script_hashes_are_what_sqitch_recorded(self, flipr: MigrationSet) -> None:
        """script_hash is the SHA-1 of the deploy file, the reworked one's @tag file included."""
        recorded = [row[1] for row in SQITCH_CHANGES if row[3] == "flipr"]
        assert [sqitch_table.checksum(_local(m)) for m in flipr.migrations] == recorded

    def test_scripts_run_as_psql_runs_them(self, flipr: MigrationSet) -> None:
        """Deploy and revert scripts are not wrapped in a transaction (they hold their own BEGIN)."""
        first = flipr.migrations[0]
        assert first.up.transactional is False and first.up.text is None
        assert first.down is not None and first.down.transactional is False

    def test_the_other_project_s_ids_and_requirements(self, tmp_path: Path, flipr: MigrationSet) -> None:
        """Cross-project requirements enter the ID as proj:change and are met by the earlier folder."""
        ext = sqitch.load(write(FLIPR_EXT, tmp_path / "ext").resolve())
        assert [m.history_id for m in ext.migrations] == [r[0] for r in SQITCH_CHANGES if r[3] == "flipr_ext"]
        unmet = sqitch.unmet_requirements(ext, [])
        assert unmet == [
            "sqitch.plan:4: roles requires flipr:users: project flipr was not given before flipr_ext",
            "sqitch.plan:5: grants requires flipr:appschema@v1.0.0: project flipr was not given "
            "before flipr_ext"]
        assert sqitch.unmet_requirements(ext, [flipr]) == []
        assert sqitch.requirements(ext.directory) == ["flipr:users", "flipr:appschema@v1.0.0"]

    def test_detected_by_its_plan(self, tmp_path: Path) -> None:
        """A folder holding sqitch.plan is a sqitch project; one without is not."""
        from drills.migrations.layouts.common import Listing

        root = write(FLIPR, tmp_path / "flipr").resolve()
        assert sqitch.detect(Listing(root, tuple(sorted(p for p in root.iterdir() if p.is_file())),
                                     tuple(sorted(p for p in root.iterdir() if p.is_dir()))))
        assert not sqitch.detect(Listing(root / "deploy", (root / "deploy" / "users.sql",), ()))


class TestChecksumsAndIds:
    def test_script_hash_of_sqitch_s_own_test_value(self) -> None:
        """sqitch's t/change.t: SHA-1 of "Foo\\nBar\\nBøz\\n亜唖娃阿" is d48866b8…."""
        content = "Foo\nBar\nBøz\n亜唖娃阿".encode()
        assert sqitch_table.checksum(LocalMigration("1", "foo", "deploy/foo.sql", content)) == \
            "d48866b846300912570f643c99b2ceec4ba29f5c"

    def test_a_note_with_escapes_is_unescaped_before_hashing(self) -> None:
        """flipr_ext's roles note holds \\n and \\\\; its recorded ID only matches unescaped."""
        plan = sqitch.parse_plan(FLIPR_EXT["sqitch.plan"], Path("sqitch.plan"))
        assert plan.changes[0].note == "Roles for flipr users.\nSecond line with a \\ backslash"
        assert plan.changes[0].id == "48105a3eed59aa0b1887d7edd18f96610e3d6834"

    def test_uri_canonical_form(self) -> None:
        """As Perl's URI->canonical: lower-case scheme and host, no default port, / path."""
        assert sqitch.canonical_uri("HTTPS://Example.COM:443") == "https://example.com/"
        assert sqitch.canonical_uri("http://h.org:8080/a%7eb%2f") == "http://h.org:8080/a~b%2F"
        assert sqitch.canonical_uri("urn:Foo") == "urn:Foo"

    def test_the_legacy_script_hash_is_not_compared(self) -> None:
        """A registry upgraded from before 1.0 holds the change ID as script_hash: no checksum."""
        assert sqitch_table.recognises("sqitch.changes", {"change_id", "script_hash", "change",
                                                          "project", "committed_at", "note"})
        assert not sqitch_table.recognises("public.changes", {"change_id", "change"})


class TestBadPlans:
    def test_a_missing_deploy_script_names_the_plan_line(self, tmp_path: Path) -> None:
        """The plan names a change whose deploy script does not exist."""
        root = _project(tmp_path, HEADER + f"a {WHO}\nb [a] {WHO}\n", _deploys("a"))
        with pytest.raises(LayoutError,
                           match=r"sqitch\.plan:5: change \"b\" has no deploy script deploy/b\.sql"):
            sqitch.load(root)

    def test_a_malformed_line_is_named(self, tmp_path: Path) -> None:
        """A change without timestamp and planner is a syntax error on its line."""
        root = _project(tmp_path, HEADER + f"a {WHO}\nb\n", _deploys("a", "b"))
        with pytest.raises(LayoutError, match=r"sqitch\.plan:5: missing timestamp and planner") as exc:
            sqitch.load(root)
        assert exc.value.context["line"] == 5 and "sqitch plan" in exc.value.hint

    def test_a_requirement_planned_later_is_refused(self, tmp_path: Path) -> None:
        """requires names a change that comes after it in the plan."""
        root = _project(tmp_path, HEADER + f"a [b] {WHO}\nb {WHO}\n", _deploys("a", "b"))
        with pytest.raises(LayoutError, match=r":4: change \"a\" is planned before the change it requires"):
            sqitch.load(root)

    def test_an_unknown_requirement_is_refused(self, tmp_path: Path) -> None:
        """requires names a change the plan does not have."""
        root = _project(tmp_path, HEADER + f"a [nope] {WHO}\n", _deploys("a"))
        with pytest.raises(LayoutError, match=r":4: change \"a\" requires \"nope\", which is not planned"):
            sqitch.load(root)

    def test_a_duplicate_without_a_tag_between(self, tmp_path: Path) -> None:
        """Reworking needs a tag between the two instances."""
        root = _project(tmp_path, HEADER + f"a {WHO}\na {WHO}\n", _deploys("a"))
        with pytest.raises(LayoutError, match=r":5: change \"a\" duplicates earlier declaration on line 4"):
            sqitch.load(root)

    def test_a_conflict_with_an_earlier_change(self, tmp_path: Path) -> None:
        """sqitch refuses to deploy a change conflicting with one deployed before it."""
        root = _project(tmp_path, HEADER + f"a {WHO}\nb [!a] {WHO}\n", _deploys("a", "b"))
        with pytest.raises(LayoutError, match=r":5: change \"b\" conflicts with \"a\""):
            sqitch.load(root)

    def test_a_reworked_change_without_its_tagged_script(self, tmp_path: Path) -> None:
        """After a rework the older scripts must exist as name@tag.sql."""
        plan = HEADER + f"a {WHO}\n@v1 {WHO}\na [a@v1] {WHO}\n"
        root = _project(tmp_path, plan, _deploys("a"))
        with pytest.raises(LayoutError, match=r":4: change \"a\" has no deploy script deploy/a@v1\.sql"):
            sqitch.load(root)

    def test_tags_and_pragmas(self, tmp_path: Path) -> None:
        """A tag before any change, a missing %project and a pragma after changes are errors."""
        with pytest.raises(LayoutError, match=r":4: tag \"v1\" declared without a preceding change"):
            sqitch.parse_plan(HEADER + f"@v1 {WHO}\n", Path("sqitch.plan"))
        with pytest.raises(LayoutError, match="missing %project pragma"):
            sqitch.parse_plan("%syntax-version=1.0.0\n\n", Path("sqitch.plan"))
        with pytest.raises(LayoutError, match=r":2: invalid pragma"):
            sqitch.parse_plan(f"%project=x\na {WHO}\n", Path("sqitch.plan"))

    def test_conf_paths_may_not_leave_the_folder(self, tmp_path: Path) -> None:
        """sqitch.conf's top_dir is honoured, but not outside the folder given."""
        root = _project(tmp_path, "", {"sqitch.conf": "[core]\n\ttop_dir = ../elsewhere\n"})
        with pytest.raises(LayoutError, match=r"top_dir = \.\./elsewhere points outside"):
            sqitch.load(root)

    def test_another_engine_is_refused(self, tmp_path: Path) -> None:
        """A mysql project's scripts are not PostgreSQL."""
        root = _project(tmp_path, HEADER, {"sqitch.conf": "[core]\n\tengine = mysql\n"})
        with pytest.raises(LayoutError, match=r"core\.engine is 'mysql'"):
            sqitch.load(root)


class TestConf:
    def test_top_dir_and_script_dirs_are_honoured(self, tmp_path: Path) -> None:
        """[core] top_dir = db and [engine "pg"] deploy_dir = db/up move plan and scripts."""
        root = write({
            "sqitch.conf": '[core]\n\tengine = pg\n\ttop_dir = db\n[engine "pg"]\n\tdeploy_dir = db/up\n',
            "db/sqitch.plan": HEADER + f"a {WHO}\n",
            "db/up/a.sql": "SELECT 1;\n", "db/revert/a.sql": "SELECT 2;\n",
        }, tmp_path / "p").resolve()
        loaded = sqitch.load(root)
        assert loaded.migrations[0].up.path == root / "db" / "up" / "a.sql"
        assert loaded.migrations[0].down is not None
        assert loaded.migrations[0].down.path == root / "db" / "revert" / "a.sql"


def _local(migration: object) -> LocalMigration:
    from drills.migrations import Migration

    assert isinstance(migration, Migration)
    return LocalMigration(migration.version, migration.description, str(migration.up.path),
                          migration.hashed or migration.up.path.read_bytes(), migration.history_id)


_NAMES = st.sampled_from(["a", "b", "users", "x/y", "v1", "HEAD", "1a", "é", "-x", "a@b", "a:b"])
_DEPS = st.lists(st.sampled_from(["a", "b", "!a", "other:a", "a@v1", "@v1", "b@v2", "!!x", "0" * 40]),
                 max_size=3)
_LINES = st.one_of(
    st.text(max_size=40),
    st.builds(lambda op, n, d, ts, note: f"{op}{n}{' [' + ' '.join(d) + ']' if d else ''} {ts} "
                                         f"Ann <a@x>{note}",
              st.sampled_from(["", "+", "-", "@", " "]), _NAMES, _DEPS,
              st.sampled_from(["2024-01-02T03:04:05Z", "2024-13-02T03:04:05Z", ""]),
              st.sampled_from(["", " # n", " #", " # a\\nb"])),
    st.sampled_from(["", "# comment", "%project=demo", "%uri=https://x.org", "%x", "#"]),
)


class TestArbitraryPlans:
    @settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(_LINES, max_size=12))
    def test_any_plan_text_is_a_plan_or_a_layout_error(self, lines: list[str]) -> None:
        """Arbitrary plan text never raises anything but LayoutError."""
        text = HEADER + "\n".join(lines) if lines and lines[0] != "raw" else "\n".join(lines)
        for candidate in (text, "\n".join(lines)):
            try:
                plan = sqitch.parse_plan(candidate, Path("sqitch.plan"))
            except LayoutError as exc:
                assert "sqitch.plan" in str(exc)
                continue
            assert all(len(c.id) == 40 for c in plan.changes)

    @settings(max_examples=150, deadline=None)
    @given(st.lists(_LINES, max_size=8), st.booleans())
    def test_any_project_loads_or_is_a_layout_error(self, lines: list[str], with_scripts: bool) -> None:
        """load() on arbitrary plans (scripts present or not) gives a set or a LayoutError."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            scripts = _deploys("a", "b", "users") if with_scripts else {}
            root = write({"sqitch.plan": HEADER + "\n".join(lines) + "\n", **scripts}, Path(tmp)).resolve()
            try:
                loaded = sqitch.load(root)
            except LayoutError:
                return
            count = len(loaded.migrations)
            assert [m.version for m in loaded.migrations] == [str(i) for i in range(1, count + 1)]
            assert all(m.up.path.is_file() and m.history_id for m in loaded.migrations)
