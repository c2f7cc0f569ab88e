"""The sandbox's HTTPS front of S3, its locked vault bucket and the pgBackRest canary (real moto, no mocks).

The default run already restores the pgBackRest stanza through the TLS front and checks the
vault's lock; these tests catch what it cannot: the front serves the very objects of the plain
endpoint, a client without the sandbox CA is refused, nothing keeps serving after ``stop``, and
``--canary`` breaks what it says it breaks (the default run never runs with ``--canary``).
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from checks.immutability import bucket_verdicts
from drills.processes import S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY, S3Server
from drills.sandbox import history, pgbackrest_repo, vault
from drills.sandbox.history import SandboxProduct
from drills.sandbox.services import SandboxCA
from drills.sandbox.tls_proxy import TlsProxy
from steps.immutability import immutability_verdicts

pytestmark = pytest.mark.integration


def _client(endpoint: str, **extra: Any) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name=S3_REGION,
                        aws_access_key_id=S3_ACCESS_KEY_ID,
                        aws_secret_access_key=S3_SECRET_ACCESS_KEY, **extra)


def _product(root: Path, nights: int) -> SandboxProduct:
    """A product directory holding only SARK dumps and sidecars (what the vault copies) and a repo."""
    anchor = datetime(2026, 12, 3, tzinfo=UTC)
    for night in range(nights):
        taken = anchor - timedelta(days=night) + timedelta(hours=2)
        dump = root / "s3" / history.SARK_PREFIX / taken.strftime(history.SARK_PATTERN)
        dump.parent.mkdir(parents=True, exist_ok=True)
        dump.write_bytes(f"dump {night}".encode())
        (dump.parent / (dump.name + history.CHECKSUM_SUFFIX)).write_text(
            f"{hashlib.sha256(dump.read_bytes()).hexdigest()}  {dump.name}\n", encoding="utf-8")
    for name in ("backup/product/backup.info", "backup/product/20261203-010101F/bundle/1",
                 "backup/product/20261203-010101F_20261203-010109I/bundle/1", "archive/product/archive.info"):
        path = root / "pgbackrest" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(range(256)) * 4)
    return SandboxProduct(root=root, anchor=anchor, built_at=anchor, build_seconds=0.0, cache_hit=True)


def _sark_keys(product: SandboxProduct) -> list[str]:
    """The product's SARK dump and sidecar keys, oldest night first."""
    return sorted(key for key, _ in product.s3_files() if key.startswith(history.SARK_PREFIX))


@pytest.fixture(scope="module")
def front(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Any:
    ca = SandboxCA(tmp_path_factory.mktemp("tls"), now=datetime.now(UTC))
    proxy = TlsProxy(s3_server.port, *ca.issue("s3")).start()
    try:
        yield proxy, ca
    finally:
        proxy.stop()


def test_https_front_serves_the_plain_endpoints_objects(s3_server: S3Server, front: Any) -> None:
    """Written over HTTP, read back over HTTPS (verified against the sandbox CA), and the other way."""
    proxy, ca = front
    plain, tls = _client(s3_server.endpoint_url), _client(proxy.endpoint_url, verify=str(ca.ca_file))
    plain.create_bucket(Bucket="tls-front")
    body = bytes(range(256)) * 2048  # 512 KiB: several TLS records and relay chunks
    plain.put_object(Bucket="tls-front", Key="a/plain", Body=body)
    tls.put_object(Bucket="tls-front", Key="a/tls", Body=body[::-1])
    assert tls.get_object(Bucket="tls-front", Key="a/plain")["Body"].read() == body
    assert plain.get_object(Bucket="tls-front", Key="a/tls")["Body"].read() == body[::-1]
    ranged = tls.get_object(Bucket="tls-front", Key="a/plain", Range="bytes=1000-1999")["Body"].read()
    assert ranged == body[1000:2000]
    listed = tls.list_objects_v2(Bucket="tls-front")["Contents"]
    assert sorted(o["Key"] for o in listed) == ["a/plain", "a/tls"]


def test_https_front_is_refused_without_the_sandbox_ca(front: Any) -> None:
    """The certificate verifies only against the run's CA: on the system store the handshake fails."""
    proxy, _ = front
    context = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        context.wrap_socket(raw, server_hostname="localhost")


def test_stopped_front_serves_nothing(s3_server: S3Server, tmp_path: Path) -> None:
    ca = SandboxCA(tmp_path, now=datetime.now(UTC))
    proxy = TlsProxy(s3_server.port, *ca.issue("s3")).start()
    assert proxy.running
    proxy.stop()
    proxy.stop()  # idempotent
    assert not proxy.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()


def test_vault_is_locked_and_the_canary_vault_is_not(s3_server: S3Server, tmp_path: Path) -> None:
    """The vault passes every immutability check; under --canary it fails, naming its bucket."""
    client = _client(s3_server.endpoint_url)
    product = _product(tmp_path, nights=vault.NIGHTS + 2)
    for canary in (False, True):
        bucket = vault.fill(client, product, canary=canary)
        assert bucket == vault.bucket_name(canary=canary)
        keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
        # The newest week, dumps and sidecars; not the older nights. (The bucket may also hold
        # another sandbox's dumps: moto's state is shared by every test of this process.)
        newest_week = set(_sark_keys(product)[-2 * vault.NIGHTS:])
        assert {key for key, _ in product.s3_files() if key in keys} == newest_week
        spec = vault.store_spec(canary=canary, endpoint_url=s3_server.endpoint_url, region=S3_REGION,
                                access_key_id=S3_ACCESS_KEY_ID, secret_access_key=S3_SECRET_ACCESS_KEY)
        verdicts = immutability_verdicts(spec, days=30, run_id="test")
        failed = [v for v in verdicts if v.outcome == "failed"]
        if not canary:
            assert {v.outcome for v in verdicts} == {"passed"}, [v.message for v in verdicts]
        else:
            assert any(v.id == "immutability.object_lock" and f"'{bucket}' has no Object Lock" in v.message
                       for v in failed), [v.message for v in verdicts]
    # A second sandbox in the same process finds its bucket already there, still locked.
    vault.fill(client, product, canary=False)
    locked = bucket_verdicts(client, vault.BUCKET, "test", days=30)
    assert {v.outcome for v in locked} == {"passed"}


def test_canary_repo_differs_in_exactly_one_file(s3_server: S3Server, tmp_path: Path) -> None:
    """--canary uploads the repo under its own prefix with the newest set's bundle altered, same size."""
    client = _client(s3_server.endpoint_url)
    product = _product(tmp_path, nights=1)
    client.create_bucket(Bucket="pgbr-canary")
    repo = product.pgbackrest_repo
    assert pgbackrest_repo.upload(client, "pgbr-canary", repo, canary=False) == "pgbackrest"
    assert pgbackrest_repo.upload(client, "pgbr-canary", repo, canary=True) == "pgbackrest-canary"
    changed = []
    for name, path in pgbackrest_repo.repo_files(product.pgbackrest_repo):
        good = client.get_object(Bucket="pgbr-canary", Key=f"pgbackrest/{name}")["Body"].read()
        bad = client.get_object(Bucket="pgbr-canary", Key=f"pgbackrest-canary/{name}")["Body"].read()
        assert good == path.read_bytes() and len(bad) == len(good)
        if bad != good:
            changed.append(name)
    assert changed == ["backup/product/20261203-010101F_20261203-010109I/bundle/1"]
