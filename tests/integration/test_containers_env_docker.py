"""The containers environment against a real Docker engine: start, a restore drill, nothing left.

Skipped, with the reason, when no engine answers ``GET /_ping`` (DOCKER_HOST or
the default socket). The engine needs the images locally (no registry may be
reachable): ``postgres:15``, ``redis:7`` and ``motoserver/moto:latest``
(``./bootstrap test`` builds them: tests/support/docker_engine.py), or the
images named by ``DRILLBOOK_TEST_IMAGE_POSTGRES`` / ``_REDIS`` / ``_S3``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from checks.compare import compare_databases
from checks.errors import EnvironmentError_
from checks.verdict import Outcome
from drills.containers_env import ContainersEnvironment
from drills.restore import RestoreDrill
from drills.targets import PostgresTarget, Role
from tests.support.engine import requires_docker

pytestmark = [pytest.mark.docker, requires_docker(), pytest.mark.usefixtures("on_test_engine")]


def _images() -> dict[str, str]:
    """Images from the test environment, for engines holding locally built images."""
    names = {"postgres": "DRILLBOOK_TEST_IMAGE_POSTGRES", "redis": "DRILLBOOK_TEST_IMAGE_REDIS",
             "s3": "DRILLBOOK_TEST_IMAGE_S3"}
    return {key: os.environ[var] for key, var in names.items() if os.environ.get(var)}


def _connect(target: PostgresTarget) -> psycopg.Connection[Any]:
    return psycopg.connect(target.dsn, connect_timeout=10)


@pytest.fixture(scope="module")
def containers_env(sandbox_xdg_cache: Path) -> Iterator[ContainersEnvironment]:
    """One started containers environment for the module, sharing the session's product cache."""
    env = ContainersEnvironment.start(images=_images(), cache_dir=sandbox_xdg_cache / "drillbook")
    try:
        yield env
    finally:
        env.close()


class TestContainersEnvironment:
    def test_details_name_loopback_endpoints(self, containers_env: ContainersEnvironment) -> None:
        """Every endpoint is on 127.0.0.1, and each container is listed."""
        details = containers_env.details()
        assert "@127.0.0.1:" in details["redis.cache"]
        assert details["s3.endpoint_url"].startswith("http://127.0.0.1:")
        assert "host=127.0.0.1" in details["postgres.production"]
        assert {"container.postgres", "container.scratch", "container.redis", "container.s3"} <= set(details)

    def test_no_reaper_runs_beside_them(self, containers_env: ContainersEnvironment) -> None:
        """testcontainers' reaper (Ryuk) is not started: drillbook removes its containers itself."""
        import docker

        client = docker.from_env(timeout=30)
        try:
            images = [c.attrs["Config"]["Image"] for c in client.containers.list(all=True)]
        finally:
            client.close()
        assert not [image for image in images if "ryuk" in image], images
        assert len(containers_env.container_ids()) == 4

    def test_ports_are_published_on_loopback_only(self, containers_env: ContainersEnvironment) -> None:
        """Each container's port is bound on 127.0.0.1 and nowhere else (the network rule)."""
        import docker

        client = docker.from_env(timeout=30)
        try:
            for container_id in containers_env.container_ids():
                bindings = client.containers.get(container_id).attrs["NetworkSettings"]["Ports"]
                host_ips = {b["HostIp"] for published in bindings.values() if published for b in published}
                assert host_ips == {"127.0.0.1"}, bindings
        finally:
            client.close()

    def test_subject_holds_the_product(self, containers_env: ContainersEnvironment) -> None:
        """The subject answers with the product's tables, read-only by role."""
        subject = containers_env.postgres("production")
        assert subject.role is Role.SUBJECT
        with _connect(subject) as conn:
            row = conn.execute("SELECT count(*) FROM orders").fetchone()
        assert row is not None and row[0] > 0

    def test_restore_drill_round_trip(self, containers_env: ContainersEnvironment) -> None:
        """The newest custom dump from MinIO restores into the scratch container and matches the subject."""
        with RestoreDrill(containers_env.store("nightly-custom"), containers_env.scratch_postgres()) as drill:
            result = drill.run()
            assert result.target is not None
            assert result.target.role is Role.SCRATCH
            subject = containers_env.postgres("production")
            target = result.target
            verdict = compare_databases(lambda: _connect(subject), lambda: _connect(target),
                                        cutoff=result.backup_time)
            assert verdict.outcome is Outcome.PASSED, verdict.message
        assert result.checksum is not None and result.checksum.outcome is Outcome.PASSED
        assert containers_env.scratch_postgres().databases() == []


class TestCleanup:
    def test_close_leaves_no_container(self, sandbox_xdg_cache: Path) -> None:
        """After close() every container this environment created is gone, and close() may be repeated."""
        env = ContainersEnvironment.start(images=_images(), cache_dir=sandbox_xdg_cache / "drillbook")
        ids = env.container_ids()
        assert len(ids) == 4
        env.close()
        env.close()
        assert env.leftovers() == []

    def test_taken_port_is_reported_and_nothing_is_left(self, sandbox_xdg_cache: Path) -> None:
        """A pinned host port someone holds fails the start clearly, and no container survives it."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen(1)
            port = holder.getsockname()[1]
            with pytest.raises(EnvironmentError_, match="already in use") as caught:
                ContainersEnvironment.start(images=_images(), cache_dir=sandbox_xdg_cache / "drillbook",
                                            host_ports={"redis": port})
        assert str(port) in caught.value.message
