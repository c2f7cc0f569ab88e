"""The runs location of one run group: a directory or ``s3://bucket/prefix/<group>/``.

FLEET.md §4.4, keys relative to the group::

    plan.json                     create-only: the first planner wins, the others read it
    shards/<i>/<attempt>/…        one attempt's files (results.json, junit.xml, report.html)
    shards/<i>.commit.json        create-only: names the attempt and the SHA-256 of its files
    merge.claim                   create-only: which shard merges
    results.json                  create-only: the merged run; then junit.xml, report.html

Create-only is the whole protocol: on S3 a ``PutObject`` with ``If-None-Match: *``
(412 PreconditionFailed: the key exists; 409 ConditionalRequestConflict: a
concurrent write to the key is in flight, so we look again and retry); in a
directory a complete temporary file hard-linked to its name (``link`` fails
when the name exists and never replaces it, unlike ``rename``), so a reader
never sees half a file. Objects written here stay small (commit objects under
64 KiB): moto's conditional writes hold for small bodies only (FIELD-NOTES.md).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from checks.errors import ConfigError, DrillbookError
from checks.files import write_atomic

PLAN = "plan.json"
CLAIM = "merge.claim"
MERGED = ("results.json", "junit.xml", "report.html")
MAX_COMMIT_BYTES = 64 * 1024
_CONFLICT_RETRIES = 8  # 409s in a row before giving up: each means another write of the key is in flight
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_KEY_PART = re.compile(r"^[A-Za-z0-9._-]+$")


class RunsError(DrillbookError):
    """The runs location could not be read or written: an infrastructure failure (retry)."""

    default_hint = ("check the runs URL, and for s3:// the endpoint_url and credentials of [ledger] in "
                    "drillbook.toml (or AWS_ENDPOINT_URL and the AWS_* variables)")


def commit_key(index: int) -> str:
    return f"shards/{index}.commit.json"


def attempt_key(index: int, attempt: str, name: str) -> str:
    return f"shards/{index}/{attempt}/{name}"


def check_key_part(value: str, *, what: str) -> str:
    """An attempt id or group name goes into keys and paths: plain characters only."""
    if not _KEY_PART.fullmatch(value) or value in (".", ".."):
        raise ConfigError(f"{what} {value!r} may use only letters, digits, '.', '_' and '-'", key=what)
    return value


class Runs(Protocol):
    """One run group's storage; keys are relative to the group."""

    group: str

    def url(self, key: str = "") -> str: ...

    def put_create_only(self, key: str, data: bytes) -> bool:
        """Create ``key`` unless it exists: True when this call created it."""
        ...

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such key."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, sorted."""
        ...


def split_url(url: str) -> tuple[str, str]:
    """``<runs>/<group>/`` or ``<runs>/<group>/plan.json`` -> (group url with a final '/', group)."""
    text = url.removesuffix(PLAN).rstrip("/")
    group = text.rsplit("/", 1)[-1]
    if not _GROUP.fullmatch(group) or group == "ledger":
        raise ConfigError(f"{url!r} does not name a run group (<runs>/<group>/ or <runs>/<group>/plan.json)",
                          key="url", hint="a group is the last folder of the URL: letters, digits, . _ -")
    return text + "/", group


def open_runs(url: str, s3_options: Mapping[str, str] | None = None) -> Runs:
    """The group's storage for a directory or an ``s3://`` URL (options as ``[ledger]``'s)."""
    base, group = split_url(url)
    if base.startswith("s3://"):
        from drillbook.audit import s3_client

        bucket, _, prefix = base[5:].partition("/")
        if not bucket:
            raise ConfigError(f"{url!r}: an S3 runs location looks like s3://bucket/prefix/<group>/",
                              key="url")
        return S3Runs(group, bucket, prefix, s3_client(dict(s3_options or {})),
                      endpoint=(s3_options or {}).get("endpoint_url"))
    return DirRuns(group, Path(base.removeprefix("file://")))


class DirRuns:
    """A group in a local (or shared, POSIX) directory."""

    def __init__(self, group: str, root: Path) -> None:
        self.group = group
        self.root = root.resolve()

    def __repr__(self) -> str:
        return f"DirRuns({str(self.root)!r})"

    def url(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root) + "/"

    def _path(self, key: str) -> Path:
        return self.root / key

    def put_create_only(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.parent / f".tmp-{path.name}-{secrets.token_hex(6)}"
            with temporary.open("xb") as handle:  # O_CREAT|O_EXCL: our own fresh file
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise RunsError(f"cannot write {path}: {exc.strerror}", path=str(path)) from exc
        try:
            os.link(temporary, path)  # atomic, and fails if the name exists: never replaces
        except FileExistsError:
            return False
        except OSError as exc:
            raise RunsError(f"cannot create {path}: {exc.strerror}", path=str(path)) from exc
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink()
        with contextlib.suppress(OSError):
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return True

    def put(self, key: str, data: bytes) -> None:
        write_atomic(self._path(key), data, phase=f"writing {key} of run group {self.group}")

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            path = self._path(key)
            raise RunsError(f"cannot read {path}: {exc.strerror}", path=str(path)) from exc

    def list(self, prefix: str = "") -> list[str]:
        start = self._path(prefix) if prefix.endswith("/") or not prefix else self._path(prefix).parent
        if not start.is_dir():
            return []
        keys = []
        for path in start.rglob("*"):
            if path.is_file() and not path.name.startswith(".tmp-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)


class S3Runs:
    """A group under an S3 prefix; ``client`` is a boto3 S3 client."""

    def __init__(self, group: str, bucket: str, prefix: str, client: Any, *, endpoint: str | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.group = group
        self.bucket = bucket
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.client = client
        self.endpoint = endpoint
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"S3Runs({self.url()!r})"

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def _fail(self, action: str, key: str, exc: Exception) -> RunsError:
        where = self.url(key) + (f" at {self.endpoint}" if self.endpoint else "")
        return RunsError(f"cannot {action} {where}: {_code(exc) or type(exc).__name__}", url=self.url(key))

    def put_create_only(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(_CONFLICT_RETRIES):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data, IfNoneMatch="*")
            except (ClientError, BotoCoreError) as exc:
                code = _code(exc)
                if code in ("PreconditionFailed", "412"):
                    return False
                if code not in ("ConditionalRequestConflict", "409"):
                    raise self._fail("write", key, exc) from exc
                # A concurrent write of the key is in flight: whoever completes owns it. Look, then retry.
                if self.get(key) is not None:
                    return False
                self._sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + secrets.randbelow(1000) / 1000))
                continue
            return True
        raise RunsError(f"could not create {self.url(key)}: {_CONFLICT_RETRIES} conflicting writes in a row",
                        url=self.url(key))

    def put(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("write", key, exc) from exc

    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._fail("read", key, exc) from exc
        return body

    def list(self, prefix: str = "") -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        keys: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
            if token:
                kwargs["ContinuationToken"] = token
            try:
                page = self.client.list_objects_v2(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise self._fail("list", prefix, exc) from exc
            keys.extend(obj["Key"][len(self.prefix):] for obj in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = page.get("NextContinuationToken")


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


@dataclass(frozen=True)
class Commit:
    """``shards/<i>.commit.json``: which attempt of a bin counts, and its files' SHA-256."""

    index: int
    attempt: str
    files: Mapping[str, str]  # name in the attempt dir -> sha256 hex
    details: Mapping[str, str]  # host, pod, started_at, finished_at: for environment_details

    def to_bytes(self) -> bytes:
        from .plan import canonical_json

        data = canonical_json({"index": self.index, "attempt": self.attempt, "files": dict(self.files),
                               "details": dict(self.details)})
        if len(data) >= MAX_COMMIT_BYTES:
            raise RunsError(f"the commit of shard {self.index} is {len(data)} bytes "
                            f"(limit {MAX_COMMIT_BYTES})",
                            hint="this is a drillbook bug: commits name a few files only")
        return data

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str) -> Commit:
        from checks.strict_json import loads_strict

        try:
            raw = loads_strict(data.decode("utf-8"))
            commit = cls(index=int(raw["index"]), attempt=check_key_part(str(raw["attempt"]), what="attempt"),
                         files={str(k): str(v) for k, v in dict(raw["files"]).items()},
                         details={str(k): str(v) for k, v in dict(raw["details"]).items()})
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, OverflowError, ConfigError) as exc:
            raise MergeInputError(f"{where}: not a shard commit ({exc})", url=where) from exc
        if any(not _KEY_PART.fullmatch(name) for name in commit.files):
            raise MergeInputError(f"{where}: a committed file name is not a plain name", url=where)
        return commit


class MergeInputError(DrillbookError):
    """A committed object is malformed or does not match its SHA-256: the merge cannot trust it."""

    default_hint = "the runs location was edited or damaged; re-run the shard's index to commit again"


def read_commits(runs: Runs, bins: int) -> dict[int, Commit]:
    """Every ``shards/<i>.commit.json`` with 0 <= i < bins (others are ignored: not of this plan)."""
    found: dict[int, Commit] = {}
    for key in runs.list("shards/"):
        match = re.fullmatch(r"shards/(\d+)\.commit\.json", key)
        if match is None or int(match.group(1)) >= bins:
            continue
        data = runs.get(key)
        if data is None:
            continue
        commit = Commit.from_bytes(data, where=runs.url(key))
        if commit.index != int(match.group(1)):
            raise MergeInputError(f"{runs.url(key)} names index {commit.index}", url=runs.url(key))
        found[commit.index] = commit
    return found
