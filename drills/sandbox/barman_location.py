"""The sandbox's Barman cloud location: a real ``barman-cloud-backup`` of the build cluster and its WAL.

At build time (:func:`drills.sandbox.history._build`) a :class:`BarmanBuild` serves moto's S3 on
loopback for the build only, ``barman-cloud-backup`` backs up the build cluster after its newest
nightly backup, and once the cluster has stopped ``barman-cloud-wal-archive`` uploads the archive
from that backup's start on (the build cluster archives with ``cp``: barman's archiver per segment
would slow every build). The resulting objects are kept in the cache under ``s3/barman/…``, so each
run's upload of the product's bucket (:func:`drills.sandbox.provision.upload_backups`) puts them at
``s3://sandbox-backups/barman/product/…``: the ``barman-cloud`` store (``kind = "barman-cloud"``).
The build's bucket is emptied and removed (moto's state is shared by the whole process).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

from checks.errors import EnvironmentError_
from checks.pitr import SEGMENT

from ..processes import PostgresServer, S3Server, server_user_kwargs
from ..targets import StoreSpec

STORE = "barman-cloud"
PREFIX = "barman"  # under the sandbox bucket: barman's "source URL" path
SERVER = "product"  # barman's server name
_KEY, _SECRET, _REGION = "sandbox-barman-build", "sandbox-barman-build-key", "us-east-1"  # moto accepts any
_TIMEOUT_S = 120
_TOOL_PATH = "/usr/local/bin:/usr/bin:/bin"
_ARCHIVERS = 4  # barman-cloud-wal-archive is a Python start-up per segment: a few at once
_HINT = ("install barman's cloud client (apt-get install barman-cli-cloud; ./bootstrap does), "
         "then remove the sandbox cache directory and retry")


def store_spec(*, bucket: str, endpoint_url: str, access_key_id: str, secret_access_key: str,
               region: str) -> StoreSpec:
    """The sandbox's ``barman-cloud`` store on the sandbox bucket."""
    return StoreSpec(name=STORE, url=f"s3://{bucket}/{PREFIX}", kind="barman-cloud", server=SERVER,
                     endpoint_url=endpoint_url, region=region, access_key_id=access_key_id,
                     secret_access_key=secret_access_key)


def available() -> bool:
    """Whether barman's cloud client is installed (bootstrap installs it in run and test modes)."""
    return all(shutil.which(name, path=_TOOL_PATH)
               for name in ("barman-cloud-backup", "barman-cloud-wal-archive"))


def _tool(name: str) -> str:
    found = shutil.which(name, path=_TOOL_PATH)
    if found is None:
        raise EnvironmentError_(f"building the sandbox's Barman location needs {name}, which is not "
                                "installed", hint=_HINT)
    return found


class BarmanBuild:
    """One build's S3 and barman calls; :meth:`close` always (it stops the S3 server)."""

    def __init__(self, s3_dir: Path) -> None:
        self.s3_dir = s3_dir
        self.bucket = f"barman-build-{uuid.uuid4().hex[:8]}"
        self.first_segment = ""
        self._s3: S3Server | None = None
        self._client: Any = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{PREFIX}"

    def _env(self) -> dict[str, str]:
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "AWS_ACCESS_KEY_ID": _KEY,
                "AWS_SECRET_ACCESS_KEY": _SECRET, "AWS_DEFAULT_REGION": _REGION}

    def backup(self, server: PostgresServer) -> None:
        """``barman-cloud-backup -z`` of the running build cluster (as its OS user: it reads PGDATA).

        Without barman's cloud client (an image that only runs fleet plans) nothing is taken and the
        sandbox's barman-cloud store stays empty: its scenario then errors naming the missing tool.
        """
        import boto3

        if not available():
            return

        backup_tool = _tool("barman-cloud-backup")
        _tool("barman-cloud-wal-archive")  # both now, before the build goes on without them
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
        self.first_segment = str(row[0]) if row else ""
        self._s3 = S3Server()
        self._s3.start()
        self._client = boto3.client("s3", endpoint_url=self._s3.endpoint_url, region_name=_REGION,
                                    aws_access_key_id=_KEY, aws_secret_access_key=_SECRET)
        self._client.create_bucket(Bucket=self.bucket)
        self._run([backup_tool, "--endpoint-url", self._s3.endpoint_url, "-h", "127.0.0.1", "-p",
                   str(server.port), "-U", "postgres", "-z", "--immediate-checkpoint", self.url, SERVER],
                  as_server=True)

    def archive(self, wal_dir: Path) -> None:
        """Upload the WAL from the backup's start on with barman's archiver, then keep every object."""
        if not available():
            return
        if self._s3 is None or self._client is None:
            raise EnvironmentError_("the sandbox's Barman backup was not taken", hint=_HINT)
        archiver = _tool("barman-cloud-wal-archive")
        names = sorted(path.name for path in wal_dir.iterdir()
                       if path.name[:24] >= self.first_segment and SEGMENT.fullmatch(path.name[:24])
                       and not path.name.endswith(".part"))
        commands = [[archiver, "--endpoint-url", self._s3.endpoint_url, self.url, SERVER, str(wal_dir / name)]
                    for name in names]
        with ThreadPoolExecutor(max_workers=_ARCHIVERS) as pool:
            list(pool.map(self._run, commands))
        self._keep()

    def _keep(self) -> None:
        """Every object of the build bucket into ``s3_dir`` under its key (``barman/product/…``)."""
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        for item in (item for page in pages for item in page.get("Contents", [])):
            path = self.s3_dir / item["Key"]
            path.parent.mkdir(parents=True, exist_ok=True)
            self._client.download_file(self.bucket, item["Key"], str(path))

    def close(self) -> None:
        """Empty and remove the build bucket, stop the S3 server."""
        if self._client is not None:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
            for item in (item for page in pages for item in page.get("Contents", [])):
                self._client.delete_object(Bucket=self.bucket, Key=item["Key"])
            self._client.delete_bucket(Bucket=self.bucket)
            self._client.close()
            self._client = None
        if self._s3 is not None:
            self._s3.stop()
            self._s3 = None

    def _run(self, command: list[str], *, as_server: bool = False) -> None:
        try:
            proc = subprocess.run(command, env=self._env(), capture_output=True, text=True, check=False,
                                  timeout=_TIMEOUT_S, stdin=subprocess.DEVNULL,
                                  **(server_user_kwargs() if as_server else {}))
        except subprocess.TimeoutExpired:
            raise EnvironmentError_(f"building the sandbox's Barman location: {Path(command[0]).name} did "
                                    f"not finish within {_TIMEOUT_S} s", hint=_HINT) from None
        if proc.returncode != 0:
            said = proc.stderr.strip()[-2000:]
            raise EnvironmentError_(f"building the sandbox's Barman location: {Path(command[0]).name} exited "
                                    f"with status {proc.returncode}: {said}", hint=_HINT)


def break_for_canary(client: Any, bucket: str) -> str | None:
    """``--canary``: delete the WAL object after the newest barman backup's start (never the last
    segment, which would only shorten the archive); the segment's name, or None if too few."""
    prefix = f"{PREFIX}/{SERVER}/wals/"
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    names = {key.rsplit("/", 1)[-1]: key for key in keys}
    starts = sorted(name[:24] for name in names if name.endswith(".backup"))
    after = sorted(name for name in names if SEGMENT.fullmatch(name) and starts and name > starts[-1])
    if len(after) < 2:
        return None
    missing: str = after[0]
    client.delete_object(Bucket=bucket, Key=names[missing])
    return missing
