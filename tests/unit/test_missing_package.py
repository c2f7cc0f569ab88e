"""An environment whose Python package is missing is a usage error naming it (issue 11, item 2).

The missing module is simulated in a child interpreter (``sys.modules['testcontainers'] = None``
makes every import of it raise ImportError, as an absent install does); drillbook itself runs
unpatched, through its real command line.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The child: hide testcontainers, then run the real `drillbook` command with the given arguments.
CHILD = (
    "import sys\n"
    "sys.modules['testcontainers'] = None\n"
    "from drillbook.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)

PING_OK = b"HTTP/1.1 200 OK\r\nApi-Version: 1.47\r\nContent-Length: 2\r\n\r\nOK"


def run_without_testcontainers(
    args: list[str], *, docker_host: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": docker_host, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", CHILD, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture
def fake_docker_engine() -> Iterator[str]:
    """A loopback listener that answers Docker's ``GET /_ping`` with ``OK``: auto picks containers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(PING_OK)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        sock.close()


class TestMissingTestcontainers:
    def assert_clear_usage_error(self, result: subprocess.CompletedProcess[str], out: Path) -> None:
        assert result.returncode == 2, result.stdout + result.stderr
        assert "INTERNALERROR" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert "'testcontainers'" in result.stderr
        assert "the containers environment needs the Python package" in result.stderr
        assert "hint:" in result.stderr and "./bootstrap" in result.stderr
        # Refused before the run began: no run directory, so no server or pytest session either.
        assert not out.exists() or not any(out.iterdir())

    def test_env_containers_is_exit_2_naming_the_package(self, tmp_path: Path) -> None:
        """``--env containers`` without testcontainers: exit 2, the package named, a hint, no traceback."""
        out = tmp_path / "out"
        result = run_without_testcontainers(["run", "--env", "containers", "--out", str(out)],
                                            docker_host="tcp://127.0.0.1:1", cwd=tmp_path)
        self.assert_clear_usage_error(result, out)

    def test_auto_with_docker_answering_is_exit_2_naming_the_package(
        self, tmp_path: Path, fake_docker_engine: str
    ) -> None:
        """A Docker engine answers, so auto chooses containers; its missing package is exit 2 too."""
        out = tmp_path / "out"
        result = run_without_testcontainers(["run", "--out", str(out)], docker_host=fake_docker_engine,
                                            cwd=tmp_path)
        self.assert_clear_usage_error(result, out)

    def test_the_installed_package_is_a_regular_dependency(self) -> None:
        """pyproject lists testcontainers in ``dependencies``, so a plain install brings it."""
        import tomllib

        project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        assert any(dep.startswith("testcontainers") for dep in project["dependencies"])


class TestDefaultInstall:
    def test_the_plain_install_brings_testcontainers(self) -> None:
        """`./bootstrap run` installs `-e .` without extras: testcontainers is an unconditional dependency."""
        import re
        import tomllib

        project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        assert any(re.match(r"testcontainers\b", d) for d in project["dependencies"]), project["dependencies"]
