"""The parts of the official images' interface the containers environment relies on.

Whatever provides ``postgres:15``, ``redis:7`` and ``motoserver/moto:latest`` on
the engine — the official images, or the stand-ins ``./bootstrap test`` builds
from Debian packages (tests/support/docker_engine.py) — must behave as drillbook
expects: this is that contract, checked against a real engine. Every container
publishes on 127.0.0.1 only and is removed at the end of its test.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import redis

from tests.support.engine import requires_docker

pytestmark = [pytest.mark.docker, requires_docker(), pytest.mark.usefixtures("on_test_engine")]

READY_S = 60
READY_LINE = "database system is ready to accept connections"


@pytest.fixture
def run(docker_client: Any) -> Iterator[Callable[..., Any]]:
    """Start a container from an image, its port published on 127.0.0.1; removed after the test."""
    started: list[Any] = []

    def start(image: str, port: int, **kwargs: Any) -> Any:
        container = docker_client.containers.run(image, detach=True,
                                                 ports={f"{port}/tcp": ("127.0.0.1", None)},
                                                 labels={"org.drillbook.test": "images"}, **kwargs)
        started.append(container)
        return container

    try:
        yield start
    finally:
        for container in started:
            container.remove(force=True, v=True)


def _host_port(container: Any, port: int) -> int:
    container.reload()
    return int(container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"])


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + READY_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {READY_S} s")
        time.sleep(0.25)


def _logs(container: Any) -> str:
    return bytes(container.logs()).decode(errors="replace")


class TestPostgres:
    def test_user_password_and_database_from_the_environment(self, run: Callable[..., Any]) -> None:
        """POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB make the superuser and database; port 5432;
        the readiness line is logged twice (the init server, then the real one)."""
        container = run("postgres:15", 5432, environment={
            "POSTGRES_USER": "drill", "POSTGRES_PASSWORD": "s3cret-pw", "POSTGRES_DB": "product"})
        _until(lambda: _logs(container).count(READY_LINE) >= 2, "the readiness line twice")
        port = _host_port(container, 5432)
        dsn = f"host=127.0.0.1 port={port} user=drill password=s3cret-pw dbname=product"
        row = None
        deadline = time.monotonic() + READY_S
        while row is None:
            try:
                with psycopg.connect(dsn, connect_timeout=2) as conn:
                    row = conn.execute("SELECT current_user, current_database(), "
                                       "current_setting('server_version_num')::int / 10000").fetchone()
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.25)
        assert row == ("drill", "product", 15)

    def test_a_wrong_password_is_refused(self, run: Callable[..., Any]) -> None:
        """Password authentication from outside the container: a wrong password does not get in."""
        container = run("postgres:15", 5432, environment={"POSTGRES_PASSWORD": "right"})
        _until(lambda: _logs(container).count(READY_LINE) >= 2, "the readiness line twice")
        port = _host_port(container, 5432)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(f"host=127.0.0.1 port={port} user=postgres password=wrong dbname=postgres",
                            connect_timeout=5)

    def test_no_password_stops_with_the_official_message(self, run: Callable[..., Any]) -> None:
        """Without POSTGRES_PASSWORD the container exits at once and says what to set."""
        container = run("postgres:15", 5432)
        container.wait(timeout=READY_S)
        container.reload()
        assert container.attrs["State"]["ExitCode"] != 0
        assert "POSTGRES_PASSWORD" in _logs(container)


class TestRedis:
    @pytest.mark.parametrize("command", [None, ["redis-server", "--requirepass", "pw", "--save", ""]],
                             ids=["image-command", "drillbook-command"])
    def test_serves_on_6379(self, run: Callable[..., Any], command: list[str] | None) -> None:
        """The image's own command and drillbook's (password, no persistence) both serve on 6379."""
        container = run("redis:7", 6379, command=command)
        port = _host_port(container, 6379)
        password = "pw" if command else None
        client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=2)
        try:
            _until(lambda: _pings(client), "redis answering PING")
            assert str(client.info("server")["redis_version"]).startswith("7.")
        finally:
            client.close()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False


class TestMoto:
    def test_serves_s3_on_5000(self, run: Callable[..., Any]) -> None:
        """moto's server answers on port 5000: its API root and S3's ListBuckets."""
        container = run("motoserver/moto:latest", 5000)
        port = _host_port(container, 5000)
        _until(lambda: _http_status(f"http://127.0.0.1:{port}/moto-api/") == 200, "moto answering")
        # moto loads its S3 backend on the first S3 request: on a loaded machine that first answer
        # took over 2 s (a CI failure), so wait for an answer, then require it to be a 200.
        status: list[int | None] = [None]

        def answered() -> bool:
            status[0] = _http_status(f"http://127.0.0.1:{port}/", timeout=10)
            return status[0] is not None

        _until(answered, "S3 ListBuckets answering")
        assert status[0] == 200

    def test_moto_port_moves_it(self, run: Callable[..., Any]) -> None:
        """MOTO_PORT picks the port it listens on (drillbook sets it)."""
        container = run("motoserver/moto:latest", 5123, environment={"MOTO_PORT": "5123"})
        port = _host_port(container, 5123)
        _until(lambda: _http_status(f"http://127.0.0.1:{port}/moto-api/") == 200, "moto answering")


def _http_status(url: str, timeout: float = 2) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed loopback URL
            return int(response.status)
    except OSError:
        return None
