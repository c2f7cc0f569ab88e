"""Diesel layout: whole-timestamp versions, the initial setup step, metadata.toml transactions."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drills.migrations import LayoutError
from drills.migrations.layouts import diesel
from drills.migrations.layouts.common import Listing
from drills.migrations.layouts.diesel import run_in_transaction, version_from_name

HYPOTHESIS = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def _step(directory: Path, name: str, up: str = "SELECT 1;\n", down: str | None = "SELECT 1;\n",
          metadata: str | None = None) -> Path:
    step = directory / name
    step.mkdir()
    (step / "up.sql").write_text(up, encoding="utf-8")
    if down is not None:
        (step / "down.sql").write_text(down, encoding="utf-8")
    if metadata is not None:
        (step / "metadata.toml").write_text(metadata, encoding="utf-8")
    return step


class TestVersion:
    def test_whole_timestamp_not_the_year(self) -> None:
        """2022-04-26-153628_name is version 20220426153628 (never 2022)."""
        assert version_from_name("2022-04-26-153628_create_users") == "20220426153628"
        assert version_from_name("00000000000000_diesel_initial_setup") == "00000000000000"

    @HYPOTHESIS
    @given(y=st.integers(1970, 2999), mo=st.integers(1, 12), d=st.integers(1, 28),
           hms=st.integers(0, 235959), name=st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True))
    def test_generated_names_give_fourteen_digits(self, y: int, mo: int, d: int, hms: int,
                                                  name: str) -> None:
        """Every name `diesel migration generate` writes gives its 14-digit timestamp."""
        version = version_from_name(f"{y:04d}-{mo:02d}-{d:02d}-{hms:06d}_{name}")
        assert version == f"{y:04d}{mo:02d}{d:02d}{hms:06d}"


class TestMetadata:
    @pytest.mark.parametrize(("text", "expected"), [
        (None, True),                                   # no metadata.toml
        ("run_in_transaction = false\n", False),
        ("run_in_transaction = true\n", True),
        ("other = 1\n", False),                         # serde default for a missing bool key
        ("this is not toml", True),                     # unparsable: Diesel's unwrap_or_default
    ])
    def test_as_diesel_reads_it(self, text: str | None, expected: bool) -> None:
        """run_in_transaction as diesel_migrations' TomlMetadata decides it."""
        assert run_in_transaction(text) is expected


class TestLoad:
    def test_realistic_set(self, tmp_path: Path) -> None:
        """The initial setup step comes first; years no longer collide; down.sql pairs up."""
        _step(tmp_path, "00000000000000_diesel_initial_setup")
        _step(tmp_path, "2022-04-26-153628_create_users")
        _step(tmp_path, "2022-05-01-090000_create_posts", down=None)
        loaded = diesel.load(tmp_path)
        assert [m.version for m in loaded.migrations] == ["00000000000000", "20220426153628",
                                                          "20220501090000"]
        assert [m.description for m in loaded.migrations] == ["diesel initial setup", "create users",
                                                              "create posts"]
        assert loaded.migrations[1].down is not None and loaded.migrations[2].down is None
        assert loaded.layout == "diesel"

    def test_metadata_turns_transaction_off(self, tmp_path: Path) -> None:
        """metadata.toml run_in_transaction = false: both directions run outside a transaction."""
        _step(tmp_path, "2022-04-26-153628_index", metadata="run_in_transaction = false\n")
        migration = diesel.load(tmp_path).migrations[0]
        assert migration.up.transactional is False
        assert migration.down is not None and migration.down.transactional is False

    def test_directory_without_up_is_named(self, tmp_path: Path) -> None:
        """A step directory without up.sql: Diesel refuses the folder, so does drillbook."""
        _step(tmp_path, "2022-04-26-153628_a")
        (tmp_path / "2022-04-27-000000_b").mkdir()
        with pytest.raises(LayoutError, match=r"2022-04-27-000000_b/ has no up.sql"):
            diesel.load(tmp_path)

    def test_empty_up_is_refused(self, tmp_path: Path) -> None:
        """Diesel refuses an empty migration: named."""
        _step(tmp_path, "2022-04-26-153628_a", up="")
        with pytest.raises(LayoutError, match=r"2022-04-26-153628_a/up.sql is empty"):
            diesel.load(tmp_path)

    def test_same_timestamp_twice_names_both(self, tmp_path: Path) -> None:
        """Two directories with one timestamp are a duplicate version naming both."""
        _step(tmp_path, "2022-04-26-153628_a")
        _step(tmp_path, "20220426153628_b")
        with pytest.raises(LayoutError, match=r"duplicate version 20220426153628: "
                                              r"2022-04-26-153628_a/ and 20220426153628_b/"):
            diesel.load(tmp_path)

    def test_hidden_directories_and_files_ignored(self, tmp_path: Path) -> None:
        """`.keep`-style entries and README files are not migrations (as in Diesel)."""
        _step(tmp_path, "2022-04-26-153628_a")
        (tmp_path / ".hidden").mkdir()
        (tmp_path / "README.md").write_text("x\n", encoding="utf-8")
        assert len(diesel.load(tmp_path).migrations) == 1


class TestDetect:
    def test_diesel_names(self, tmp_path: Path) -> None:
        """Dashed timestamps or the initial setup mark Diesel; plain numbered dirs do not."""
        _step(tmp_path, "0001_plain")
        assert not diesel.detect(Listing.of(tmp_path))
        _step(tmp_path, "2022-04-26-153628_a")
        assert diesel.detect(Listing.of(tmp_path))
