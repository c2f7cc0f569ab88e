"""Docker engine detection: a raw /_ping with a hard deadline, against loopback servers."""

from __future__ import annotations

import contextlib
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drills.containers import docker_engine_answers, select_provider

OK_RESPONSE = (b"HTTP/1.1 200 OK\r\nApi-Version: 1.47\r\nContent-Type: text/plain; charset=utf-8\r\n"
               b"Content-Length: 2\r\n\r\nOK")
CHUNKED_RESPONSE = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"2\r\nOK\r\n0\r\n\r\n")
ERROR_RESPONSE = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\nOK")
WRONG_BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

Handler = Callable[[socket.socket], None]


def answer(response: bytes) -> Handler:
    """A handler that reads the request head and writes ``response``."""

    def handle(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        assert data.startswith(b"GET /_ping HTTP/1.1\r\n")
        conn.sendall(response)

    return handle


def wedged(release: threading.Event) -> Handler:
    """A handler that accepts and never answers (until the test ends)."""

    def handle(conn: socket.socket) -> None:
        release.wait(10)

    return handle


class LoopbackServer:
    """Serves one handler per connection on a listening socket, in a thread."""

    def __init__(self, sock: socket.socket, handler: Handler) -> None:
        self.sock = sock
        self.handler = handler
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                # The client may give up first: that is what some tests provoke.
                with contextlib.suppress(OSError):
                    self.handler(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory: unix socket paths are limited to ~107 bytes, pytest's tmp_path may be longer."""
    with tempfile.TemporaryDirectory(prefix="dbk-") as name:
        yield Path(name)


@pytest.fixture
def unix_server(socket_dir: Path) -> Iterator[Callable[[Handler], str]]:
    """Start a unix-socket server with a handler; returns its DOCKER_HOST value."""
    servers: list[LoopbackServer] = []

    def start(handler: Handler) -> str:
        path = socket_dir / f"docker-{len(servers)}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.listen(4)
        servers.append(LoopbackServer(sock, handler))
        return f"unix://{path}"

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def tcp_server() -> Iterator[Callable[[Handler], str]]:
    """Start a TCP server on 127.0.0.1 with a handler; returns its DOCKER_HOST value."""
    servers: list[LoopbackServer] = []

    def start(handler: Handler) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        servers.append(LoopbackServer(sock, handler))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


@pytest.mark.skipif(sys.platform == "win32", reason="unix sockets")
class TestDockerEngineAnswers:
    def test_ping_200_ok_over_unix_socket_is_an_engine(self, unix_server: Callable[[Handler], str]) -> None:
        """An engine answering /_ping with 200 and body OK on its unix socket is detected."""
        assert docker_engine_answers(docker_host=unix_server(answer(OK_RESPONSE))) is True

    def test_chunked_ok_is_an_engine(self, unix_server: Callable[[Handler], str]) -> None:
        """A chunked 200 OK body counts as an engine too."""
        assert docker_engine_answers(docker_host=unix_server(answer(CHUNKED_RESPONSE))) is True

    def test_ping_500_is_no_engine(self, unix_server: Callable[[Handler], str]) -> None:
        """A socket answering 500 is a broken engine, not one we can start containers on."""
        assert docker_engine_answers(docker_host=unix_server(answer(ERROR_RESPONSE))) is False

    def test_200_with_another_body_is_no_engine(self, unix_server: Callable[[Handler], str]) -> None:
        """Something else listening on the socket (200 but not `OK`) is not Docker."""
        assert docker_engine_answers(docker_host=unix_server(answer(WRONG_BODY))) is False

    def test_garbage_is_no_engine(self, unix_server: Callable[[Handler], str]) -> None:
        """A non-HTTP answer is no engine (and raises nothing)."""
        assert docker_engine_answers(docker_host=unix_server(answer(b"SSH-2.0-OpenSSH\r\n\r\n"))) is False

    def test_missing_socket_is_no_engine(self, socket_dir: Path) -> None:
        """No socket file at all: no engine, at once."""
        started = time.monotonic()
        assert docker_engine_answers(docker_host=f"unix://{socket_dir}/absent.sock") is False
        assert time.monotonic() - started < 0.5

    def test_wedged_socket_gives_up_within_the_timeout(self, unix_server: Callable[[Handler], str]) -> None:
        """A socket that accepts but never answers is no engine, decided within timeout + margin."""
        release = threading.Event()
        host = unix_server(wedged(release))
        try:
            started = time.monotonic()
            assert docker_engine_answers(docker_host=host, timeout=0.5) is False
            elapsed = time.monotonic() - started
        finally:
            release.set()
        # A safety property, not a performance target: never the 60 s a wedged engine costs testcontainers.
        assert 0.4 <= elapsed < 2.0

    def test_trickling_server_cannot_stretch_the_deadline(
        self, unix_server: Callable[[Handler], str]
    ) -> None:
        """A server sending one byte at a time stays bound by the one overall deadline."""

        def trickle(conn: socket.socket) -> None:
            conn.recv(4096)
            for byte in OK_RESPONSE[:-1]:
                conn.sendall(bytes([byte]))
                time.sleep(0.1)

        host = unix_server(trickle)
        started = time.monotonic()
        assert docker_engine_answers(docker_host=host, timeout=0.5) is False
        assert time.monotonic() - started < 2.0

    def test_tcp_docker_host(self, tcp_server: Callable[[Handler], str]) -> None:
        """`tcp://host:port` in DOCKER_HOST is pinged over plain HTTP."""
        assert docker_engine_answers(docker_host=tcp_server(answer(OK_RESPONSE))) is True

    def test_docker_host_from_environment(self, unix_server: Callable[[Handler], str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
        """Without an argument, $DOCKER_HOST names the engine."""
        monkeypatch.setenv("DOCKER_HOST", unix_server(answer(OK_RESPONSE)))
        assert docker_engine_answers() is True

    @pytest.mark.parametrize("host", ["ssh://user@example.invalid", "npipe:////./pipe/docker_engine",
                                      "tcp://", "unix://"])
    def test_unsupported_or_empty_addresses_are_no_engine(self, host: str) -> None:
        """Schemes we do not speak, and addresses without a host or path, count as no engine."""
        assert docker_engine_answers(docker_host=host) is False


class TestSelectProvider:
    def test_config_means_live(self, unix_server: Callable[[Handler], str]) -> None:
        """A config file wins, even when a Docker engine answers."""
        host = unix_server(answer(OK_RESPONSE))
        assert select_provider(config_given=True, docker_host=host) == "live"

    def test_answering_engine_means_containers(self, unix_server: Callable[[Handler], str]) -> None:
        """No config and an engine that answers: testcontainers."""
        host = unix_server(answer(OK_RESPONSE))
        assert select_provider(config_given=False, docker_host=host) == "containers"

    def test_no_engine_means_local(self, socket_dir: Path) -> None:
        """No config and no engine: the embedded local sandbox."""
        assert select_provider(config_given=False, docker_host=f"unix://{socket_dir}/none.sock") == "local"


class TestImportCost:
    def test_module_does_not_import_docker_or_testcontainers(self) -> None:
        """Choosing an environment never pays for importing docker or testcontainers."""
        import subprocess

        code = ("import sys, drills.containers; "
                "print(sorted(m for m in sys.modules if m.split('.')[0] in ('docker', 'testcontainers')))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[2])
        assert out.stdout.strip() == "[]"
