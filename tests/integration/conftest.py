"""Integration fixtures: one local sandbox (real loopback servers) shared by the session."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checks.errors import EnvironmentError_
from drills import pgtools
from drills.local import LocalEnvironment
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
