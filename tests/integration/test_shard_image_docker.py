"""The shard image (deploy/Dockerfile) as the Kubernetes Job runs it, on the local engine (T9).

The image is built from the Dockerfile unchanged (on a stand-in of its base: no registry is
reachable, tests/support/shard_image.py) and run as the rendered pod runs it: user 10001, a
read-only root filesystem, tmpfs at /scratch and /tmp, one CPU. Two containers run at once
and each is stopped the way Kubernetes stops a pod: SIGTERM, then SIGKILL after the grace
period; each must stop its servers and exit by itself well inside the grace.

While `drillbook run --plan` is not in this tree, the long-running command is
`drillbook sandbox up` (local PostgreSQL, Redis and S3 servers under /tmp), which exercises
the same things a shard does in the container: servers started as a non-root user with
nothing writable but /scratch and /tmp, and SIGTERM unwinding them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from drillbook import __version__
from drillbook.fleet.render.k8s import GRACE_S, UID
from tests.support.engine import engine_host, requires_docker
from tests.support.shard_image import IMAGE, build_base, build_shard_image

pytestmark = [pytest.mark.docker, requires_docker(), pytest.mark.usefixtures("on_test_engine")]

READY_S = 600  # two sandboxes starting at once on one CPU each of a loaded 2-core machine
UP_LINE = "sandbox is up:"


@pytest.fixture(scope="module")
def shard_image(docker_client: Any) -> str:
    host = engine_host() or "unix:///var/run/docker.sock"
    build_base(host)
    build_shard_image(host)
    return IMAGE


def _run_options() -> dict[str, Any]:
    """What the rendered pod spec asks of the runtime, in docker's terms."""
    return {
        "read_only": True,
        "user": f"{UID}:{UID}",
        "nano_cpus": 1_000_000_000,
        "tmpfs": {"/scratch": f"uid={UID},gid={UID},mode=0700", "/tmp": "mode=1777"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "labels": {"org.drillbook.test": "shard-image"},
    }


@pytest.fixture
def containers(docker_client: Any) -> Iterator[list[Any]]:
    started: list[Any] = []
    try:
        yield started
    finally:
        for container in started:
            container.remove(force=True, v=True)


def _logs(container: Any) -> str:
    return bytes(container.logs()).decode(errors="replace")


class TestShardImage:
    def test_entrypoint_is_drillbook_as_a_non_root_user(self, docker_client: Any, shard_image: str) -> None:
        """`drillbook --version` is what the image runs, as user 10001, on a read-only root."""
        output = docker_client.containers.run(shard_image, ["--version"], remove=True, **_run_options())
        assert output.decode().strip() == f"drillbook {__version__}"
        image = docker_client.images.get(shard_image)
        assert image.attrs["Config"]["User"] == f"{UID}:{UID}"
        assert image.attrs["Config"]["Entrypoint"] == ["drillbook"]

    def test_the_suite_and_its_commands_are_there(self, docker_client: Any, shard_image: str) -> None:
        """The pod's working directory holds the suite; `drillbook run --help` answers there."""
        output = docker_client.containers.run(
            shard_image, ["run", "--help"], remove=True, working_dir="/app", **_run_options()
        ).decode()
        assert "--config" in output and "--cadence" in output
        listing = docker_client.containers.run(
            shard_image,
            ["-c", "ls /app/features /app/drillbook.toml 2>&1; true"],
            entrypoint="sh",
            remove=True,
            **_run_options(),
        ).decode()
        assert "backup" in listing

    def test_two_containers_stop_cleanly_on_sigterm_within_the_grace(
        self, docker_client: Any, shard_image: str, containers: list[Any]
    ) -> None:
        for _ in range(2):
            containers.append(
                docker_client.containers.run(
                    shard_image,
                    ["sandbox", "up", "--state", "/scratch/sandbox.json"],
                    detach=True,
                    working_dir="/app",
                    **_run_options(),
                )
            )
        deadline = time.monotonic() + READY_S
        while not all(UP_LINE in _logs(c) for c in containers):
            for container in containers:
                container.reload()
                assert container.status == "running", _logs(container)[-3000:]
            assert time.monotonic() < deadline, f"not up within {READY_S} s: " + _logs(containers[0])[-2000:]
            time.sleep(1)
        for container in containers:
            started = time.monotonic()
            container.stop(timeout=GRACE_S)  # SIGTERM, SIGKILL after the grace: as the kubelet does
            elapsed = time.monotonic() - started
            container.reload()
            logs = _logs(container)
            assert container.attrs["State"]["ExitCode"] == 0, logs[-3000:]
            assert elapsed < GRACE_S, f"took {elapsed:.1f} s of the {GRACE_S} s grace"
            assert "stopping the sandbox" in logs
            # A read-only root: nothing outside the tmpfs mounts changed.
            assert container.diff() in (None, [])
