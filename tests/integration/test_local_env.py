"""The ``local`` environment: real loopback servers seeded with the sandbox product."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import psutil
import psycopg
import pytest
import redis
from psycopg import sql

from checks.errors import ConfigError, NotScratch, ServerStartError
from drills.local import LocalEnvironment
from drills.processes import PostgresServer, RedisServer, S3Server
from drills.sandbox import seed
from drills.targets import PostgresTarget, Role

pytestmark = pytest.mark.integration

PRODUCT_TABLES = {"accounts", "products", "orders", "order_items", "signatures", "scans", "audit_events"}
REPO_ROOT = Path(__file__).resolve().parents[2]


def _scalar(dsn: str, query: str, params: tuple[object, ...] = ()) -> object:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query.encode(), params).fetchone()
    assert row is not None
    return row[0]


def _s3_keys(env: LocalEnvironment, prefix: str) -> list[str]:
    spec = env.store("nightly-dumpall")
    client = boto3.client("s3", endpoint_url=spec.endpoint_url, region_name=spec.region,
                          aws_access_key_id=spec.access_key_id,
                          aws_secret_access_key=spec.secret_access_key)
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=spec.bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return sorted(keys)


def _s3_body(env: LocalEnvironment, key: str) -> bytes:
    spec = env.store("nightly-custom")
    client = boto3.client("s3", endpoint_url=spec.endpoint_url, region_name=spec.region,
                          aws_access_key_id=spec.access_key_id,
                          aws_secret_access_key=spec.secret_access_key)
    body: bytes = client.get_object(Bucket=spec.bucket, Key=key)["Body"].read()
    return body


def _restricted_fingerprint(dsn: str, before: datetime) -> dict[str, tuple[int, int]]:
    """Like seed.fingerprint, for the rows created before ``before`` only."""
    result: dict[str, tuple[int, int]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        seed.pin_session(conn)
        for table in (*seed.TABLES, seed.SCHEMA_VERSION_TABLE):
            row = conn.execute(sql.SQL(
                "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0) FROM {} AS t"
                " WHERE created_at < %s").format(sql.Identifier(table)), (before,)).fetchone()
            assert row is not None
            result[table] = (int(row[0]), int(row[1]))
    return result


@pytest.fixture
def scratch_db(local_env: LocalEnvironment) -> Iterator[PostgresTarget]:
    scratch = local_env.scratch_postgres()
    target = scratch.fresh_database("test")
    try:
        yield target
    finally:
        if target.name.removeprefix("scratch:") in scratch.databases():
            scratch.drop(target)


class TestSubjectProduct:
    def test_holds_every_product_table_with_tens_of_thousands_of_rows(
            self, local_env: LocalEnvironment) -> None:
        """The subject's ``product`` database has the product tables, 20k-100k rows in all."""
        dsn = local_env.postgres("production").dsn
        counts = {table: int(str(_scalar(dsn, f"SELECT count(*) FROM {table}")))
                  for table in PRODUCT_TABLES}
        assert all(count > 0 for count in counts.values()), counts
        assert 20_000 <= sum(counts.values()) <= 100_000, counts

    def test_orders_is_range_partitioned_by_month(self, local_env: LocalEnvironment) -> None:
        """``orders`` is RANGE-partitioned with one partition per month, four or more."""
        dsn = local_env.postgres("production").dsn
        strategy = _scalar(dsn, "SELECT partstrat FROM pg_partitioned_table"
                                " WHERE partrelid = 'orders'::regclass")
        partitions = int(str(_scalar(dsn, "SELECT count(*) FROM pg_inherits"
                                          " WHERE inhparent = 'orders'::regclass")))
        assert strategy == "r"
        assert partitions >= 4

    def test_every_table_has_an_id_and_created_at(self, local_env: LocalEnvironment) -> None:
        """Each product table has an integer ``id`` and a ``timestamptz created_at``."""
        dsn = local_env.postgres("production").dsn
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'public' AND column_name IN ('id', 'created_at')").fetchall()
        found = {(table, column): kind for table, column, kind in rows}
        for table in PRODUCT_TABLES:
            assert found.get((table, "id")) == "integer", table
            assert found.get((table, "created_at")) == "timestamp with time zone", table

    def test_records_the_applied_migrations(self, local_env: LocalEnvironment) -> None:
        """``drillbook_schema_version`` lists every migration file, in order."""
        dsn = local_env.postgres("production").dsn
        with psycopg.connect(dsn) as conn:
            names = [r[0] for r in conn.execute(
                "SELECT name FROM drillbook_schema_version ORDER BY id").fetchall()]
        assert names == [path.name for path in seed.migration_files()]

    def test_production_is_a_read_only_subject(self, local_env: LocalEnvironment) -> None:
        """The subject target refuses writes."""
        with pytest.raises(NotScratch, match="production"):
            local_env.postgres("production").require_scratch()


class TestSeed:
    def test_same_anchor_gives_identical_content(self, local_env: LocalEnvironment) -> None:
        """Two fresh databases seeded with the same anchor and window have the same fingerprint,
        even when one was filled in a single step and the other in two."""
        scratch = local_env.scratch_postgres()
        anchor = datetime(2026, 3, 15, tzinfo=UTC)
        until = anchor - timedelta(days=3)
        first, second = scratch.fresh_database("seed-a"), scratch.fresh_database("seed-b")
        try:
            for target in (first, second):
                seed.apply_migrations(target.dsn, anchor=anchor)
            seed.seed(first.dsn, anchor=anchor, until=until)
            seed.seed(second.dsn, anchor=anchor, until=anchor - timedelta(days=20))
            seed.seed(second.dsn, anchor=anchor, since=anchor - timedelta(days=20), until=until)
            assert seed.fingerprint(first.dsn) == seed.fingerprint(second.dsn)
        finally:
            scratch.drop(first)
            scratch.drop(second)

    def test_another_anchor_gives_other_content(self, local_env: LocalEnvironment) -> None:
        """A different anchor day produces different rows."""
        scratch = local_env.scratch_postgres()
        first, second = scratch.fresh_database("seed-c"), scratch.fresh_database("seed-d")
        try:
            for target, anchor in ((first, datetime(2026, 3, 15, tzinfo=UTC)),
                                   (second, datetime(2026, 3, 16, tzinfo=UTC))):
                seed.apply_migrations(target.dsn, anchor=anchor)
                seed.seed(target.dsn, anchor=anchor, until=anchor - timedelta(days=40))
            assert seed.fingerprint(first.dsn)["scans"] != seed.fingerprint(second.dsn)["scans"]
        finally:
            scratch.drop(first)
            scratch.drop(second)


class TestBackupHistory:
    @pytest.mark.parametrize("store", ["nightly-dumpall", "nightly-custom"])
    def test_each_prefix_has_35_daily_backups_up_to_last_night(
            self, local_env: LocalEnvironment, store: str) -> None:
        """35 objects, one per day, the newest taken at the last 02:00 UTC (last night's backup)."""
        spec = local_env.store(store)
        assert spec.key_pattern is not None
        keys = [k for k in _s3_keys(local_env, spec.prefix) if not k.endswith(spec.checksum_suffix)]
        yesterday = seed.anchor_for(datetime.now(UTC)) + timedelta(hours=2)
        expected = [spec.prefix + (yesterday - timedelta(days=d)).strftime(spec.key_pattern)
                    for d in range(34, -1, -1)]
        assert keys == expected

    def test_objects_are_last_modified_at_their_backup_time(self, local_env: LocalEnvironment) -> None:
        """Each object's LastModified is the nightly 02:00 UTC it names, as a real bucket would show."""
        spec = local_env.store("nightly-dumpall")
        assert spec.key_pattern is not None
        client = boto3.client("s3", endpoint_url=spec.endpoint_url, region_name=spec.region,
                              aws_access_key_id=spec.access_key_id,
                              aws_secret_access_key=spec.secret_access_key)
        listed = client.list_objects_v2(Bucket=spec.bucket, Prefix=spec.prefix)["Contents"]
        for item in listed:
            name = item["Key"].removeprefix(spec.prefix)
            taken = datetime.strptime(name, spec.key_pattern).replace(hour=2, tzinfo=UTC)
            assert item["LastModified"] == taken, name

    def test_sidecar_hashes_match_the_custom_dumps(self, local_env: LocalEnvironment) -> None:
        """Every ``.dump`` has a sha256sum-format sidecar naming it with its real digest."""
        spec = local_env.store("nightly-custom")
        keys = _s3_keys(local_env, spec.prefix)
        dumps = [k for k in keys if k.endswith(".dump")]
        assert [k for k in keys if k.endswith(".sha256")] == [k + ".sha256" for k in dumps]
        for key in (dumps[0], dumps[-1]):
            digest, name = _s3_body(local_env, key + ".sha256").decode().split()
            assert name == key.rsplit("/", 1)[1]
            assert digest == hashlib.sha256(_s3_body(local_env, key)).hexdigest()

    def test_directory_holds_the_last_31_nightly_dumps(self, local_env: LocalEnvironment) -> None:
        """31 ``sentrascan_*.sql.gz`` files (``find -mtime +30`` keeps them).

        Their mtimes are their backup times.
        """
        spec = local_env.store("nightly-plain")
        assert spec.key_pattern is not None
        files = sorted(spec.path.iterdir())
        assert len(files) == 31
        for path in files:
            taken = datetime.strptime(path.name, spec.key_pattern).replace(tzinfo=UTC)
            assert path.stat().st_mtime == taken.timestamp()

    def test_newest_backup_equals_the_subject_before_its_time(
            self, local_env: LocalEnvironment, scratch_db: PostgresTarget) -> None:
        """Restoring yesterday's custom dump gives exactly the subject rows created before 02:00."""
        spec = local_env.store("nightly-custom")
        newest = [k for k in _s3_keys(local_env, spec.prefix) if k.endswith(".dump")][-1]
        assert spec.key_pattern is not None
        taken = datetime.strptime(newest.rsplit("/", 1)[1], spec.key_pattern).replace(tzinfo=UTC)
        subprocess.run(
            [str(local_env.scratch_postgres().bindir / "pg_restore"), "--no-owner", "-d", scratch_db.dsn],
            input=_s3_body(local_env, newest), check=True, capture_output=True)
        subject = local_env.postgres("production").dsn
        restored = seed.fingerprint(scratch_db.dsn)
        assert restored == _restricted_fingerprint(subject, taken)
        assert restored != seed.fingerprint(subject)  # the subject grew after the backup


class TestScratch:
    def test_fresh_databases_are_empty_scratch_and_distinct(self, local_env: LocalEnvironment) -> None:
        """Two fresh databases differ, hold no relations, and are marked scratch."""
        scratch = local_env.scratch_postgres()
        first, second = scratch.fresh_database("restore"), scratch.fresh_database("restore")
        try:
            assert first.dsn != second.dsn
            for target in (first, second):
                assert target.role is Role.SCRATCH and target.created_by_drillbook
                target.require_scratch()
                target.assert_empty()
        finally:
            scratch.drop(first)
            scratch.drop(second)

    def test_drop_removes_the_database(self, local_env: LocalEnvironment) -> None:
        """After ``drop`` the database no longer exists on the scratch cluster."""
        scratch = local_env.scratch_postgres()
        target = scratch.fresh_database("to be dropped")
        dbname = target.name.removeprefix("scratch:")
        scratch.drop(target)
        exists = _scalar(scratch.server.dsn(), "SELECT count(*) FROM pg_database WHERE datname = %s",
                         (dbname,))
        assert exists == 0
        assert dbname not in scratch.databases()

    def test_dropping_a_subject_is_refused(self, local_env: LocalEnvironment) -> None:
        """``drop`` of the production subject raises NotScratch naming it, with a hint."""
        with pytest.raises(NotScratch, match="refusing to write to `production`") as caught:
            local_env.scratch_postgres().drop(local_env.postgres("production"))
        assert "scratch" in caught.value.hint
        assert int(str(_scalar(local_env.postgres("production").dsn, "SELECT count(*) FROM orders"))) > 0


class TestTargets:
    def test_unknown_name_names_the_known_ones(self, local_env: LocalEnvironment) -> None:
        """An unknown store raises ConfigError listing the sandbox's store names."""
        with pytest.raises(ConfigError, match="nightly-dumpall, nightly-custom, nightly-plain") as caught:
            local_env.store("weekly")
        assert "`weekly`" in caught.value.message
        with pytest.raises(ConfigError, match="production"):
            local_env.postgres("staging")

    def test_redis_cache_answers(self, local_env: LocalEnvironment) -> None:
        """``redis("cache")`` points at a live redis-server holding the sample keys."""
        client = redis.Redis.from_url(local_env.redis("cache").url)
        try:
            assert client.ping()
            assert client.get("session:0001") == b"account:1"
        finally:
            client.close()

    def test_details_name_every_endpoint_and_no_secret(self, local_env: LocalEnvironment) -> None:
        """``details()`` gives the DSNs, redis URL, S3 endpoint, bucket and directory."""
        details = local_env.details()
        for key in ("postgres.production", "postgres.scratch", "redis.cache", "s3.endpoint_url",
                    "s3.bucket", "directory", "cache_hit"):
            assert details[key], key
        assert not any("secret" in key for key in details)
        # pgBackRest's HTTPS front of the same S3, and the CA it verifies with (readable by postgres).
        assert details["s3.tls_endpoint_url"].startswith("https://localhost:")
        assert Path(details["s3.ca_file"]).stat().st_mode & 0o044 == 0o044


class TestStartAndClose:
    def test_warm_start_uses_the_cache_and_close_leaves_nothing(self, local_env: LocalEnvironment) -> None:
        """A second start the same day reuses the cached product; close() stops every process
        and removes the temp dir, and a second close() is harmless."""
        env = LocalEnvironment.start(cache_dir=local_env.cache_dir)
        try:
            assert env.cache_hit
            running = env.leftovers()  # while it runs, the leftover check does see it
            assert any("PostgreSQL (subject)" in item for item in running), running
            assert any("temp dir" in item for item in running), running
            pids = [pid for pid in (env.subject.pid if env.subject else None,
                                    env.scratch.server.pid if env.scratch else None,
                                    env.redis_server.pid if env.redis_server else None) if pid]
            assert len(pids) == 3
        finally:
            env.close()
        assert env.leftovers() == []
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                       for pid in pids)
        assert not env.workdir.exists()
        env.close()

    def test_sigterm_still_cleans_up(self, local_env: LocalEnvironment, tmp_path: Path) -> None:
        """A process killed by SIGTERM while the sandbox runs still stops it and removes its temp dir."""
        script = (
            "import json, sys, time\n"
            "from pathlib import Path\n"
            "from drills.local import LocalEnvironment\n"
            "env = LocalEnvironment.start(cache_dir=Path(sys.argv[1]))\n"
            "pids = [env.subject.pid, env.scratch.server.pid, env.redis_server.pid]\n"
            "print(json.dumps({'pids': pids, 'workdir': str(env.workdir)}), flush=True)\n"
            "time.sleep(60)\n"
        )
        child = subprocess.Popen([sys.executable, "-c", script, str(local_env.cache_dir)], cwd=REPO_ROOT,
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            started = json.loads(child.stdout.readline())
            child.send_signal(signal.SIGTERM)
            assert child.wait(timeout=30) == 128 + signal.SIGTERM
        finally:
            if child.poll() is None:
                child.kill()
            if child.stdout is not None:
                child.stdout.close()
        deadline = time.monotonic() + 5
        while any(psutil.pid_exists(pid) for pid in started["pids"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in started["pids"] if psutil.pid_exists(pid)]
        assert not Path(started["workdir"]).exists()


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port some other program is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A temp dir the `postgres` OS user can traverse (pytest's own tmp_path is 0700 as root)."""
    path = Path(tempfile.mkdtemp(prefix="drillbook-test-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class TestServerStartFailures:
    def test_an_unreachable_data_dir_is_named_before_starting(self, tmp_path: Path) -> None:
        """As root, a data dir the postgres user cannot reach is refused with the blocking dir named."""
        if os.geteuid() != 0:
            pytest.skip(reason="only root hands servers to the postgres OS user")
        private = tmp_path / "private"
        private.mkdir(mode=0o700)
        server = PostgresServer("hidden", private / "pgdata")
        with pytest.raises(ServerStartError, match="cannot reach") as caught:
            server.init()
        assert "is not traversable" in caught.value.message
        assert "chmod o+x" in caught.value.hint
        assert server.pid is None


    def test_postgres_on_a_taken_port_names_the_server_and_stops(
            self, local_env: LocalEnvironment, server_dir: Path, taken_port: int) -> None:
        """ServerStartError names the cluster, its port and the log's bind error; nothing runs."""
        server = PostgresServer("probe", server_dir / "pgdata", port=taken_port)
        template = sorted(local_env.cache_dir.glob("pg-template-*"))[0]
        server.init(template=template)
        with pytest.raises(ServerStartError) as caught:
            server.start()
        assert f"PostgreSQL (probe) on 127.0.0.1:{taken_port}" in caught.value.message
        assert "could not bind" in caught.value.message
        assert caught.value.context["port"] == taken_port
        assert server.pid is None

    def test_bogus_binary_dir_is_named(self, server_dir: Path) -> None:
        """A bindir without PostgreSQL makes initdb fail with ServerStartError naming the dir."""
        bogus = server_dir / "no-such-bin"
        server = PostgresServer("bogus", server_dir / "pgdata", bindir=bogus)
        with pytest.raises(ServerStartError, match="no-such-bin") as caught:
            server.init()
        assert "DRILLBOOK_PG_BINDIR" in caught.value.hint
        assert server.pid is None

    def test_redis_on_a_taken_port_fails_fast(self, tmp_path: Path, taken_port: int) -> None:
        """redis-server that cannot bind is reported at once, with its log, and reaped."""
        server = RedisServer(tmp_path / "redis", port=taken_port)
        started = time.monotonic()
        with pytest.raises(ServerStartError, match=f"redis-server on 127.0.0.1:{taken_port}"):
            server.start()
        assert time.monotonic() - started < 10
        assert server.pid is None

    def test_s3_on_a_taken_port_fails(self, taken_port: int) -> None:
        """The moto server reports a port it cannot bind instead of hanging."""
        server = S3Server(port=taken_port)
        with pytest.raises(ServerStartError, match="could not bind"):
            server.start()
        assert not server.running

    def test_a_failed_environment_start_leaves_nothing(self, tmp_path: Path) -> None:
        """LocalEnvironment.start without usable PostgreSQL binaries raises and leaves no temp dir."""
        bogus = tmp_path / "empty-bin"
        bogus.mkdir()
        temp_root = Path(tempfile.gettempdir())
        before = set(temp_root.glob("drillbook-local-*"))
        with pytest.raises(ServerStartError, match="empty-bin"):
            LocalEnvironment.start(cache_dir=tmp_path / "cache", bindir=bogus)
        assert set(temp_root.glob("drillbook-local-*")) == before
