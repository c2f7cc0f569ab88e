"""Backup stores: list the backups in an S3 prefix or a local directory, and read them.

:func:`open_store` turns a :class:`~drills.targets.StoreSpec` into a
:class:`BackupStore`. Opening does no I/O; the first ``list()`` does.
Failures are drillbook errors that name the store's URL and never its
secret key:

- the bucket or directory does not exist → :class:`NoBackupFound`;
- anything else (refused connection, timeout, bad credentials, permission
  denied, a read cut short) → :class:`StoreUnreachable`.

Keys are relative to the store root: for S3 the full object key (the prefix
included, as S3 lists it), for a directory the path below it with ``/``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast
from urllib.parse import urlsplit, urlunsplit

from checks import redact
from checks.backups import BackupObject
from checks.errors import NoBackupFound, StoreUnreachable

from .targets import StoreSpec

# An unreachable endpoint must fail in seconds, not in botocore's default minute:
# a 3 s connect timeout and two attempts in all (≈6–7 s worst case for a blackholed
# address; a refused connection fails at once).
CONNECT_TIMEOUT_S = 3.0
# Generous: a large object may stall briefly mid-download without being lost.
READ_TIMEOUT_S = 60.0
MAX_ATTEMPTS = 2
# Sidecars are a few lines; anything larger is not a checksum file.
MAX_SIDECAR_BYTES = 64 * 1024

_MISSING_BUCKET = {"NoSuchBucket"}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}


class BackupStore(Protocol):
    """Where a drill finds backups. Implementations: :class:`S3Store`, :class:`DirectoryStore`."""

    def list(self) -> list[BackupObject]:
        """Every object in the store (sidecars included: callers tell them apart)."""
        ...

    def open(self, obj: BackupObject) -> BinaryIO:
        """A stream of the object's bytes, to read in chunks and close."""
        ...

    def read_text(self, key: str) -> str | None:
        """A small text object (a checksum sidecar), or None when it does not exist."""
        ...

    def describe(self) -> str:
        """Where the store is, for messages: a URL, never credentials."""
        ...


def open_store(spec: StoreSpec) -> BackupStore:
    """The store a spec names: S3 for ``s3://`` URLs, else a local directory."""
    if spec.is_s3:
        return S3Store(spec)
    return DirectoryStore(spec)


class S3Store:
    """Backups under a prefix of an S3 bucket (AWS, MinIO, moto, ...)."""

    def __init__(self, spec: StoreSpec, *, read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.spec = spec
        self.read_timeout_s = read_timeout_s  # a listing only (drillbook doctor) needs no minute
        self.bucket = spec.bucket
        self.prefix = spec.prefix
        self._secret = spec.secret_access_key
        # Whatever leaves the run (logs, JUnit, evidence) is scrubbed of it too.
        redact.register(self._secret)
        self._client = self._make_client()

    def _make_client(self) -> Any:
        return make_client(self.spec, read_timeout_s=self.read_timeout_s)

    @property
    def client(self) -> Any:
        """The boto3 S3 client (read-only users: checks/immutability.py)."""
        return self._client

    def describe(self) -> str:
        """``s3://bucket/prefix at http://endpoint`` (user info stripped from the endpoint)."""
        where = f"s3://{self.bucket}/{self.prefix}"
        if self.spec.endpoint_url:
            return f"{where} at {_without_userinfo(self.spec.endpoint_url)}"
        return f"{where} (region {self.spec.region})"

    def list(self) -> list[BackupObject]:
        """Every object under the prefix, following pagination (1,000 keys a page)."""
        from botocore.exceptions import BotoCoreError, ClientError

        objects: list[BackupObject] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    objects.append(BackupObject(key=item["Key"], size=int(item["Size"]),
                                                last_modified=_as_utc(item["LastModified"])))
        except ClientError as exc:
            raise self._client_error(exc, "list") from None
        except BotoCoreError as exc:
            raise self._unreachable(exc, "list") from None
        return objects

    def open(self, obj: BackupObject) -> BinaryIO:
        """The object's body as a stream; read errors surface as :class:`StoreUnreachable`."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.get_object(Bucket=self.bucket, Key=obj.key)
        except ClientError as exc:
            raise self._client_error(exc, f"read {obj.key}", key=obj.key) from None
        except BotoCoreError as exc:
            raise self._unreachable(exc, f"read {obj.key}") from None
        return cast("BinaryIO", _GuardedStream(response["Body"], self, obj.key))

    def read_text(self, key: str) -> str | None:
        """A sidecar's text, or None when the key does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            try:
                data: bytes = body.read(MAX_SIDECAR_BYTES)
            finally:
                body.close()
        except ClientError as exc:
            if _error_code(exc) in _MISSING_KEY:
                return None
            raise self._client_error(exc, f"read {key}") from None
        except BotoCoreError as exc:
            raise self._unreachable(exc, f"read {key}") from None
        return data.decode("utf-8", errors="replace")

    # -- error translation -------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """Error text without the secret key, whatever library produced it."""
        if self._secret:
            text = text.replace(self._secret, redact.MASK)
        return redact.redact(text)

    def _doing(self, action: str) -> str:
        """``list s3://b/p/ at URL`` or ``read KEY in s3://b/p/ at URL``."""
        return f"list {self.describe()}" if action == "list" else f"{action} in {self.describe()}"

    def _client_error(self, exc: Exception, action: str, *, key: str | None = None) -> Exception:
        code = _error_code(exc)
        if code in _MISSING_BUCKET:
            return NoBackupFound(
                f"cannot {self._doing(action)}: bucket {self.bucket!r} does not exist",
                url=self.describe(), hint="check the bucket name in the store's URL",
            )
        if key is not None and code in _MISSING_KEY:
            return NoBackupFound(
                f"cannot {self._doing(action)}: the object is gone "
                "(deleted after it was listed?)", url=self.describe(), key=key,
            )
        hint = ("check the access key id and secret for this store"
                if code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"}
                else None)
        return StoreUnreachable(
            f"cannot {self._doing(action)}: {self._scrub(str(exc))}",
            url=self.describe(), code=code, hint=hint,
        )

    def _unreachable(self, exc: Exception, action: str) -> StoreUnreachable:
        return StoreUnreachable(
            f"cannot {self._doing(action)}: {type(exc).__name__}: {self._scrub(str(exc))}",
            url=self.describe(),
        )


class _GuardedStream(io.RawIOBase):
    """An S3 ``StreamingBody`` whose read errors become :class:`StoreUnreachable`.

    A connection reset or a short body half-way through a 10 GB download is
    "could not read the store", not a bug in the drill.
    """

    def __init__(self, body: Any, store: S3Store, key: str) -> None:
        super().__init__()
        self._body = body
        self._store = store
        self._key = key

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        from botocore.exceptions import BotoCoreError

        try:
            data: bytes = self._body.read(None if size is None or size < 0 else size)
        except (BotoCoreError, OSError) as exc:
            raise self._store._unreachable(exc, f"read {self._key}") from None
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class DirectoryStore:
    """Backups in a local directory tree; the file's mtime stands for LastModified."""

    def __init__(self, spec: StoreSpec) -> None:
        self.spec = spec
        self.root = spec.path

    def describe(self) -> str:
        """The directory's path."""
        return str(self.root)

    def list(self) -> list[BackupObject]:
        """Every regular file below the root, recursively, sorted by key."""
        if not self.root.exists():
            raise NoBackupFound(f"backup directory {self.root} does not exist", url=str(self.root),
                                hint="check the store's path, and that the backup volume is mounted")
        if not self.root.is_dir():
            raise StoreUnreachable(f"backup store {self.root} is not a directory", url=str(self.root))
        objects: list[BackupObject] = []
        try:
            for path in self._walk():
                stat = path.stat()
                objects.append(BackupObject(
                    key=path.relative_to(self.root).as_posix(), size=stat.st_size,
                    last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
                ))
        except OSError as exc:
            raise StoreUnreachable(f"cannot list {self.root}: {exc.strerror or exc} "
                                   f"({exc.filename or self.root})", url=str(self.root)) from None
        return sorted(objects, key=lambda o: o.key)

    def _walk(self) -> Iterator[Path]:
        def fail(exc: OSError) -> None:
            raise exc  # a directory we cannot read would silently hide backups

        for top, _dirs, files in os.walk(self.root, onerror=fail):
            for name in files:
                path = Path(top) / name
                if path.is_file():  # skips sockets, FIFOs and dangling links
                    yield path

    def open(self, obj: BackupObject) -> BinaryIO:
        """The file, opened for reading."""
        path = self._inside(obj.key)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise NoBackupFound(f"backup {obj.key} is gone from {self.root} (deleted after it was listed?)",
                                url=str(self.root), key=obj.key) from None
        except OSError as exc:
            raise StoreUnreachable(f"cannot read {path}: {exc.strerror or exc}",
                                   url=str(self.root), key=obj.key) from None

    def read_text(self, key: str) -> str | None:
        """A sidecar's text, or None when there is no such file."""
        path = self._inside(key)
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_SIDECAR_BYTES)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StoreUnreachable(f"cannot read {path}: {exc.strerror or exc}",
                                   url=str(self.root), key=key) from None
        return data.decode("utf-8", errors="replace")

    def _inside(self, key: str) -> Path:
        """The file for a key, refusing keys that climb out of the store (``../``)."""
        path = self.root / key
        if ".." in Path(key).parts or Path(key).is_absolute():
            raise StoreUnreachable(f"key {key!r} points outside the store {self.root}",
                                   url=str(self.root), key=key)
        return path


def make_client(spec: StoreSpec, *, read_timeout_s: float = READ_TIMEOUT_S, service: str = "s3",
                credentials: dict[str, str] | None = None) -> Any:
    """A boto3 client for the store's endpoint: its keys, or ``credentials`` (an assumed role's)."""
    # Imported here: boto3 costs ~0.3 s to import and a run without S3 stores never needs it.
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=read_timeout_s,
        retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        # Path-style works with every S3 implementation on a custom endpoint.
        s3={"addressing_style": "path"} if spec.endpoint_url and service == "s3" else None,
    )
    keys: dict[str, str | None] = {"aws_access_key_id": spec.access_key_id,
                                   "aws_secret_access_key": spec.secret_access_key}
    if credentials:
        keys = {**credentials}
    return boto3.session.Session().client(
        service, endpoint_url=spec.endpoint_url, region_name=spec.region, config=config, **keys)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
