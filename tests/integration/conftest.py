"""Integration fixtures: one local sandbox (real loopback servers) shared by the session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checks.errors import EnvironmentError_
from drills import pgtools
from drills.local import LocalEnvironment
from tests.support.engine import pointed_at_test_engine


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
