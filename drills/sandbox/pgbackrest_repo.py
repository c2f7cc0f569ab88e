"""The sandbox's pgBackRest stanza: built into a posix repo with the product, served from S3 over TLS.

**Build** (:class:`BuildRepo`, called from :func:`drills.sandbox.history._build`): once the build
cluster has reached the older base backup's night, ``stanza-create`` makes stanza
:data:`STANZA` in a posix repo and the cluster's ``archive_command`` starts pushing to it too
(a generated ``sh`` script: the server user cannot run /root's Python); a full set is taken
then, and an incremental one after the next night's rows. The repo is cached as
``pgbackrest/`` beside the product.

**Run** (:func:`upload`): the repo's files go to the sandbox bucket under :data:`PREFIX`, keyed
by their path in the repo, which is exactly the layout pgBackRest reads from an S3 repo with
``repo1-path=/<PREFIX>``. pgBackRest only speaks HTTPS to S3, so the store points it at the
run's :class:`~drills.sandbox.tls_proxy.TlsProxy` with the sandbox CA (``repo1-storage-ca-file``),
never ``verify-tls=n``.

``--canary`` uploads the repo with one backup file (the newest set's bundle) altered: ``verify``
names it, and the restore fails on its checksum.
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from checks.errors import EnvironmentError_

from ..processes import PostgresServer, copy_tree, hand_to_server_user, server_user_kwargs
from ..targets import StoreSpec

STANZA = "product"
STORE = "pgbackrest"
PREFIX = "pgbackrest"
CANARY_PREFIX = "pgbackrest-canary"
_TIMEOUT_S = 120.0
_UPLOAD_WORKERS = 8


class BuildRepo:
    """pgBackRest beside the sandbox build cluster: its archive hook, stanza and two sets."""

    def __init__(self, build_dir: Path, server: PostgresServer) -> None:
        # Without pgbackrest (an image that only runs fleet plans) the build goes on and the
        # sandbox's pgbackrest store stays empty: its scenario then errors naming the missing tool.
        self.enabled = available()
        self.repo = build_dir / "pgbackrest-repo"
        aux = build_dir / "pgbackrest-aux"
        for path in (self.repo, aux):
            path.mkdir()
            hand_to_server_user(path, mode=0o750)
        self._flag = aux / "stanza-ready"
        self._env = {
            "PATH": "/usr/bin:/bin", "PGBACKREST_REPO1_PATH": str(self.repo),
            "PGBACKREST_LOCK_PATH": f"{aux}/lock", "PGBACKREST_LOG_PATH": f"{aux}/log",
            "PGBACKREST_LOG_LEVEL_FILE": "off", "PGBACKREST_LOG_LEVEL_CONSOLE": "warn",
            "PGBACKREST_PG1_PATH": str(server.datadir), "PGBACKREST_PG1_PORT": str(server.port),
            "PGBACKREST_PG1_SOCKET_PATH": str(server.sockdir), "PGBACKREST_ARCHIVE_TIMEOUT": "30",
            "PGBACKREST_REPO1_BUNDLE": "y", "PGBACKREST_COMPRESS_LEVEL": "1",
            "PGBACKREST_REPO1_RETENTION_FULL": "9",
        }
        self.script = build_dir / "archive-pgbackrest.sh"
        # Until the stanza exists, segments only go to the plain archive (archive-push would fail).
        self.script.write_text(
            "#!/bin/sh\n"
            f"[ -e '{self._flag}' ] || exit 0\n"
            "exec env -i " + " ".join(f"{k}='{v}'" for k, v in self._env.items())
            + f" /usr/bin/pgbackrest --config=/dev/null --stanza={STANZA} archive-push \"$1\"\n",
            encoding="utf-8")
        self.script.chmod(0o755)

    @property
    def archive_hook(self) -> str:
        """What the build cluster's ``archive_command`` runs after its own copy.

        Through ``/bin/sh``: a container's tmpfs ``/tmp`` is mounted noexec, and the archiver of a
        command that cannot execute (126) exits, so pg_basebackup waited for WAL forever.
        """
        return f"/bin/sh {self.script} %p"

    def backup(self) -> None:
        """The first call creates the stanza and takes a full set, later ones an incr (``--start-fast``)."""
        if not self.enabled:
            return
        kind = "incr" if self._flag.exists() else "full"
        if kind == "full":
            self._run("stanza-create")
            self._flag.touch()
        self._run(f"--type={kind}", "--start-fast", "backup")

    def keep(self, into: Path) -> None:
        """The repo into the cache (``cp -a``: the server user must still read it at run time)."""
        copy_tree(self.repo, into, phase="caching the sandbox's pgBackRest repo")

    def _run(self, *args: str) -> None:
        command = ["/usr/bin/pgbackrest", "--config=/dev/null", f"--stanza={STANZA}", *args]
        try:
            proc = subprocess.run(command, env=self._env, capture_output=True, text=True, check=False,
                                  timeout=_TIMEOUT_S, **server_user_kwargs())
        except subprocess.TimeoutExpired:
            proc = subprocess.CompletedProcess(command, -1, "", f"timed out after {_TIMEOUT_S:.0f} s")
        if proc.returncode != 0:
            raise EnvironmentError_(
                f"building the sandbox's pgBackRest stanza failed: pgbackrest {args[-1]} exited with status "
                f"{proc.returncode}: {(proc.stdout + proc.stderr).strip()[-2000:]}",
                hint="the sandbox build needs pgbackrest (apt-get install pgbackrest); remove the cache "
                     "directory and retry")


def available() -> bool:
    """Whether pgbackrest is installed (bootstrap installs it in run and test modes)."""
    return shutil.which("pgbackrest", path="/usr/bin:/bin") is not None


def repo_files(repo: Path) -> list[tuple[str, Path]]:
    """(path in the repo, file) for every file of a cached repo, sorted."""
    return sorted((path.relative_to(repo).as_posix(), path) for path in repo.rglob("*") if path.is_file())


def canary_file(repo: Path) -> str:
    """The repo file ``--canary`` alters: the newest set's first bundle (its files' checksums fail)."""
    bundles = sorted(name for name, _ in repo_files(repo)
                     if "/bundle/" in name and name.startswith("backup/"))
    if not bundles and not any(repo.iterdir()):
        return ""  # built without pgbackrest: nothing to break
    if not bundles:
        raise EnvironmentError_(f"the sandbox's pgBackRest repo {repo} holds no bundle to alter",
                                hint="remove the sandbox cache directory and retry")
    newest = max(name.split("/")[2] for name in bundles)
    return next(name for name in bundles if name.split("/")[2] == newest)


def upload(client: Any, bucket: str, repo: Path, *, canary: bool) -> str:
    """The cached repo into ``bucket`` under its prefix; returns the prefix (``client``: boto3 S3)."""
    prefix = CANARY_PREFIX if canary else PREFIX
    altered = canary_file(repo) if canary else None

    def put(item: tuple[str, Path]) -> None:
        name, path = item
        body = path.read_bytes()
        if name == altered:  # same size, other bytes: only a checksum can tell
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1:]
        client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=body)

    with ThreadPoolExecutor(max_workers=_UPLOAD_WORKERS) as pool:
        list(pool.map(put, repo_files(repo)))
    return prefix


def store_spec(*, bucket: str, canary: bool, endpoint: str, port: int, ca_file: Path, region: str,
               access_key_id: str, secret_access_key: str) -> StoreSpec:
    """The ``pgbackrest`` store: stanza :data:`STANZA` in an S3 repo reached over TLS on loopback."""
    options = {
        "repo1-type": "s3", "repo1-path": f"/{CANARY_PREFIX if canary else PREFIX}",
        "repo1-s3-bucket": bucket,
        "repo1-s3-endpoint": endpoint, "repo1-storage-port": str(port), "repo1-s3-region": region,
        "repo1-s3-uri-style": "path", "repo1-storage-ca-file": str(ca_file),
        "repo1-s3-key": access_key_id, "repo1-s3-key-secret": secret_access_key,
        "job-retry": "0",  # a damaged file fails at once (pgbackrest retries after 15 s by default)
    }
    return StoreSpec(name=STORE, url=f"pgbackrest:{STANZA}@repo1", kind="pgbackrest", stanza=STANZA, repo=1,
                     options=tuple(sorted(options.items())))


def readable_ca(ca_file: Path, into: Path) -> Path:
    """A copy of the CA certificate the server user can read (pgbackrest runs as that user)."""
    into.mkdir(mode=0o755, parents=True, exist_ok=True)
    copy = into / "sandbox-ca.pem"
    shutil.copyfile(ca_file, copy)
    copy.chmod(0o644)
    return copy
