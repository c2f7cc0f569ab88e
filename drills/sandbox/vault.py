"""The sandbox's immutable copy: a bucket with S3 Object Lock holding the last week of SARK dumps.

The bucket :data:`BUCKET` is created with Object Lock (which turns versioning on) and a default
COMPLIANCE retention of :data:`RETENTION_DAYS` days, then takes a copy of the newest
:data:`NIGHTS` ``pg_dump -Fc`` dumps and their ``.sha256`` sidecars under the same keys as in the
main bucket: the ``vault`` store (``kind = "dump"``) the immutability steps read
(docs/immutable-backups.md). Each object is locked by the bucket's default at upload.

``--canary`` creates the bucket without Object Lock (another name, :data:`CANARY_BUCKET`: moto's
state is shared by every sandbox of a process, and a locked bucket can never be unlocked), so the
immutability scenario fails naming it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..targets import StoreSpec
from . import history
from .history import SandboxProduct

STORE = "vault"
BUCKET = "sandbox-vault"
CANARY_BUCKET = "sandbox-vault-canary"
RETENTION_DAYS = 35
NIGHTS = 7
_UPLOAD_WORKERS = 4


def bucket_name(*, canary: bool) -> str:
    """The vault bucket of a normal or a ``--canary`` sandbox."""
    return CANARY_BUCKET if canary else BUCKET


def fill(client: Any, product: SandboxProduct, *, canary: bool) -> str:
    """Create the vault bucket (locked unless ``canary``) and copy the newest dumps into it."""
    from botocore.exceptions import ClientError

    bucket = bucket_name(canary=canary)
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError:  # not there yet: made here, locked before the first object goes in
        if canary:
            client.create_bucket(Bucket=bucket)
        else:
            client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
            client.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": RETENTION_DAYS}}})
    # else: moto's state outlives a sandbox in the same process, and a locked bucket stays as made
    dumps = sorted((key, path) for key, path in product.s3_files() if key.startswith(history.SARK_PREFIX)
                   and not key.endswith(history.CHECKSUM_SUFFIX))[-NIGHTS:]
    items = [item for key, path in dumps
             for item in ((key, path), (key + history.CHECKSUM_SUFFIX,
                                        path.with_name(path.name + history.CHECKSUM_SUFFIX)))]

    def put(item: tuple[str, Any]) -> None:
        key, path = item
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())

    with ThreadPoolExecutor(max_workers=_UPLOAD_WORKERS) as pool:
        list(pool.map(put, items))
    return bucket


def store_spec(*, canary: bool, endpoint_url: str, region: str, access_key_id: str,
               secret_access_key: str) -> StoreSpec:
    """The ``vault`` store: the locked copy of SARK's custom-format dumps."""
    return StoreSpec(name=STORE, url=f"s3://{bucket_name(canary=canary)}/{history.SARK_PREFIX}",
                     key_pattern=history.SARK_PATTERN, endpoint_url=endpoint_url, region=region,
                     access_key_id=access_key_id, secret_access_key=secret_access_key,
                     checksum_suffix=history.CHECKSUM_SUFFIX)
