"""Is this PostgreSQL server that one? Server identity, compared conservatively.

A configured scratch database must not live on a server that holds a subject:
what a drill runs there (a backup, a migration folder) is untrusted, and a
server is one blast radius (roles, ``ALTER SYSTEM``, ``DROP DATABASE``, the OS
user behind ``COPY … TO PROGRAM``). Host strings cannot decide that:
``localhost`` and ``127.0.0.1`` name the same server, and so may two DNS names,
a proxy and a Unix socket. So a server is described by every fact that can
identify it, and two servers are the same when **any** fact matches:

- ``pg_postmaster_start_time()`` as seen from inside a session (any role may
  read it; two postmasters starting in the same microsecond is not a
  coincidence to bet production on);
- the cluster's ``system_identifier`` (``pg_control_system()``, when the role
  may run it). Equal identifiers say "the same cluster *or a copy of it*": a
  physical replica, a clone restored from a base backup, and every cluster
  drillbook's sandbox copies from its one initdb template share theirs. So an
  equal identifier counts unless both postmasters were seen with different
  start times, i.e. each copy runs a postmaster of its own;
- the endpoints: addresses the client resolved plus the address and port the
  server reports (``inet_server_addr()``/``inet_server_port()``), with every
  loopback address counted as one machine, and Unix socket paths.

This module is pure: the probing (connecting, resolving names) lives in
:mod:`drills.scratch_guard`. It also reads libpq's host/hostaddr/port lists,
which come from outside (the config, the command line).
"""

from __future__ import annotations

import enum
import ipaddress
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

DEFAULT_PORT = 5432
# Debian's libpq default socket directory (DEFAULT_PGSOCKET_DIR); the prober may pass another.
DEFAULT_SOCKET_DIR = "/var/run/postgresql"
LOOPBACK = "loopback"


class Transport(enum.StrEnum):
    TCP = "tcp"
    UNIX = "unix"


@dataclass(frozen=True, order=True)
class Endpoint:
    """Where a server listens: a normalised TCP address and port, or a Unix socket directory and port."""

    transport: Transport
    address: str
    port: int

    def __str__(self) -> str:
        if self.transport is Transport.UNIX:
            return f"{self.address}/.s.PGSQL.{self.port}"
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


def tcp_endpoint(address: str, port: int) -> Endpoint:
    """A TCP endpoint with the address normalised: IPv4-mapped IPv6 as IPv4, any loopback as one.

    Every loopback address (127.0.0.0/8, ::1) counts as the same machine: a
    server listening on ``127.0.0.1`` and reached as ``::1`` (``localhost``) is
    one server, and treating them as two would let a scratch through.
    """
    text = address.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return Endpoint(Transport.TCP, text.lower().rstrip("."), port)  # a name nobody resolved
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return Endpoint(Transport.TCP, LOOPBACK, port)
    return Endpoint(Transport.TCP, ip.compressed, port)


def unix_endpoint(directory: str, port: int) -> Endpoint:
    """A Unix socket ``<directory>/.s.PGSQL.<port>`` (the directory as given; the prober resolves links)."""
    return Endpoint(Transport.UNIX, posixpath.normpath(directory) if directory.startswith("/") else directory,
                    port)


@dataclass(frozen=True)
class HostSpec:
    """One host of a libpq connection string: what to resolve (or the socket dir) and the port."""

    host: str
    port: int
    unix: bool


def libpq_hosts(params: Mapping[str, str], environ: Mapping[str, str], *,
                default_socket_dir: str = DEFAULT_SOCKET_DIR) -> list[HostSpec]:
    """The hosts libpq would try for ``params`` (a parsed conninfo), in order.

    libpq's rules: ``host`` and ``hostaddr`` are comma-separated lists (from the
    string, else ``PGHOST``/``PGHOSTADDR``); when ``hostaddr`` is given, its
    entry is the address connected to; ``port`` is one port for every host or
    one per host (else ``PGPORT``, else 5432); a host starting with ``/`` or
    ``@`` is a Unix socket directory; no host at all means the default socket.
    Raises :class:`ValueError` for lists libpq itself would reject.
    """
    host_text = _param(params, environ, "host", "PGHOST")
    addr_text = _param(params, environ, "hostaddr", "PGHOSTADDR")
    port_text = _param(params, environ, "port", "PGPORT")
    hosts = host_text.split(",") if host_text else []
    addrs = addr_text.split(",") if addr_text else []
    if addrs and hosts and len(addrs) != len(hosts):
        raise ValueError(f"{len(hosts)} host names but {len(addrs)} hostaddr values")
    count = max(len(hosts), len(addrs), 1)
    ports_raw = port_text.split(",") if port_text else []
    if len(ports_raw) > 1 and len(ports_raw) != count:
        raise ValueError(f"{count} hosts but {len(ports_raw)} ports")
    ports = [_port(p) for p in ports_raw] or [DEFAULT_PORT]
    found = []
    for index in range(count):
        port = ports[index] if len(ports) > 1 else ports[0]
        addr = addrs[index].strip() if addrs else ""
        host = hosts[index].strip() if hosts else ""
        if addr:
            found.append(HostSpec(addr, port, unix=False))
        elif not host:
            found.append(HostSpec(default_socket_dir, port, unix=True))
        elif host.startswith(("/", "@")):
            found.append(HostSpec(host, port, unix=True))
        else:
            found.append(HostSpec(host, port, unix=False))
    return found


def _param(params: Mapping[str, str], environ: Mapping[str, str], key: str, env: str) -> str:
    value = params.get(key)
    if value is None or value == "":
        value = environ.get(env, "")
    return str(value).strip()


def _port(text: str) -> int:
    stripped = text.strip()
    if not stripped:
        return DEFAULT_PORT  # libpq: an empty entry of a port list is the default port
    if not stripped.isascii() or not stripped.isdigit() or not 1 <= int(stripped) <= 65535:
        raise ValueError(f"invalid port {text!r}")
    return int(stripped)


@dataclass(frozen=True)
class ServerIdentity:
    """Everything known about the server a target reaches.

    ``reached`` says whether the facts from inside a session were read; a
    server that was only resolved carries its endpoints alone, which can show
    two targets are the same server but never that they differ.
    """

    target: str
    endpoints: frozenset[Endpoint] = field(default_factory=frozenset)
    postmaster_start: datetime | None = None
    system_identifier: int | None = None
    reached: bool = False

    def describe(self) -> str:
        parts = [", ".join(str(e) for e in sorted(self.endpoints)) or "no endpoint"]
        if self.system_identifier is not None:
            parts.append(f"system identifier {self.system_identifier}")
        if self.postmaster_start is not None:
            parts.append(f"started {self.postmaster_start.isoformat()}")
        return "; ".join(parts)


def same_server_evidence(a: ServerIdentity, b: ServerIdentity) -> list[str]:
    """Every fact saying ``a`` and ``b`` are one server; empty when none does.

    Empty does not prove two servers differ unless both were reached (see
    :func:`proven_distinct`).
    """
    evidence = []
    own_postmasters = (a.postmaster_start is not None and b.postmaster_start is not None
                       and a.postmaster_start != b.postmaster_start)
    if a.system_identifier is not None and a.system_identifier == b.system_identifier and not own_postmasters:
        evidence.append(f"the same system identifier {a.system_identifier}")
    if a.postmaster_start is not None and a.postmaster_start == b.postmaster_start:
        evidence.append(f"the same postmaster start time {a.postmaster_start.isoformat()}")
    shared = sorted(a.endpoints & b.endpoints)
    if shared:
        evidence.append("the same address and port " + ", ".join(str(e) for e in shared))
    return evidence


def proven_distinct(a: ServerIdentity, b: ServerIdentity) -> bool:
    """True only when both servers answered from inside a session and no fact ties them together."""
    return a.reached and b.reached and not same_server_evidence(a, b)


def endpoints_of(pairs: Iterable[tuple[str, int]]) -> frozenset[Endpoint]:
    """TCP endpoints from (address, port) pairs, normalised."""
    return frozenset(tcp_endpoint(address, port) for address, port in pairs)
