"""The prelude (the team's init script, run first) and several folders replayed in order (issue 12).

Real PostgreSQL: each test replays into a fresh, empty scratch database of a throwaway cluster
through ``drillbook verify migrations … --scratch DSN``, and reads the verdicts back as JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drillbook.cli import main
from drills.migrations import LayoutError, load_folders
from drills.targets import PostgresTarget

pytestmark = pytest.mark.integration

Fresh = Callable[[str], PostgresTarget]






def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    code = main(["verify", "migrations", *args, "--json"])
    data = json.loads(capsys.readouterr().out)
    return code, {v["id"]: v for v in data["verdicts"]}


NEEDS_SCHEMA = {
    "V1__widgets.sql": "CREATE TABLE widgets (id bigint PRIMARY KEY);\n",
    "V2__parts.sql": "CREATE TABLE parts (widget bigint REFERENCES widgets);\n",
}
PRELUDE = ("-- what the team's init script does in production\n"
           "CREATE SCHEMA app;\n"
           "CREATE EXTENSION IF NOT EXISTS pg_trgm;\n"
           "SET search_path TO app, public;\n")


class TestPrelude:
    def test_migrations_needing_the_init_script_fail_without_it_and_pass_with_it(
            self, tmp_path: Path, fresh: Fresh, capsys: pytest.CaptureFixture[str]) -> None:
        """The steps land in the prelude's schema; the prelude is a verdict with its hash as evidence."""
        folder = _write(tmp_path / "db", {
            **NEEDS_SCHEMA, "V3__check.sql": "SELECT 'app.widgets'::regclass;\n"})
        code, verdicts = _verify(capsys, str(folder), "--scratch", fresh("no-prelude").dsn)
        assert code == 1
        assert verdicts["migrations.replay"]["outcome"] == "failed"
        assert "V3__check.sql:1" in verdicts["migrations.replay"]["message"]

        prelude = _write(tmp_path, {"init.sql": PRELUDE}) / "init.sql"
        code, verdicts = _verify(capsys, str(folder), "--prelude", str(prelude),
                                 "--scratch", fresh("prelude").dsn)
        assert code == 0, verdicts
        evidence = verdicts["migrations.prelude"]["evidence"]
        assert verdicts["migrations.prelude"]["outcome"] == "passed"
        assert evidence["sha256"] == hashlib.sha256(PRELUDE.encode()).hexdigest()
        assert evidence["statements"] == 3
        assert verdicts["migrations.replay"]["outcome"] == "passed"

    def test_a_failing_prelude_names_its_line_and_replays_nothing(
            self, tmp_path: Path, fresh: Fresh, capsys: pytest.CaptureFixture[str]) -> None:
        folder = _write(tmp_path / "db", NEEDS_SCHEMA)
        prelude = _write(tmp_path, {"init.sql": "CREATE SCHEMA app;\n\n"
                                                "CREATE TABLE app.t (id nonsense_type);\n"})
        target = fresh("bad-prelude")
        code, verdicts = _verify(capsys, str(folder), "--prelude", str(prelude / "init.sql"),
                                 "--scratch", target.dsn)
        assert code == 1
        message = verdicts["migrations.prelude"]["message"]
        assert verdicts["migrations.prelude"]["outcome"] == "failed"
        assert "init.sql:3" in message and "nonsense_type" in message
        assert "migrations.replay" not in verdicts

    def test_a_prelude_cannot_reach_beyond_its_scratch_database(
            self, tmp_path: Path, fresh: Fresh, capsys: pytest.CaptureFixture[str]) -> None:
        """It runs as the scratch database's own role: a superuser-only statement is refused."""
        folder = _write(tmp_path / "db", NEEDS_SCHEMA)
        prelude = _write(tmp_path, {"init.sql": "ALTER SYSTEM SET work_mem = '1GB';\n"}) / "init.sql"
        code, verdicts = _verify(capsys, str(folder), "--prelude", str(prelude), "--scratch", fresh("p").dsn)
        assert code == 1
        assert "init.sql:1" in verdicts["migrations.prelude"]["message"]

    def test_a_missing_prelude_is_a_usage_error(self, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
        folder = _write(tmp_path / "db", NEEDS_SCHEMA)
        code, verdicts = _verify(capsys, str(folder), "--prelude", str(tmp_path / "nope.sql"))
        assert code == 2
        assert "nope.sql" in verdicts["migrations.layout"]["message"]


class TestSeveralFolders:
    def test_folders_replay_in_order_into_one_database(
            self, tmp_path: Path, fresh: Fresh, capsys: pytest.CaptureFixture[str]) -> None:
        """Flyway's several locations: one version order across the folders, one database."""
        core = _write(tmp_path / "core", {"V1__widgets.sql": NEEDS_SCHEMA["V1__widgets.sql"],
                                          "V3__index.sql": "CREATE INDEX ON parts (widget);\n"})
        extra = _write(tmp_path / "extra", {"V2__parts.sql": NEEDS_SCHEMA["V2__parts.sql"]})
        code, verdicts = _verify(capsys, str(core), str(extra), "--scratch", fresh("two").dsn)
        assert code == 0, verdicts
        steps = verdicts["migrations.replay"]["evidence"]["steps"]
        assert [s["file"] for s in steps] == ["core/V1__widgets.sql", "extra/V2__parts.sql",
                                              "core/V3__index.sql"]

    def test_the_same_version_in_two_folders_names_both(self, tmp_path: Path) -> None:
        first = _write(tmp_path / "a", {"V1__widgets.sql": "SELECT 1;\n"})
        second = _write(tmp_path / "b", {"V1.0__other.sql": "SELECT 2;\n"})
        with pytest.raises(LayoutError) as info:
            load_folders([first, second])
        assert str(first / "V1__widgets.sql") in str(info.value)
        assert str(second / "V1.0__other.sql") in str(info.value)

    def test_different_layouts_chain(self, tmp_path: Path, fresh: Fresh,
                                     capsys: pytest.CaptureFixture[str]) -> None:
        """Each folder keeps its own layout (detected); the versions still form one order."""
        base = _write(tmp_path / "base", {"000001_widgets.up.sql": NEEDS_SCHEMA["V1__widgets.sql"],
                                          "000001_widgets.down.sql": "DROP TABLE widgets;\n"})
        later = _write(tmp_path / "later", {"0002_parts.sql": NEEDS_SCHEMA["V2__parts.sql"]})
        loaded = load_folders([base, later])
        assert loaded.layout == "updown+numbered"
        assert [m.version for m in loaded.versioned()] == ["000001", "0002"]
        code, verdicts = _verify(capsys, str(base), str(later), "--scratch", fresh("mixed").dsn)
        assert code == 0, verdicts
