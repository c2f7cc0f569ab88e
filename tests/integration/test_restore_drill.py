"""The restore-from-yesterday drill against real servers: sandbox stores, Pagila, bad input."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from checks.compare import compare_databases
from checks.errors import (
    BackupUnreadable,
    ChecksumMismatch,
    NoBackupFound,
    NotScratch,
    RestoreFailed,
    ScratchNotEmpty,
    StoreUnreachable,
)
from checks.postgres import row_counts
from checks.verdict import Outcome
from drills import pgtools
from drills.live import ConfiguredScratch
from drills.restore import RestoreDrill
from drills.targets import PostgresTarget, Role, StoreSpec
from tests.support.pg import admin_dsn

pytestmark = pytest.mark.integration

FIXTURES = Path(os.environ.get("DRILLBOOK_FIXTURES", Path(__file__).parents[3] / "shared" / "fixtures"))
PAGILA = FIXTURES / "postgres" / "pagila"

PAGILA_COUNTS = {"actor": 200, "film": 1000, "payment": 16049, "rental": 16044, "customer": 599,
                 "inventory": 4581, "film_actor": 5462}


def _connect(target: PostgresTarget) -> psycopg.Connection[Any]:
    return psycopg.connect(target.dsn, connect_timeout=10)


def _directory(path: Path, pattern: str | None = None) -> StoreSpec:
    return StoreSpec(name="dir", url=str(path), key_pattern=pattern)


@pytest.fixture
def scratch(local_env: Any) -> Any:
    return local_env.scratch_postgres()


@pytest.fixture(scope="module")
def pagila(local_env: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PostgresTarget, Path]]:
    """Pagila loaded into a database playing the subject, and a directory of its dumps."""
    if not (PAGILA / "pagila-schema.sql").exists():
        pytest.skip(f"Pagila fixture not found under {PAGILA} (set DRILLBOOK_FIXTURES)")
    provider = local_env.scratch_postgres()
    db = provider.fresh_database("pagila")
    # Loaded and dumped by the cluster's administrator, as a real subject's owner would.
    admin = admin_dsn(db)
    psql = [pgtools.tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin]
    subprocess.run([*psql, "-f", str(PAGILA / "pagila-schema.sql")], check=True, capture_output=True)
    data = gzip.decompress((PAGILA / "pagila-data.sql.gz").read_bytes())
    subprocess.run(psql, input=data, check=True, capture_output=True)
    dumps = tmp_path_factory.mktemp("pagila-dumps")
    subprocess.run([pgtools.tool("pg_dump"), "-Fc", "-f", str(dumps / "pagila.dump"), admin], check=True)
    subject = PostgresTarget(name="pagila", dsn=admin, role=Role.SUBJECT)
    yield subject, dumps
    provider.drop(db)


class TestSandboxStores:
    @pytest.mark.parametrize(("store", "database"), [
        ("nightly-custom", None), ("nightly-dumpall", "product"), ("nightly-plain", None),
    ])
    def test_newest_backup_restores_and_matches_subject(
        self, local_env: Any, store: str, database: str | None
    ) -> None:
        """Each sandbox store's newest backup restores and its rows equal the subject's older rows."""
        spec = local_env.store(store)
        with RestoreDrill(spec, local_env.scratch_postgres(), database=database) as drill:
            result = drill.run()
            assert result.target is not None
            assert result.rto_s > 0
            with _connect(result.target) as conn:
                counts = row_counts(conn, {"orders": 1, "signatures": 1, "scans": 1})
            assert counts.outcome is Outcome.PASSED, counts.message
            subject = local_env.postgres("production")
            verdict = compare_databases(lambda: _connect(subject), lambda: _connect(result.target),
                                        cutoff=result.backup_time)
            assert verdict.outcome is Outcome.PASSED, verdict.message
        phases = [e["phase"] for e in drill.journal.entries]
        assert phases[0] == "discover" and phases[-1] == "cleanup: remove temp files"
        assert "cleanup: drop scratch database" in phases

    def test_checksum_sidecar_is_verified(self, local_env: Any) -> None:
        """The custom-format store has sidecars; the drill compares them with the streamed hash."""
        with RestoreDrill(local_env.store("nightly-custom"), local_env.scratch_postgres()) as drill:
            result = drill.run()
        assert result.checksum is not None
        assert result.checksum.outcome is Outcome.PASSED

    def test_content_difference_is_located(self, local_env: Any) -> None:
        """A changed row in the restored copy fails the comparison naming its key."""
        with RestoreDrill(local_env.store("nightly-custom"), local_env.scratch_postgres()) as drill:
            result = drill.run()
            assert result.target is not None
            with _connect(result.target) as conn:
                key = conn.execute("SELECT id FROM orders ORDER BY id OFFSET 777 LIMIT 1").fetchone()[0]
                conn.execute("UPDATE orders SET total_cents = total_cents + 1 WHERE id = %s",
                             (key,))
            subject = local_env.postgres("production")
            verdict = compare_databases(lambda: _connect(subject), lambda: _connect(result.target),
                                        cutoff=result.backup_time, tables=["orders"], max_ranges=64)
        assert verdict.outcome is Outcome.FAILED
        assert f"first difference at id = {key}" in verdict.message

    def test_cleanup_drops_the_scratch_database(self, local_env: Any) -> None:
        """After the drill the scratch database and its restore role no longer exist."""
        with RestoreDrill(local_env.store("nightly-custom"), local_env.scratch_postgres()) as drill:
            result = drill.run()
            assert result.target is not None
            name = psycopg.conninfo.conninfo_to_dict(result.target.dsn)["dbname"]
        with psycopg.connect(admin_dsn(result.target, dbname="postgres")) as conn:
            assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None
            assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is None


class TestPagila:
    def test_custom_dump_restores_with_documented_counts_and_identical_content(
        self, pagila: tuple[PostgresTarget, Path], scratch: Any
    ) -> None:
        """Pagila (partitions, non-ASCII names) restores clean and compares identical."""
        subject, dumps = pagila
        with RestoreDrill(_directory(dumps), scratch) as drill:
            result = drill.run()
            assert result.target is not None
            with _connect(result.target) as conn:
                counts = row_counts(conn, PAGILA_COUNTS)
                assert counts.measured == PAGILA_COUNTS
            verdict = compare_databases(lambda: _connect(subject), lambda: _connect(result.target),
                                        cutoff=None)
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert verdict.evidence["tables"]["public.payment"]["rows"] == 16049

    def test_plain_gzip_of_upstream_files_restores(self, pagila: tuple[PostgresTarget, Path],
                                                    scratch: Any, tmp_path: Path) -> None:
        """The upstream schema + data as one gzipped plain SQL file restores through psql."""
        subject, _ = pagila
        sql = (PAGILA / "pagila-schema.sql").read_bytes() + gzip.decompress(
            (PAGILA / "pagila-data.sql.gz").read_bytes())
        (tmp_path / "pagila.sql.gz").write_bytes(gzip.compress(sql))
        with RestoreDrill(_directory(tmp_path), scratch) as drill:
            result = drill.run()
            verdict = compare_databases(lambda: _connect(subject), lambda: _connect(result.target),  # type: ignore[arg-type]
                                        cutoff=None)
        assert verdict.outcome is Outcome.PASSED, verdict.message


class TestBadInput:
    def _run(self, directory: Path, scratch: Any) -> None:
        with RestoreDrill(_directory(directory), scratch) as drill:
            drill.run()

    def test_empty_store(self, tmp_path: Path, scratch: Any) -> None:
        """No backup in the store fails naming the store."""
        with pytest.raises(NoBackupFound):
            self._run(tmp_path, scratch)

    def test_zero_byte_file(self, tmp_path: Path, scratch: Any) -> None:
        """A zero-byte backup is named as empty."""
        (tmp_path / "backup-20261121.sql.gz").write_bytes(b"")
        with pytest.raises(BackupUnreadable, match=r"backup-20261121\.sql\.gz.*(empty|0 bytes)"):
            self._run(tmp_path, scratch)

    def test_not_a_dump(self, tmp_path: Path, scratch: Any) -> None:
        """A file that is not a dump is refused before any restore."""
        (tmp_path / "backup.sql").write_text("hello, this is a shopping list\n")
        with pytest.raises(BackupUnreadable, match=r"backup\.sql"):
            self._run(tmp_path, scratch)

    def test_truncated_gzip(self, local_env: Any, tmp_path: Path, scratch: Any) -> None:
        """A gzip cut in half fails as truncated, and nothing of it is committed."""
        source = _first_plain_backup(local_env)
        data = source.read_bytes()
        (tmp_path / "cut.sql.gz").write_bytes(data[: len(data) // 2])
        with pytest.raises(BackupUnreadable, match=r"truncated|corrupt"):
            self._run(tmp_path, scratch)

    def test_dump_that_restores_with_errors(self, tmp_path: Path, scratch: Any) -> None:
        """A plain dump with a failing statement names the error psql printed."""
        (tmp_path / "broken.sql").write_text(
            "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n"
            "CREATE TABLE t (id int PRIMARY KEY);\nINSERT INTO t VALUES (1), (1);\n"
        )
        with pytest.raises(RestoreFailed, match="duplicate key"):
            self._run(tmp_path, scratch)

    def test_checksum_mismatch(self, local_env: Any, tmp_path: Path, scratch: Any) -> None:
        """A sidecar that does not match stops the drill before the restore: the backup never runs."""
        source = _first_plain_backup(local_env)
        shutil.copy(source, tmp_path / source.name)
        (tmp_path / (source.name + ".sha256")).write_text(
            hashlib.sha256(b"something else").hexdigest() + "  " + source.name + "\n")
        with RestoreDrill(_directory(tmp_path), scratch) as drill:
            with pytest.raises(ChecksumMismatch, match=r"its checksum file says .*not restored"):
                drill.run()
            assert drill.result is not None and drill.result.checksum is not None
            assert drill.result.checksum.outcome is Outcome.FAILED
            assert drill.result.target is None, "a scratch database was created for a rejected backup"
        phases = [e["phase"] for e in drill.journal.entries]
        assert "restore" not in phases and "create scratch database" not in phases

    def test_unreachable_s3_endpoint(self, scratch: Any) -> None:
        """An S3 endpoint nobody listens on is StoreUnreachable, quickly."""
        import port_for

        spec = StoreSpec(name="s3", url="s3://nowhere/backups/",
                         endpoint_url=f"http://127.0.0.1:{port_for.select_random()}",
                         access_key_id="testing", secret_access_key="testing")
        with pytest.raises(StoreUnreachable), RestoreDrill(spec, scratch) as drill:
            drill.run()


class TestSafety:
    def test_subject_as_scratch_is_refused_before_any_write(self, local_env: Any, tmp_path: Path) -> None:
        """A provider that hands back a subject makes the drill stop with NotScratch.

        The subject is untouched.
        """
        subject = local_env.postgres("production")

        class Treacherous:
            bindir = pgtools.bindir()

            def fresh_database(self, purpose: str) -> PostgresTarget:
                return subject

            def drop(self, target: PostgresTarget) -> None:
                target.require_scratch()

        before = _fingerprint(subject)
        with pytest.raises(NotScratch, match="production"), \
                RestoreDrill(local_env.store("nightly-custom"), Treacherous()) as drill:
            drill.run()
        assert _fingerprint(subject) == before

    def test_configured_scratch_must_be_empty(self, local_env: Any) -> None:
        """A configured scratch database holding tables is refused with the remediation hint."""
        provider = local_env.scratch_postgres()
        db = provider.fresh_database("not-empty")
        try:
            with _connect(db) as conn:
                conn.execute("CREATE TABLE precious (id int)")
            configured = ConfiguredScratch(PostgresTarget(name="scratch", dsn=db.dsn, role=Role.SCRATCH))
            with pytest.raises(ScratchNotEmpty) as caught:
                configured.fresh_database("restore")
            assert "point `scratch` at an empty database" in caught.value.hint
            with _connect(db) as conn:
                assert conn.execute("SELECT count(*) FROM precious").fetchone() == (0,)
        finally:
            provider.drop(db)

    def test_configured_scratch_is_emptied_after(self, local_env: Any) -> None:
        """An empty configured scratch receives the restore and is empty again afterwards."""
        provider = local_env.scratch_postgres()
        db = provider.fresh_database("configured")
        try:
            configured = ConfiguredScratch(PostgresTarget(name="scratch", dsn=db.dsn, role=Role.SCRATCH))
            with RestoreDrill(local_env.store("nightly-custom"), configured) as drill:
                drill.run()
            PostgresTarget(name="scratch", dsn=db.dsn, role=Role.SCRATCH).assert_empty()
        finally:
            provider.drop(db)


def _fingerprint(target: PostgresTarget) -> tuple[Any, ...]:
    with _connect(target) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM orders), (SELECT sum(hashtextextended(o::text, 0)) FROM orders o),"
            " (SELECT count(*) FROM pg_class)"
        ).fetchone()
    assert row is not None
    return tuple(row)


def _first_plain_backup(local_env: Any) -> Path:
    spec = local_env.store("nightly-plain")
    files = sorted(Path(spec.url).glob("*.sql.gz"))
    assert files, "the sandbox's plain-dump directory is empty"
    return files[-1]
