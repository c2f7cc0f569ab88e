"""The shard image (deploy/Dockerfile) as the Kubernetes Job runs it, on the local engine (T9).

The image is built from the Dockerfile unchanged (on a stand-in of its base: no registry is
reachable, tests/support/shard_image.py) and run as the rendered pod runs it: user 10001, a
read-only root filesystem, tmpfs at /scratch and /tmp, one CPU.

Issue 14 item 7: N shard containers give the same merged result. A fleet of three members
lives on a PostgreSQL the test starts on the host, listening on the engine's bridge gateway
(containers have no route out, but the gateway is on their own subnet); `drillbook plan` runs
on the host into a runs directory bind-mounted at the same path into two containers, each of
which runs `drillbook run --plan … --shard-index I`; the last one merges. The merged result
must equal `drillbook run --fleet --workers 1` on the host, and `docker diff` must be empty.

Two containers running `drillbook sandbox up` (local PostgreSQL, Redis and S3 servers under
/tmp) are also stopped the way Kubernetes stops a pod: SIGTERM, then SIGKILL after the grace
period; each must stop its servers and exit by itself well inside the grace.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drillbook import __version__
from drillbook.fleet.render.k8s import GRACE_S, UID
from drills import pgtools
from drills.local import LocalScratch, _make_workdir
from drills.processes import PostgresServer, template_datadir
from tests.support.cli import drillbook
from tests.support.engine import engine_host, requires_docker
from tests.support.fleet import FleetFixture, make_fleet
from tests.support.shard_image import IMAGE, build_base, build_shard_image

pytestmark = [pytest.mark.docker, requires_docker(), pytest.mark.usefixtures("on_test_engine")]

READY_S = 600  # two sandboxes starting at once on one CPU each of a loaded 2-core machine
UP_LINE = "sandbox is up:"
SHARD_S = 900  # two shards at once, each starting its scratch PostgreSQL on one CPU
MEMBERS = 3


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


@pytest.fixture(scope="module")
def bridge_cluster(docker_client: Any, sandbox_xdg_cache: Path) -> Iterator[tuple[LocalScratch, str]]:
    """A PostgreSQL on the host reachable from the containers: it also listens on the bridge gateway.

    The engine's containers have no route out (tests/support/docker_engine.py), but the
    gateway address is the host's own on their subnet; pg_hba trusts that subnet (no secret).
    """
    ipam = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    subnet, gateway = ipam["Subnet"], ipam["Gateway"]
    workdir, record = _make_workdir("drillbook-scratch-")
    bindir = pgtools.bindir()
    template = template_datadir(sandbox_xdg_cache / "drillbook", bindir=bindir, workdir=workdir)
    # A later -c wins over the server's own listen_addresses=127.0.0.1.
    server = PostgresServer("fleet", workdir / "pgdata", bindir=bindir,
                            settings={"listen_addresses": f"127.0.0.1,{gateway}"})
    cluster: LocalScratch | None = None
    try:
        server.init(template=template)
        with (server.datadir / "pg_hba.conf").open("a", encoding="utf-8") as hba:
            hba.write(f"host all all {subnet} trust\n")
        server.start()
        if server.pid is not None:
            record.add_server(server.label, server.pid, anchor=workdir)
        cluster = LocalScratch(server, workdir, record, owns_workdir=True)
        yield cluster, gateway
    finally:
        if cluster is not None:
            cluster.close()
        else:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
            record.release()


@pytest.fixture(scope="module")
def bridge_fleet(bridge_cluster: tuple[LocalScratch, str],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetFixture]:
    """Three healthy members (so every shard exits 0) whose DSNs name the bridge gateway.

    Readable by the containers' user 10001: it is bind-mounted at the same path, so the
    config's backup folders and the plan's feature paths mean the same thing on both sides.
    """
    cluster, gateway = bridge_cluster
    base = tmp_path_factory.mktemp("docker-fleet")
    databases = [cluster.fresh_database(f"dfleet-m{n}") for n in range(1, MEMBERS + 1)]
    try:
        fleet = make_fleet(base, databases)  # dumps over loopback, before the DSNs are rewritten
        text = fleet.config.read_text(encoding="utf-8")
        for target in databases:
            assert text.count(target.dsn) == 1 and "127.0.0.1" in target.dsn, target.dsn
            text = text.replace(target.dsn, target.dsn.replace("127.0.0.1", gateway))
        fleet.config.write_text(text, encoding="utf-8")
        (base / "server-log-path").write_text(str(cluster.server.log_path), encoding="utf-8")
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield fleet
    finally:
        for target in databases:
            cluster.drop(target)


def bridge_fleet_log(fx: FleetFixture) -> str:
    """The members' server log (beside the config, where the bridge_fleet fixture records its path)."""
    pointer = fx.config.parent / "server-log-path"
    path = Path(pointer.read_text(encoding="utf-8")) if pointer.exists() else None
    return path.read_text(encoding="utf-8", errors="replace") if path and path.exists() else ""


def _outcomes(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((s["member"], s["id"], s["outcome"]) for s in results["scenarios"])


def _merged(out: Path) -> dict[str, Any]:
    group = next(p for p in out.iterdir() if p.is_dir() and not p.is_symlink())
    return dict(json.loads((group / "results.json").read_text(encoding="utf-8")))


class TestShardContainers:
    def test_two_shard_containers_merge_what_one_host_worker_finds(
        self, docker_client: Any, shard_image: str, bridge_fleet: FleetFixture, containers: list[Any],
        tmp_path: Path,
    ) -> None:
        """Item 7: 2 read-only shard containers exit 0, the last merges, the same result as --workers 1."""
        fx = bridge_fleet
        runs = fx.config.parent / "runs"
        runs.mkdir()
        group = runs / "g-docker"
        planned = drillbook("plan", "--config", str(fx.config), "--features", str(fx.features),
                            "--out", str(group), "--bins", "2")
        assert planned.returncode == 0, planned.stdout + planned.stderr
        plan = json.loads((group / "plan.json").read_text(encoding="utf-8"))
        assert len(plan["bins"]) == 2 and all(b["items"] for b in plan["bins"]), plan["bins"]
        # The runs location belongs to the pods' user 10001 (it commits, claims and merges there), as
        # a bucket's policy or a volume's owner would grant it; the planner ran as root here.
        for path in [runs, *runs.rglob("*")]:
            os.chown(path, UID, UID)

        base = str(fx.config.parent)
        volumes = {base: {"bind": base, "mode": "ro"}, str(runs): {"bind": str(runs), "mode": "rw"}}
        started = time.monotonic()
        for index in range(2):
            containers.append(docker_client.containers.run(
                shard_image,
                ["run", "--plan", str(group / "plan.json"), "--shard-index", str(index),
                 "--config", str(fx.config), "--features", str(fx.features)],
                detach=True, working_dir="/app", volumes=volumes, **_run_options(),
            ))
        codes = [c.wait(timeout=SHARD_S)["StatusCode"] for c in containers]
        elapsed = time.monotonic() - started
        logs = [_logs(c) for c in containers]
        assert codes == [0, 0], "\n---\n".join(text[-3000:] for text in logs)
        assert sum("merged 2/2 bins" in text for text in logs) == 1, logs
        print(f"2 shard containers: {elapsed:.1f} s")
        for container in containers:
            # Read-only root: nothing outside the bind mounts and the tmpfs mounts changed.
            assert container.diff() in (None, [])

        merged = json.loads((group / "results.json").read_text(encoding="utf-8"))
        keys = [(s["member"], s["id"]) for s in merged["scenarios"]]
        assert len(keys) == len(set(keys)) == MEMBERS * 2, "every work item once"

        started = time.monotonic()
        reference = drillbook("run", "--fleet", "--config", str(fx.config), "--features", str(fx.features),
                              "--out", str(tmp_path / "w1"), "--workers", "1", timeout=SHARD_S)
        print(f"host --workers 1: {time.monotonic() - started:.1f} s")
        assert reference.returncode == 0, reference.stdout + reference.stderr
        expected = _outcomes(_merged(tmp_path / "w1"))
        # On a mismatch, what the members' server saw (a connection that never reached it or one it refused).
        server_log = bridge_fleet_log(fx)
        assert _outcomes(merged) == expected, (json.dumps(merged["scenarios"])[-4000:], server_log[-4000:],
                                               "\n---\n".join(text[-2000:] for text in logs))
        assert {outcome for _, _, outcome in expected} == {"passed"}
        assert {member for member, _, _ in expected} == set(fx.members)
