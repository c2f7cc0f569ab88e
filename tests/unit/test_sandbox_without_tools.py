"""A sandbox built where pgbackrest or barman's cloud client is missing (the fleet shard image)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drills.processes import PostgresServer
from drills.sandbox import barman_location, pgbackrest_repo


def test_no_pgbackrest_leaves_an_empty_repo_and_a_canary_with_nothing_to_break(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pgbackrest_repo, "available", lambda: False)
    server = PostgresServer("build", tmp_path / "pgdata", bindir=Path("/nonexistent"))
    repo = pgbackrest_repo.BuildRepo(tmp_path, server)
    repo.backup()  # no pgbackrest is run (it would raise: /usr/bin/pgbackrest is not called)
    repo.keep(tmp_path / "cached")
    assert pgbackrest_repo.repo_files(tmp_path / "cached") == []
    assert pgbackrest_repo.canary_file(tmp_path / "cached") == ""


def test_no_barman_client_takes_no_backup_and_starts_no_s3(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(barman_location, "available", lambda: False)
    build = barman_location.BarmanBuild(tmp_path / "s3")
    server = PostgresServer("build", tmp_path / "pgdata", bindir=Path("/nonexistent"))
    build.backup(server)  # would connect to the server and start moto
    build.archive(tmp_path)
    build.close()
    assert not (tmp_path / "s3").exists()
