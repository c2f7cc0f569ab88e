"""The containers environment: for now, only deciding whether a Docker engine answers.

The check is a raw ``GET /_ping`` with a hard deadline: constructing a
testcontainers container with no engine fails fast, but a wedged socket hangs
for a minute per container, and the ``docker`` CLI exists on machines without
an engine, so neither proves anything (FIELD-NOTES, "testcontainers without
Docker"). ``testcontainers`` and ``docker`` are never imported here at module
level: choosing an environment is on every run's hot path.
"""

from __future__ import annotations

import os
import socket
import time
from urllib.parse import urlsplit

DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
# Sub-second, so a machine without Docker pays almost nothing to find out.
PING_TIMEOUT_S = 0.5
# /_ping answers "OK" with a handful of headers; anything much longer is not an engine.
_MAX_RESPONSE = 16 * 1024
_DEFAULT_TCP_PORT = 2375

LIVE = "live"
CONTAINERS = "containers"
LOCAL = "local"


def docker_engine_answers(*, docker_host: str | None = None, timeout: float = PING_TIMEOUT_S) -> bool:
    """True only when a Docker engine answers ``GET /_ping`` with HTTP 200 and body ``OK``.

    ``docker_host`` defaults to ``$DOCKER_HOST``, then the default unix socket.
    ``unix://`` and ``tcp://`` (plain HTTP) are understood; other schemes
    (``ssh://``, ``npipe://``) and TLS-only engines count as no engine, and
    the caller falls back to the local environment. The whole exchange,
    connect to last byte, ends within ``timeout`` seconds.
    """
    host = docker_host if docker_host is not None else os.environ.get("DOCKER_HOST") or ""
    try:
        address = _address(host)
    except ValueError:
        return False
    if address is None:
        return False
    deadline = time.monotonic() + timeout
    try:
        response = _ping(address, deadline)
    except (OSError, ValueError):
        # Refused, missing socket, timed out, reset, or garbage: no engine we can use.
        return False
    return response == (200, b"OK")


def select_provider(*, config_given: bool, docker_host: str | None = None) -> str:
    """``live`` with a config file, else ``containers`` when Docker answers, else ``local``.

    ARCHITECTURE.md, "Environments: where targets come from".
    """
    if config_given:
        return LIVE
    if docker_engine_answers(docker_host=docker_host):
        return CONTAINERS
    return LOCAL


_Address = tuple[int, str | tuple[str, int]]


def _address(docker_host: str) -> _Address | None:
    """(socket family, address) for a DOCKER_HOST value; None for schemes we do not speak."""
    if not docker_host:
        return socket.AF_UNIX, DEFAULT_DOCKER_SOCKET
    parts = urlsplit(docker_host)
    if parts.scheme == "unix":
        # unix:///var/run/docker.sock → path; tolerate unix://relative/path too.
        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        return (socket.AF_UNIX, path) if path else None
    if parts.scheme in ("tcp", "http"):
        if not parts.hostname:
            return None
        return socket.AF_INET6 if ":" in parts.hostname else socket.AF_INET, (
            parts.hostname, parts.port or _DEFAULT_TCP_PORT)
    return None


def _ping(address: _Address, deadline: float) -> tuple[int, bytes]:
    """Send ``GET /_ping`` and return (status, body); raises OSError on timeout or failure."""
    family, target = address
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Each socket call gets only what is left of the one deadline, so a server
        # that trickles bytes cannot stretch the total past it.
        sock.settimeout(_remaining(deadline))
        sock.connect(target)
        sock.settimeout(_remaining(deadline))
        sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            sock.settimeout(_remaining(deadline))
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
            if len(data) > _MAX_RESPONSE:
                raise ValueError("response too long for /_ping")
            parsed = _parse_response(data, complete=False)
            if parsed is not None:
                return parsed
    parsed = _parse_response(data, complete=True)
    if parsed is None:
        raise ValueError("incomplete HTTP response")
    return parsed


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("docker /_ping deadline passed")
    return left


def _parse_response(data: bytes, *, complete: bool) -> tuple[int, bytes] | None:
    """(status, body) once the response is whole; None while more bytes are needed.

    Understands Content-Length, chunked transfer encoding, and a body ended by
    the server closing the connection (``complete``).
    """
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/"):
        raise ValueError("not an HTTP response")
    status = int(status_line[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        decoded = _dechunk(body)
        return (status, decoded) if decoded is not None else None
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        return (status, body[:length]) if len(body) >= length else None
    return (status, body) if complete else None


def _dechunk(body: bytes) -> bytes | None:
    """A chunked body decoded, or None until its final zero-length chunk has arrived."""
    out = b""
    rest = body
    while True:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            return None
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            return out
        if len(rest) < size + 2:
            return None
        out += rest[:size]
        rest = rest[size + 2:]
