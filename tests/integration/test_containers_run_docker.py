"""``drillbook run --env containers`` against a real Docker engine, as a user runs it.

The default features pass as they do on the local sandbox; Ctrl-C and SIGTERM
leave no container behind (asked of the engine, by the label every container
carries: the drillbook process id); and each bad input (no engine, a missing
image, a container that exits while starting, a host port already taken) is
an errored run with a message that says what and how to fix it, nothing left
running. The images come from the engine (``./bootstrap test`` builds them
locally: tests/support/docker_engine.py).
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from checks.errors import EnvironmentError_
from drills.containers_env import ContainersEnvironment
from tests.support.cli import Spawned, drillbook
from tests.support.engine import drillbook_containers, left_behind, requires_docker

RUN_TIMEOUT_S = 600
EXIT_DEADLINE_S = 60
EXITING_IMAGE = "drillbook-test/exits-at-start:1"
EXITING_MESSAGE = "FATAL: drillbook-test image stops at start (on purpose)"
MISSING_IMAGE = "drillbook-test/not-on-this-engine:0"
ONE_FEATURE = "features/backup/restore_from_yesterday.feature"

docker = pytest.mark.docker
pytestmark = pytest.mark.usefixtures("on_test_engine")


@pytest.fixture(scope="module")
def exiting_image(docker_client: Any) -> Iterator[str]:
    """A tiny image (no layer of its own) whose entrypoint prints one line and exits 3."""
    base = docker_client.containers.create("redis:7", entrypoint=["true"])
    try:
        base.commit(repository=EXITING_IMAGE.split(":")[0], tag=EXITING_IMAGE.split(":")[1], changes=[
            f'ENTRYPOINT ["/bin/sh", "-c", "echo starting; echo \\"{EXITING_MESSAGE}\\" >&2; exit 3"]',
            'CMD [""]',
        ])
    finally:
        base.remove(force=True)
    try:
        yield EXITING_IMAGE
    finally:
        docker_client.images.remove(EXITING_IMAGE, force=True)


def _outcomes(out: Path) -> dict[str, str]:
    """Scenario id (or node id) → outcome, from the run's results.json."""
    results = json.loads((out / "latest" / "results.json").read_text())
    return {scenario["id"] or scenario["nodeid"]: scenario["outcome"] for scenario in results["scenarios"]}


def _failures(out: Path) -> list[str]:
    results = json.loads((out / "latest" / "results.json").read_text())
    return [str(scenario["failure"]) for scenario in results["scenarios"]]


def _config(tmp_path: Path, **images: str) -> Path:
    path = tmp_path / "drillbook.toml"
    path.write_text("".join(f'[containers.{target}]\nimage = "{image}"\n'
                            for target, image in images.items()))
    return path


@docker
@requires_docker()
class TestDefaultFeatures:
    def test_pass_as_on_the_local_sandbox(self, tmp_path: Path, sandbox_cache_env: dict[str, str],
                                          docker_client: Any) -> None:
        """Every default scenario passes on containers, with the same outcome as on `--env local`."""
        on_containers = drillbook("run", "--env", "containers", "--out", str(tmp_path / "containers"),
                                  env=sandbox_cache_env, timeout=RUN_TIMEOUT_S)
        on_local = drillbook("run", "--env", "local", "--out", str(tmp_path / "local"),
                             env=sandbox_cache_env, timeout=RUN_TIMEOUT_S)
        assert on_containers.returncode == 0, on_containers.stdout + on_containers.stderr
        assert on_local.returncode == 0, on_local.stdout + on_local.stderr
        containers = _outcomes(tmp_path / "containers")
        assert containers == _outcomes(tmp_path / "local")
        assert containers and set(containers.values()) == {"passed"}
        results = json.loads((tmp_path / "containers" / "latest" / "results.json").read_text())
        assert results["environment"] == "containers"
        assert left_behind(docker_client) == []


    def test_packs_match_the_local_sandbox_but_for_write_times(
            self, tmp_path: Path, sandbox_cache_env: dict[str, str], docker_client: Any) -> None:
        """The product packs: the same outcomes as on `--env local`, except where a schedule check reads
        S3 objects' write times (LastModified), as AUR-04 does. The local sandbox backdates them to each
        backup's time through its in-process moto; an S3 server in a container stamps the upload time,
        and no S3 API can change it, so there every backup looks written at start-up."""
        on_containers = drillbook("run", "--env", "containers", "--features", "features/packs",
                                  "--out", str(tmp_path / "containers"), env=sandbox_cache_env,
                                  timeout=RUN_TIMEOUT_S)
        on_local = drillbook("run", "--env", "local", "--features", "features/packs",
                             "--out", str(tmp_path / "local"), env=sandbox_cache_env, timeout=RUN_TIMEOUT_S)
        assert on_local.returncode == 0, on_local.stdout + on_local.stderr
        containers, local = _outcomes(tmp_path / "containers"), _outcomes(tmp_path / "local")
        assert set(containers) == set(local)
        differing = {scenario for scenario in local if containers[scenario] != local[scenario]}
        assert "AUR-04" in differing, on_containers.stdout
        # Whatever else differs must differ for the same reason, and only for it.
        results = json.loads((tmp_path / "containers" / "latest" / "results.json").read_text())
        for scenario in results["scenarios"]:
            if (scenario["id"] or scenario["nodeid"]) not in differing:
                continue
            failed = [v["message"] for v in scenario["verdicts"] if v["outcome"] == "failed"]
            assert failed and all("write times (LastModified)" in m for m in failed), (scenario["id"], failed)
            assert scenario["outcome"] == "failed" and not [
                v for v in scenario["verdicts"] if v["outcome"] == "error"], scenario["id"]
        assert left_behind(docker_client) == []


def _first_scenario(line: str) -> bool:
    return line.startswith("  ") and line.strip().startswith(("PASSED", "FAILED", "ERROR"))


def _seeding(line: str) -> bool:
    return line.startswith("seeding the containers")


def _starting(line: str) -> bool:
    """The last container is being created: some exist, some may not yet."""
    return line.startswith("starting S3")


@docker
@requires_docker()
class TestInterrupted:
    @pytest.mark.parametrize(("moment", "interrupt"), [
        pytest.param(_first_scenario, Spawned.interrupt_group, id="ctrl-c-mid-run"),
        pytest.param(_first_scenario, lambda run: run.send(signal.SIGTERM), id="sigterm-mid-run"),
        pytest.param(_seeding, lambda run: run.send(signal.SIGTERM), id="sigterm-while-seeding"),
        pytest.param(_starting, Spawned.interrupt_group, id="ctrl-c-while-containers-start"),
    ])
    def test_no_container_is_left(self, tmp_path: Path, sandbox_cache_env: dict[str, str], docker_client: Any,
                                  moment: Callable[[str], bool],
                                  interrupt: Callable[[Spawned], None]) -> None:
        """Ctrl-C or SIGTERM, mid-run or while the containers are seeded: exit 1, and the engine
        holds none of the run's containers."""
        # Unbuffered: piped stdout is block-buffered, and the scenario line the interrupt waits for
        # could arrive only when the run had ended (the interrupt then came too late: exit 0).
        run = Spawned("run", "--env", "containers", "--out", str(tmp_path / "out"),
                      env={**sandbox_cache_env, "PYTHONUNBUFFERED": "1"})
        try:
            run.wait_for_line(moment, timeout=RUN_TIMEOUT_S)
            if moment is not _starting:
                started = drillbook_containers(docker_client, pid=run.proc.pid)
                assert len(started) == 4, "expected four containers"
            interrupt(run)
            code = run.wait(EXIT_DEADLINE_S)
        finally:
            if run.proc.poll() is None:
                run.kill()
        assert code == 1, f"{run.timeline}\nstderr:\n{run.stderr}"
        assert "interrupted" in run.stderr, run.stderr
        assert drillbook_containers(docker_client, pid=run.proc.pid) == []


@docker
class TestEngineNotAnswering:
    def test_every_scenario_errors_naming_the_engine(self, tmp_path: Path,
                                                     sandbox_cache_env: dict[str, str]) -> None:
        """No engine at DOCKER_HOST: each scenario errors (never skips), naming where it looked and
        what to do."""
        host = f"unix://{tmp_path}/no-engine.sock"
        result = drillbook("run", "--env", "containers", "--features", ONE_FEATURE,
                           "--out", str(tmp_path / "out"), env={**sandbox_cache_env, "DOCKER_HOST": host},
                           timeout=RUN_TIMEOUT_S)
        assert result.returncode == 1, result.stdout + result.stderr
        assert set(_outcomes(tmp_path / "out").values()) == {"error"}
        failure = _failures(tmp_path / "out")[0]
        assert f"no Docker engine answers at DOCKER_HOST={host}" in failure
        assert "--env local" in failure


@docker
@requires_docker()
class TestBadImages:
    def test_missing_image_is_named_with_how_to_provide_it(self, tmp_path: Path, docker_client: Any,
                                                           sandbox_cache_env: dict[str, str]) -> None:
        """An image the engine lacks (and cannot pull): errored scenarios naming it, `docker pull` and the
        config key; no container was created."""
        config = _config(tmp_path, production=MISSING_IMAGE)
        result = drillbook("run", "--env", "containers", "--config", str(config), "--features", ONE_FEATURE,
                           "--out", str(tmp_path / "out"), env=sandbox_cache_env, timeout=RUN_TIMEOUT_S)
        assert result.returncode == 1, result.stdout + result.stderr
        assert set(_outcomes(tmp_path / "out").values()) == {"error"}
        failure = _failures(tmp_path / "out")[0]
        assert MISSING_IMAGE in failure and "subject PostgreSQL" in failure
        assert f"docker pull {MISSING_IMAGE}" in failure
        assert 'image = \"...\"' in failure or 'image = "..."' in failure
        assert left_behind(docker_client) == []

    def test_container_exiting_at_start_shows_its_last_log_lines(
            self, tmp_path: Path, docker_client: Any, exiting_image: str,
            sandbox_cache_env: dict[str, str]) -> None:
        """A container that exits while starting: errored scenarios quoting its exit status and last log
        lines; every container of the run is removed."""
        config = _config(tmp_path, cache=exiting_image)
        result = drillbook("run", "--env", "containers", "--config", str(config), "--features", ONE_FEATURE,
                           "--out", str(tmp_path / "out"), env=sandbox_cache_env, timeout=RUN_TIMEOUT_S)
        assert result.returncode == 1, result.stdout + result.stderr
        assert set(_outcomes(tmp_path / "out").values()) == {"error"}
        failure = _failures(tmp_path / "out")[0]
        assert "Redis container" in failure and exiting_image in failure
        assert "exited with status 3" in failure
        assert EXITING_MESSAGE in failure
        assert left_behind(docker_client) == []


@docker
@requires_docker()
class TestPortTaken:
    def test_taken_host_port_is_named_and_nothing_is_left(self, sandbox_xdg_cache: Path,
                                                          docker_client: Any) -> None:
        """A pinned host port someone holds on 127.0.0.1: the error names the port; no container survives."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen(1)
            port = holder.getsockname()[1]
            with pytest.raises(EnvironmentError_) as caught:
                ContainersEnvironment.start(cache_dir=sandbox_xdg_cache / "drillbook",
                                            host_ports={"postgres": port})
        assert f"127.0.0.1:{port}" in caught.value.message
        assert "already in use" in caught.value.message
        assert drillbook_containers(docker_client, pid=os.getpid()) == []
