"""The containers environment without a real Docker engine: no engine, a lazy import, a fake engine.

The fake engine is a real HTTP server on a loopback unix socket, answering the
Docker API paths the Docker SDK calls: ``/_ping`` and ``/version`` as an
engine would, and 404 "No such image" for every image inspect and pull.
"""

from __future__ import annotations

import json
import re
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from checks.errors import ConfigError, EnvironmentError_, ServerStartError
from drills.containers_env import ContainersEnvironment, images_for_targets, is_minio, resolve_images

API_VERSION = "1.45"


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory: unix socket paths are limited to ~107 bytes, pytest's tmp_path may be longer."""
    with tempfile.TemporaryDirectory(prefix="dbk-") as name:
        yield Path(name)


class FakeEngine:
    """A Docker engine that has no images and reaches no registry; it logs every request."""

    def __init__(self, path: Path, *, with_images: bool = False) -> None:
        self.path = path
        # with_images: every image is present, and every container exits at once with a log line.
        self.with_images = with_images
        self.requests: list[tuple[str, str, int]] = []
        self.created: list[str] = []
        self.create_bodies: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                engine.handle(self, "GET")

            def do_HEAD(self) -> None:
                engine.handle(self, "HEAD")

            def do_POST(self) -> None:
                engine.handle(self, "POST")

            def do_DELETE(self) -> None:
                engine.handle(self, "DELETE")

            def log_message(self, format: str, *args: object) -> None:
                """Requests are recorded by the engine instead (the base class would write to stderr)."""

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(str(path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        sent = request.rfile.read(length) if length else b""
        path = request.path.split("?", 1)[0]
        if path.endswith("/containers/create") and sent:
            self.create_bodies.append(json.loads(sent))
        status, body = self.answer(method, path, request.path)
        self.requests.append((method, request.path, status))
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Api-Version", API_VERSION)
        request.send_header("Content-Type", "text/plain" if isinstance(body, bytes) else "application/json")
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        if method != "HEAD":
            request.wfile.write(payload)

    def answer(self, method: str, path: str, full: str) -> tuple[int, bytes | dict[str, object]]:
        parts = path.strip("/").split("/")
        if parts and parts[0].startswith("v1."):
            parts = parts[1:]
        route = "/".join(parts)
        if route == "_ping":
            return 200, b"OK"
        if route == "version":
            return 200, {"ApiVersion": API_VERSION, "MinAPIVersion": "1.24", "Version": "27.0.0-fake"}
        if self.with_images:
            answered = self.answer_with_images(method, route)
            if answered is not None:
                return answered
        if method == "GET" and route.startswith("images/") and route.endswith("/json"):
            image = route.removeprefix("images/").removesuffix("/json")
            return 404, {"message": f"No such image: {image}"}
        if method == "POST" and route == "images/create":
            query = parse_qs(urlsplit(full).query)
            image = f"{query.get('fromImage', ['?'])[0]}:{query.get('tag', ['latest'])[0]}"
            return 404, {"message": f"No such image: {image}"}
        if method == "POST" and route == "containers/create":
            container_id = f"{len(self.created) + 1:064x}"
            self.created.append(container_id)
            return 201, {"Id": container_id, "Warnings": []}
        if method == "DELETE" and route.startswith("containers/"):
            self.deleted.append(route.removeprefix("containers/"))
            return 204, b""
        return 404, {"message": f"page not found: {method} {path}"}

    def answer_with_images(self, method: str, route: str) -> tuple[int, bytes | dict[str, object]] | None:
        """Images exist; a created container has exited by the time anyone looks at it."""
        if method == "GET" and route.startswith("images/") and route.endswith("/json"):
            return 200, {"Id": "sha256:" + "ab" * 32, "RepoTags": [route[7:-5]]}
        match = re.fullmatch(r"containers/([0-9a-f]{64})(?:/(\w+))?", route)
        if match is None:
            return None
        container_id, action = match.groups()
        if method == "POST" and action == "start":
            return 204, b""
        if method == "GET" and action == "json":
            return 200, {"Id": container_id, "Name": f"/fake-{container_id[-4:]}",
                         "Config": {"Tty": False, "Image": "fake"},
                         "State": {"Status": "exited", "Running": False, "ExitCode": 3},
                         "NetworkSettings": {"Ports": {}}}
        if method == "GET" and action == "logs":
            line = b"FATAL: fake engine: this image only fails\n"
            # The engine's multiplexed log stream: [stream, 0, 0, 0, length (big-endian)] + payload.
            return 200, bytes([2, 0, 0, 0]) + struct.pack(">I", len(line)) + line
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def fake_engine(socket_dir: Path) -> Iterator[FakeEngine]:
    engine = FakeEngine(socket_dir / "fake-docker.sock")
    try:
        yield engine
    finally:
        engine.close()


class TestNoEngine:
    def test_start_fails_fast_naming_the_socket(self, socket_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        """Nothing listening on DOCKER_HOST: start() raises within 2 s, names the socket, gives a hint."""
        silent = socket_dir / "nobody.sock"
        monkeypatch.setenv("DOCKER_HOST", f"unix://{silent}")
        started = time.monotonic()
        with pytest.raises(EnvironmentError_) as caught:
            ContainersEnvironment.start()
        assert time.monotonic() - started < 2
        assert str(silent) in caught.value.message
        assert "no Docker engine answers" in caught.value.message
        assert "DOCKER_HOST" in caught.value.hint
        assert "--env local" in caught.value.hint

    @pytest.mark.parametrize("host", ["tcp://10.20.30.40:2375", "tcp://docker.internal:2376"])
    def test_an_engine_on_another_host_is_refused_at_once(
            self, host: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Containers would publish their ports over there: refused before any /_ping, naming DOCKER_HOST."""
        monkeypatch.setenv("DOCKER_HOST", host)
        started = time.monotonic()
        with pytest.raises(EnvironmentError_) as caught:
            ContainersEnvironment.start()
        assert time.monotonic() - started < 0.5
        assert host in caught.value.message
        assert "127.0.0.1" in caught.value.message
        assert "--env local" in caught.value.hint

    def test_socket_that_refuses_is_no_engine(self, socket_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
        """A socket file nobody accepts on (bound, not listening) counts as no engine too."""
        path = socket_dir / "bound.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(str(path))
            monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
            with pytest.raises(EnvironmentError_, match="no Docker engine answers"):
                ContainersEnvironment.start()

    def test_unknown_image_key_is_a_config_error_before_any_engine_check(
            self, socket_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A misspelt image key is reported as such, even when there is no engine to start anything."""
        monkeypatch.setenv("DOCKER_HOST", f"unix://{socket_dir / 'nobody.sock'}")
        with pytest.raises(ConfigError, match="unknown container image key") as caught:
            ContainersEnvironment.start(images={"postgress": "postgres:16"})
        assert "postgres, scratch, redis, s3" in caught.value.hint


class TestImages:
    def test_defaults(self) -> None:
        """PostgreSQL 15 for subject and scratch, Redis 7, moto's S3 server."""
        assert resolve_images(None) == {"postgres": "postgres:15", "scratch": "postgres:15",
                                        "redis": "redis:7", "s3": "motoserver/moto:latest"}

    def test_scratch_follows_the_subject_image(self) -> None:
        """Overriding the subject image changes the scratch image too, unless scratch is named."""
        assert resolve_images({"postgres": "pg:local"})["scratch"] == "pg:local"
        assert resolve_images({"postgres": "pg:local", "scratch": "pg:other"})["scratch"] == "pg:other"

    def test_config_target_names_map_to_services(self) -> None:
        """`[containers.<target>] image`: production, scratch, cache and the S3 stores name their service."""
        assert images_for_targets({"production": "registry.internal/postgres:15.8", "cache": "r:7",
                                   "nightly-custom": "s3:1"}) == {
            "postgres": "registry.internal/postgres:15.8", "redis": "r:7", "s3": "s3:1"}

    def test_unknown_config_target_is_named(self) -> None:
        """A target the containers environment does not run (a directory store) is a config error."""
        with pytest.raises(ConfigError, match="no target `nightly-plain`") as caught:
            images_for_targets({"nightly-plain": "x:1"}, where="drillbook.toml")
        assert caught.value.context["key"] == "containers.nightly-plain"

    def test_the_two_s3_stores_share_one_image(self) -> None:
        """nightly-custom and nightly-dumpall live in one S3 container: different images are refused."""
        assert images_for_targets({"nightly-custom": "a:1", "nightly-dumpall": "a:1"}) == {"s3": "a:1"}
        with pytest.raises(ConfigError, match="one S3 container serves"):
            images_for_targets({"nightly-custom": "a:1", "nightly-dumpall": "b:1"})

    @pytest.mark.parametrize(("image", "minio"), [
        ("minio/minio:latest", True), ("registry.internal/tools/minio:2024", True),
        ("motoserver/moto:latest", False), ("registry.internal/minio-mirror/moto:5", False),
    ])
    def test_minio_is_told_by_the_image_name(self, image: str, minio: bool) -> None:
        """An S3 image named minio runs as MinIO; any other as moto's server (the default)."""
        assert is_minio(image) is minio


class TestLazyImport:
    def test_module_import_pulls_in_neither_testcontainers_nor_docker(self) -> None:
        """Importing the module (the provider choice's hot path) costs no testcontainers or docker import."""
        code = ("import sys, drills.containers_env; "
                "print(sorted(m for m in sys.modules if m.split('.')[0] in ('testcontainers', 'docker')))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).resolve().parents[2])
        assert result.stdout.strip() == "[]"


class TestFakeEngineWithoutImages:
    def test_missing_image_is_named_with_how_to_provide_it(self, fake_engine: FakeEngine,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
        """An engine without postgres:15 and no registry: the error names the image and docker pull/load."""
        monkeypatch.setenv("DOCKER_HOST", fake_engine.docker_host)
        with pytest.raises(EnvironmentError_) as caught:
            ContainersEnvironment.start()
        assert "postgres:15" in caught.value.message
        assert "No such image" in caught.value.message
        assert "docker pull postgres:15" in caught.value.hint
        assert "docker load" in caught.value.hint
        assert "image = " in caught.value.hint
        assert "postgres:15" in caught.value.context["images"]

    def test_every_missing_image_is_named_at_once(self, fake_engine: FakeEngine,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        """One error lists every missing image, so a user provides them all in one go."""
        monkeypatch.setenv("DOCKER_HOST", fake_engine.docker_host)
        with pytest.raises(EnvironmentError_) as caught:
            ContainersEnvironment.start()
        for image in ("postgres:15", "redis:7", "motoserver/moto:latest"):
            assert image in caught.value.message

    def test_nothing_is_created_on_the_engine(self, fake_engine: FakeEngine,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
        """Images are checked before any container is created: the engine saw no create at all."""
        monkeypatch.setenv("DOCKER_HOST", fake_engine.docker_host)
        with pytest.raises(EnvironmentError_):
            ContainersEnvironment.start()
        assert fake_engine.created == []
        assert not [path for method, path, _ in fake_engine.requests if "/containers/" in path]

    def test_the_docker_api_paths_used(self, fake_engine: FakeEngine,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
        """The SDK asks /version, inspects each image, then tries one pull per missing image."""
        monkeypatch.setenv("DOCKER_HOST", fake_engine.docker_host)
        with pytest.raises(EnvironmentError_):
            ContainersEnvironment.start()
        seen = [(method, path.split("?", 1)[0]) for method, path, _ in fake_engine.requests]
        assert ("GET", "/_ping") in seen
        assert ("GET", "/version") in seen
        assert ("GET", f"/v{API_VERSION}/images/postgres:15/json") in seen
        assert ("POST", f"/v{API_VERSION}/images/create") in seen
        assert ("GET", f"/v{API_VERSION}/images/motoserver/moto:latest/json") in seen

    def test_a_caller_given_image_is_the_one_named(self, fake_engine: FakeEngine,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        """An image chosen per target is the one checked and named."""
        monkeypatch.setenv("DOCKER_HOST", fake_engine.docker_host)
        with pytest.raises(EnvironmentError_) as caught:
            ContainersEnvironment.start(images={"postgres": "drillbook/pg:15-local"})
        assert "drillbook/pg:15-local" in caught.value.message
        assert "postgres:15" not in caught.value.message


@pytest.fixture
def failing_engine(socket_dir: Path) -> Iterator[FakeEngine]:
    engine = FakeEngine(socket_dir / "failing-docker.sock", with_images=True)
    try:
        yield engine
    finally:
        engine.close()


class TestFakeEngineContainersExit:
    def test_exit_during_start_reports_the_last_log_lines(self, failing_engine: FakeEngine,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
        """A container that exits during start fails start() with its exit status and last log lines."""
        monkeypatch.setenv("DOCKER_HOST", failing_engine.docker_host)
        with pytest.raises(ServerStartError) as caught:
            ContainersEnvironment.start(cache_dir=tmp_path / "cache")
        assert "exited with status 3 during start" in caught.value.message
        assert "FATAL: fake engine: this image only fails" in caught.value.message

    def test_every_created_container_is_removed(self, failing_engine: FakeEngine,
                                                monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """The engine saw a DELETE for each container it created, and no product was built meanwhile."""
        monkeypatch.setenv("DOCKER_HOST", failing_engine.docker_host)
        with pytest.raises(ServerStartError):
            ContainersEnvironment.start(cache_dir=tmp_path / "cache")
        assert failing_engine.created
        assert sorted(failing_engine.deleted) == sorted(failing_engine.created)
        assert not (tmp_path / "cache").exists()

    def test_ports_are_published_on_loopback_only(self, failing_engine: FakeEngine,
                                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Every port binding asks for 127.0.0.1; host ports are the engine's choice unless pinned."""
        monkeypatch.setenv("DOCKER_HOST", failing_engine.docker_host)
        with pytest.raises(ServerStartError):
            ContainersEnvironment.start(cache_dir=tmp_path / "cache", host_ports={"redis": 16379})
        bindings = [binding for body in failing_engine.create_bodies
                    for port_bindings in body["HostConfig"]["PortBindings"].values()
                    for binding in port_bindings]
        assert len(bindings) == len(failing_engine.create_bodies) == 4
        assert {binding["HostIp"] for binding in bindings} == {"127.0.0.1"}
        assert {binding["HostPort"] for binding in bindings} == {"", "16379"}
        labels = {body["Labels"]["org.drillbook.service"] for body in failing_engine.create_bodies}
        assert labels == {"postgres", "scratch", "redis", "s3"}
