"""Flyway versions written with underscores: V1_10__x.sql is 1.10, after 1.9 (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.migration_history import version_key
from drills.migrations import LayoutError, load_migrations

HYPOTHESIS = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def _files(directory: Path, names: list[str]) -> Path:
    for name in names:
        (directory / name).write_text("SELECT 1;\n", encoding="utf-8")
    return directory


class TestFlywayUnderscoreVersions:
    def test_one_ten_after_one_nine(self, tmp_path: Path) -> None:
        """V1_10 is 1.10: it runs after V1_9 and V1_2, not between 1.1 and 1.2 as text would sort."""
        _files(tmp_path, ["V1_10__ten.sql", "V1_9__nine.sql", "V1_2__two.sql", "V2__two.sql"])
        loaded = load_migrations(tmp_path)
        assert [m.version for m in loaded.migrations] == ["1_2", "1_9", "1_10", "2"]

    def test_underscore_and_dot_are_one_version(self, tmp_path: Path) -> None:
        """V1_1__a.sql and V1.1__b.sql claim the same version: an error naming both."""
        _files(tmp_path, ["V1_1__a.sql", "V1.1__b.sql"])
        with pytest.raises(LayoutError, match=r"duplicate version 1.1: .*V1.1__b.sql.*V1_1__a.sql|"
                                              r"duplicate version 1.1: .*V1_1__a.sql.*V1.1__b.sql"):
            load_migrations(tmp_path)

    def test_description_keeps_its_underscores_apart(self, tmp_path: Path) -> None:
        """The version ends at the double underscore: V1_10__add_user_table is 1.10 'add user table'."""
        _files(tmp_path, ["V1_10__add_user_table.sql"])
        migration = load_migrations(tmp_path).migrations[0]
        assert version_key(migration.version) == (1, 10)
        assert migration.description == "add user table"

    @HYPOTHESIS
    @given(parts=st.lists(st.lists(st.integers(0, 120), min_size=1, max_size=3), min_size=1,
                          max_size=6, unique_by=lambda p: version_key(".".join(map(str, p)))))
    def test_order_is_numeric_whatever_the_separator(self, tmp_path_factory: pytest.TempPathFactory,
                                                     parts: list[list[int]]) -> None:
        """Any versions written with `_` load in numeric order, as Flyway orders them."""
        directory = tmp_path_factory.mktemp("flyway")
        _files(directory, [f"V{'_'.join(map(str, p))}__m{i}.sql" for i, p in enumerate(parts)])
        loaded = [version_key(m.version) for m in load_migrations(directory).migrations]
        assert loaded == sorted(loaded)
        assert len(loaded) == len(parts)
