"""Integration fixtures: one local sandbox (real loopback servers) shared by the session."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from checks.errors import EnvironmentError_
from drills import pgtools
from drills.local import LocalEnvironment, LocalScratch
from drills.processes import S3Server
from drills.targets import PostgresTarget
from tests.support.engine import pointed_at_test_engine
from tests.support.hostile import (
    cluster_fingerprint,
    reachable_marker_dir,
    running_clients,
    subject_fingerprint,
)


@pytest.fixture(scope="session")
def local_env(sandbox_xdg_cache: Path) -> Iterator[LocalEnvironment]:
    """A started :class:`drills.local.LocalEnvironment`, closed at the end of the session.

    Its product cache lives in a session temp dir: built once here, reused by
    every later start in the same session (``local_env.cache_dir``).
    """
    try:
        bindir = pgtools.bindir()
    except EnvironmentError_ as exc:
        pytest.skip(reason=f"PostgreSQL server binaries are not installed: {exc}")
    if not (Path(bindir) / "initdb").exists():
        pytest.skip(reason=f"PostgreSQL's initdb is missing from {bindir}")
    if shutil.which("redis-server") is None:
        pytest.skip(reason="redis-server is not installed (Debian package `redis-server`)")

    # The same cache `drillbook` subprocesses get through XDG_CACHE_HOME (tests/conftest.py).
    env = LocalEnvironment.start(cache_dir=sandbox_xdg_cache / "drillbook")
    try:
        yield env
    finally:
        env.close()


@pytest.fixture(scope="module")
def on_test_engine() -> Iterator[None]:
    """DOCKER_HOST names the test engine while a docker module runs (bootstrap exports it apart)."""
    with pointed_at_test_engine():
        yield


@pytest.fixture(scope="module")
def docker_client(on_test_engine: None) -> Iterator[Any]:
    """A docker SDK client on the test engine, closed after the module."""
    import docker

    engine = docker.from_env(timeout=60)
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture(scope="session")
def marker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where hostile payloads would leave their marker files (reachable by the server's OS user)."""
    return reachable_marker_dir(tmp_path_factory.mktemp("markers"))


@pytest.fixture
def unchanged(local_env: LocalEnvironment, marker_dir: Path) -> Iterator[Path]:
    """Yields a marker path; afterwards proves nothing outside the drill's own database changed.

    The payload would create the marker; the scratch and subject clusters' catalogs and the
    subject's data must be as before, and no database or client process of the drill is left.
    """
    if local_env.products is not None:
        local_env.products.ready()  # its seeding creates databases in the subject cluster
    scratch = local_env.scratch_postgres()
    scratch_admin = scratch.server.dsn("postgres")

    def state() -> tuple[Any, ...]:
        return (cluster_fingerprint(scratch_admin), subject_fingerprint(local_env), scratch.databases())

    before = state()
    marker = marker_dir / f"marker-{time.monotonic_ns()}"
    yield marker
    assert not marker.exists(), f"the payload ran: {marker} exists"
    after = state()
    assert after[0] == before[0], "the scratch cluster changed outside the drill's database"
    assert after[1] == before[1], "the subject changed"
    assert after[2] == before[2], "the drill left a scratch database behind"
    assert running_clients() == [], "a psql or pg_restore of the drill is still running"


Fresh = Callable[[str], PostgresTarget]


def _cluster(cache: Path) -> Iterator[LocalScratch]:
    try:
        cluster = LocalScratch.start(cache_dir=cache / "drillbook")
    except EnvironmentError_ as exc:
        pytest.skip(reason=f"PostgreSQL server binaries are not usable here: {exc}")
    try:
        yield cluster
    finally:
        cluster.close()


def _databases(cluster: LocalScratch) -> Iterator[Fresh]:
    made: list[PostgresTarget] = []

    def make(purpose: str) -> PostgresTarget:
        target = cluster.fresh_database(purpose)
        made.append(target)
        return target

    yield make
    for target in made:
        cluster.drop(target)


@pytest.fixture(scope="module")
def scratch_cluster(sandbox_xdg_cache: Path) -> Iterator[LocalScratch]:
    """A throwaway PostgreSQL of the module's own (it needs no sandbox product)."""
    yield from _cluster(sandbox_xdg_cache)


@pytest.fixture
def fresh(scratch_cluster: LocalScratch) -> Iterator[Fresh]:
    """Fresh scratch databases on the module's cluster, all dropped after the test."""
    yield from _databases(scratch_cluster)


@pytest.fixture(scope="module")
def subject_cluster(sandbox_xdg_cache: Path) -> Iterator[LocalScratch]:
    """A second server for ``--against`` subjects: a scratch on a subject's server is refused."""
    yield from _cluster(sandbox_xdg_cache)


@pytest.fixture
def subject(subject_cluster: LocalScratch) -> Iterator[Fresh]:
    """Fresh subject databases on their own server, all dropped after the test."""
    yield from _databases(subject_cluster)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 HTTP server on loopback, one per module (tests name their own buckets)."""
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()
