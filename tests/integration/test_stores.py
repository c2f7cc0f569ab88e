"""Backup stores against a real S3 server (moto on loopback) and real directories."""

from __future__ import annotations

import logging
import os
import secrets
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import port_for
import pytest
from moto.server import ThreadedMotoServer

from checks.backups import BackupObject, compile_key_pattern, newest_backup
from checks.errors import DrillbookError, NoBackupFound, StoreUnreachable
from drills.stores import DirectoryStore, S3Store, open_store
from drills.targets import StoreSpec

pytestmark = pytest.mark.integration

ACCESS_KEY_ID = "AKIA" + secrets.token_hex(8).upper()
# Random per run, so finding it in a message can only mean it leaked.
SECRET_KEY = secrets.token_urlsafe(30)
REGION = "eu-central-1"
MANY = 1203  # more than one page of list_objects_v2 (1,000 keys)
CHUNK = 64 * 1024


def _all_text(exc: BaseException) -> str:
    """Everything an exception could show: message, repr, context fields and the formatted traceback."""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    if isinstance(exc, DrillbookError):
        parts += [exc.hint, repr(exc.context)]
    return "\n".join(parts)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 with a free port, for this module."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one INFO line per request otherwise
    port = port_for.select_random()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3_client(s3_endpoint: str) -> Any:
    return boto3.session.Session().client(
        "s3", endpoint_url=s3_endpoint, region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_KEY,
    )


@pytest.fixture
def bucket(s3_client: Any) -> str:
    """A fresh bucket per test: moto's state is process-wide, other tests may hold buckets too."""
    name = f"backups-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


@pytest.fixture
def spec_for(s3_endpoint: str) -> Callable[..., StoreSpec]:
    def make(url: str, **overrides: Any) -> StoreSpec:
        values: dict[str, Any] = {"endpoint_url": s3_endpoint, "region": REGION,
                                  "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET_KEY}
        values.update(overrides)
        return StoreSpec(name="nightly", url=url, **values)

    return make


class TestS3Store:
    def test_listing_follows_pagination(self, s3_client: Any, bucket: str,
                                        spec_for: Callable[..., StoreSpec]) -> None:
        """More than 1,000 objects under the prefix are all listed; objects outside it are not."""
        keys = [f"aureus/backup-{n:05d}.sql.gz" for n in range(MANY)]

        def put(key: str) -> None:
            s3_client.put_object(Bucket=bucket, Key=key, Body=b"x" * 7)

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(put, [*keys, "other/backup-00001.sql.gz"]))
        objects = open_store(spec_for(f"s3://{bucket}/aureus/")).list()
        assert sorted(o.key for o in objects) == keys
        assert {o.size for o in objects} == {7}
        assert all(o.last_modified.utcoffset() is not None for o in objects)

    def test_stream_reads_the_object_in_chunks(self, s3_client: Any, bucket: str,
                                               spec_for: Callable[..., StoreSpec]) -> None:
        """`open` gives a stream that yields the object's exact bytes chunk by chunk."""
        payload = os.urandom(3 * 1024 * 1024 + 17)
        s3_client.put_object(Bucket=bucket, Key="sark/db-20261121.dump", Body=payload)
        store = open_store(spec_for(f"s3://{bucket}/sark/"))
        [backup] = store.list()
        stream = store.open(backup)
        try:
            chunks = []
            while chunk := stream.read(CHUNK):
                assert len(chunk) <= CHUNK
                chunks.append(chunk)
        finally:
            stream.close()
        assert b"".join(chunks) == payload
        assert len(chunks) > 1

    def test_sidecar_text_or_none(self, s3_client: Any, bucket: str,
                                  spec_for: Callable[..., StoreSpec]) -> None:
        """`read_text` returns a sidecar's text, and None when there is no sidecar."""
        s3_client.put_object(Bucket=bucket, Key="sark/db.dump.sha256", Body=b"abc  db.dump\n")
        store = open_store(spec_for(f"s3://{bucket}/sark/"))
        assert store.read_text("sark/db.dump.sha256") == "abc  db.dump\n"
        assert store.read_text("sark/other.dump.sha256") is None

    def test_newest_backup_by_key_pattern(self, s3_client: Any, bucket: str,
                                          spec_for: Callable[..., StoreSpec]) -> None:
        """Listing plus the pure check find the newest nightly, ignoring its sidecar."""
        for day in (19, 20, 21):
            key = f"sark/postgres/sark-backup-202611{day}-0200.dump"
            s3_client.put_object(Bucket=bucket, Key=key, Body=b"PGDMP")
            s3_client.put_object(Bucket=bucket, Key=key + ".sha256", Body=b"x")
        objects = open_store(spec_for(f"s3://{bucket}/sark/postgres/")).list()
        backup, taken = newest_backup(objects, pattern=compile_key_pattern("sark-backup-%Y%m%d-%H%M.dump"))
        assert backup.key == "sark/postgres/sark-backup-20261121-0200.dump"
        assert taken == datetime(2026, 11, 21, 2, tzinfo=UTC)

    def test_empty_prefix_lists_nothing(self, bucket: str, spec_for: Callable[..., StoreSpec]) -> None:
        """An existing bucket with nothing under the prefix lists empty (newest_backup then says so)."""
        assert open_store(spec_for(f"s3://{bucket}/nothing-here/")).list() == []

    def test_missing_bucket(self, spec_for: Callable[..., StoreSpec], s3_endpoint: str) -> None:
        """A bucket that does not exist is NoBackupFound naming the bucket and the endpoint."""
        store = open_store(spec_for("s3://no-such-bucket-here/aureus/"))
        with pytest.raises(NoBackupFound) as info:
            store.list()
        message = info.value.message
        assert "'no-such-bucket-here' does not exist" in message
        assert s3_endpoint in message
        assert "bucket name" in info.value.hint

    def test_object_gone_after_listing(self, s3_client: Any, bucket: str,
                                       spec_for: Callable[..., StoreSpec]) -> None:
        """An object deleted between listing and download is NoBackupFound naming the key."""
        s3_client.put_object(Bucket=bucket, Key="a/b.dump", Body=b"PGDMP")
        store = open_store(spec_for(f"s3://{bucket}/a/"))
        [backup] = store.list()
        s3_client.delete_object(Bucket=bucket, Key="a/b.dump")
        with pytest.raises(NoBackupFound, match=r"read a/b\.dump .*gone"):
            store.open(backup)

    def test_unreachable_endpoint_fails_fast(self) -> None:
        """An endpoint nobody listens on is StoreUnreachable within seconds, naming the endpoint."""
        endpoint = f"http://127.0.0.1:{port_for.select_random()}"
        store = open_store(StoreSpec(name="s3", url="s3://nowhere/backups/", endpoint_url=endpoint,
                                     access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_KEY))
        started = time.monotonic()
        with pytest.raises(StoreUnreachable) as info:
            store.list()
        assert time.monotonic() - started < 5
        assert endpoint in info.value.message
        assert "s3://nowhere/backups/" in info.value.message
        assert SECRET_KEY not in _all_text(info.value)

    def test_secret_never_appears_in_errors(self, s3_client: Any, bucket: str,
                                            spec_for: Callable[..., StoreSpec]) -> None:
        """No error path (missing bucket, missing object, unreachable) shows the secret key."""
        s3_client.put_object(Bucket=bucket, Key="p/x.dump", Body=b"PGDMP")
        unreachable = spec_for("s3://b/p/", endpoint_url=f"http://127.0.0.1:{port_for.select_random()}")
        gone = BackupObject(key="p/missing.dump", size=1, last_modified=datetime.now(UTC))
        provocations: list[Callable[[], object]] = [
            lambda: open_store(spec_for("s3://no-such-bucket-x/p/")).list(),
            lambda: open_store(spec_for(f"s3://{bucket}/p/")).open(gone),
            lambda: open_store(spec_for("s3://no-such-bucket-x/p/")).read_text("p/x.dump.sha256"),
            lambda: open_store(unreachable).list(),
            lambda: open_store(unreachable).read_text("p/x.sha256"),
        ]
        for provoke in provocations:
            with pytest.raises(DrillbookError) as info:
                provoke()
            assert SECRET_KEY not in _all_text(info.value)
            assert ACCESS_KEY_ID not in info.value.message

    def test_describe_names_the_url_never_credentials(self, s3_endpoint: str) -> None:
        """`describe` shows bucket, prefix and endpoint; credentials in the endpoint URL are dropped."""
        endpoint = s3_endpoint.replace("http://", f"http://{ACCESS_KEY_ID}:{SECRET_KEY}@")
        store = S3Store(StoreSpec(name="s", url="s3://bk/aureus/", endpoint_url=endpoint,
                                  access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_KEY))
        assert store.describe() == f"s3://bk/aureus/ at {s3_endpoint}"
        aws = S3Store(StoreSpec(name="s", url="s3://bk/aureus/", region="eu-west-1"))
        assert aws.describe() == "s3://bk/aureus/ (region eu-west-1)"


class TestDirectoryStore:
    def _store(self, root: Path) -> DirectoryStore:
        store = open_store(StoreSpec(name="dir", url=str(root)))
        assert isinstance(store, DirectoryStore)
        return store

    def test_lists_recursively_with_relative_keys_and_mtimes(self, tmp_path: Path) -> None:
        """Every file below the root is listed with a `/`-separated relative key, size and UTC mtime."""
        (tmp_path / "2026" / "11").mkdir(parents=True)
        files = {"top.sql.gz": b"a", "2026/11/db-20261121.dump": b"PGDMP12", "2026/11/db.dump.sha256": b"x"}
        stamp = datetime(2026, 11, 21, 2, tzinfo=UTC).timestamp()
        for key, data in files.items():
            (tmp_path / key).write_bytes(data)
            os.utime(tmp_path / key, (stamp, stamp))
        objects = self._store(tmp_path).list()
        assert [(o.key, o.size) for o in objects] == sorted((k, len(v)) for k, v in files.items())
        assert {o.last_modified for o in objects} == {datetime(2026, 11, 21, 2, tzinfo=UTC)}

    def test_many_files(self, tmp_path: Path) -> None:
        """A directory of more than a thousand backups lists them all."""
        for n in range(MANY):
            (tmp_path / f"backup-{n:05d}.sql.gz").write_bytes(b"")
        assert len(self._store(tmp_path).list()) == MANY

    def test_open_streams_and_sidecars(self, tmp_path: Path) -> None:
        """`open` streams the file's bytes; `read_text` reads a sidecar or gives None."""
        payload = os.urandom(300_000)
        (tmp_path / "b.dump").write_bytes(payload)
        (tmp_path / "b.dump.sha256").write_text("abc  b.dump\n")
        store = self._store(tmp_path)
        backup = next(o for o in store.list() if o.key == "b.dump")
        with store.open(backup) as stream:
            data = b"".join(iter(lambda: stream.read(CHUNK), b""))
        assert data == payload
        assert store.read_text("b.dump.sha256") == "abc  b.dump\n"
        assert store.read_text("c.dump.sha256") is None

    def test_missing_directory(self, tmp_path: Path) -> None:
        """A directory that does not exist is NoBackupFound naming it."""
        missing = tmp_path / "not-mounted"
        with pytest.raises(NoBackupFound, match=f"backup directory {missing} does not exist"):
            self._store(missing).list()

    def test_a_file_instead_of_a_directory(self, tmp_path: Path) -> None:
        """A store path that is a file cannot be listed: StoreUnreachable naming it."""
        path = tmp_path / "backups"
        path.write_text("oops")
        with pytest.raises(StoreUnreachable, match="is not a directory"):
            self._store(path).list()

    def test_file_gone_after_listing(self, tmp_path: Path) -> None:
        """A file removed between listing and reading is NoBackupFound naming the key."""
        (tmp_path / "b.dump").write_bytes(b"PGDMP")
        store = self._store(tmp_path)
        [backup] = store.list()
        (tmp_path / "b.dump").unlink()
        with pytest.raises(NoBackupFound, match=r"b\.dump is gone"):
            store.open(backup)

    def test_keys_cannot_climb_out(self, tmp_path: Path) -> None:
        """A key with `..` is refused instead of reading outside the store."""
        (tmp_path / "store").mkdir()
        (tmp_path / "secret.txt").write_text("no")
        with pytest.raises(StoreUnreachable, match="outside the store"):
            self._store(tmp_path / "store").read_text("../secret.txt")

    @pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable directories anyway")
    def test_unreadable_subdirectory(self, tmp_path: Path) -> None:
        """A subdirectory that cannot be read is StoreUnreachable, not silently skipped backups."""
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0)
        try:
            with pytest.raises(StoreUnreachable, match="locked"):
                self._store(tmp_path).list()
        finally:
            locked.chmod(0o700)


class TestOpenStore:
    def test_dispatch_by_url(self, tmp_path: Path) -> None:
        """s3:// URLs open an S3Store (without touching the network), anything else a DirectoryStore."""
        s3 = open_store(StoreSpec(name="s", url="s3://bk/p/", endpoint_url="http://127.0.0.1:9"))
        assert isinstance(s3, S3Store)
        assert isinstance(open_store(StoreSpec(name="d", url=str(tmp_path))), DirectoryStore)
