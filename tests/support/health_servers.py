"""Real loopback servers for the health-check tests: HTTPS with trustme chains, an exporter, Prometheus.

Nothing here is mocked: the HTTPS service is Python's ``http.server`` behind a
real TLS handshake with certificates issued by ``trustme``; Prometheus is the
Debian package's binary, scraping a ``/metrics`` endpoint served the same way.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
import ssl
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mirakuru import HTTPExecutor

from drills.processes import free_port

PROMETHEUS = "/usr/bin/prometheus"
PROMETHEUS_START_S = 60.0
FIRST_SCRAPE_S = 30.0
# What the HTTPS test service's /private route wants in its Authorization header.
API_TOKEN = "Bearer t0ken-1234"


@dataclass(frozen=True)
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay_s: float = 0.0
    need_header: tuple[str, str] | None = None
    # Extra response headers, e.g. a redirect's ("Location", url).
    headers: tuple[tuple[str, str], ...] = ()


def redirect_route(location: str, status: int = 302, body: bytes = b"") -> Route:
    """A 3xx pointing at ``location`` (its body, if any, must never be judged as the target's)."""
    return Route(status=status, body=body, headers=(("Location", location),))


@dataclass(frozen=True)
class Received:
    """One request a test server got: its path and every header as sent."""

    path: str
    headers: tuple[tuple[str, str], ...]


def json_route(document: object, status: int = 200, **kw: object) -> Route:
    return Route(status=status, body=json.dumps(document).encode(), **kw)  # type: ignore[arg-type]


@dataclass
class Served:
    """A running loopback HTTP(S) server: its base URL and port."""

    url: str
    port: int
    server: ThreadingHTTPServer
    thread: threading.Thread
    routes: dict[str, Route] = field(default_factory=dict)
    # Every request in arrival order: what a redirect test asserts never reached this server.
    received: list[Received] = field(default_factory=list)


@contextlib.contextmanager
def serve(routes: Mapping[str, Route], *, tls: ssl.SSLContext | None = None) -> Iterator[Served]:
    """Serve ``routes`` (path → Route) on 127.0.0.1 until the block ends; unknown paths are 404.

    ``routes`` may be changed while it runs (``Served.routes``): a redirect can name a server
    started after this one. Every request is recorded in ``Served.received``.
    """
    table = dict(routes)
    received: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append(Received(path=self.path, headers=tuple(self.headers.items())))
            route = table.get(self.path.split("?")[0])
            if route is None:
                route = Route(status=404, body=b'{"error": "not found"}')
            needed = route.need_header
            if needed is not None and self.headers.get(needed[0]) != needed[1]:
                route = Route(status=401, body=b'{"error": "unauthorized"}')
            if route.delay_s:
                time.sleep(route.delay_s)
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(route.body)))
            for name, value in route.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    scheme = "https" if tls is not None else "http"
    try:
        yield Served(
            url=f"{scheme}://127.0.0.1:{port}", port=port, server=server, thread=thread, routes=table,
            received=received,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def server_context(cert_pem: bytes, key_pem: bytes, workdir: Path) -> ssl.SSLContext:
    """A server-side TLS context presenting ``cert_pem`` (leaf first, then intermediates)."""
    cert_file = workdir / f"cert-{time.monotonic_ns()}.pem"
    key_file = workdir / f"key-{time.monotonic_ns()}.pem"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


@dataclass(frozen=True)
class Pki:
    """A trustme CA and its files: a valid chain (via an intermediate), an expired leaf, a self-signed one."""

    ca: trustme.CA
    ca_file: Path
    valid_chain: bytes
    valid_key: bytes
    expired_chain: bytes
    expired_key: bytes
    self_signed: bytes
    self_signed_key: bytes


def make_pki(workdir: Path, *, now: datetime) -> Pki:
    ca = trustme.CA(organization_name="drillbook test CA")
    ca_file = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    intermediate = ca.create_child_ca()
    valid = intermediate.issue_cert(
        "127.0.0.1", "localhost", "health.drillbook.test", not_after=now + timedelta(days=90)
    )
    expired = ca.issue_cert(
        "127.0.0.1", "localhost", not_before=now - timedelta(days=100), not_after=now - timedelta(days=3)
    )
    self_signed, self_key = _self_signed(now)
    return Pki(
        ca=ca,
        ca_file=ca_file,
        valid_chain=b"".join(p.bytes() for p in valid.cert_chain_pems),
        valid_key=valid.private_key_pem.bytes(),
        expired_chain=b"".join(p.bytes() for p in expired.cert_chain_pems),
        expired_key=expired.private_key_pem.bytes(),
        self_signed=self_signed,
        self_signed_key=self_key,
    )


def _self_signed(now: datetime) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


# --- Prometheus -------------------------------------------------------------------------------------

EXPORTER_METRICS = (
    "# HELP sark_requests_total Requests served.\n"
    "# TYPE sark_requests_total counter\n"
    'sark_requests_total{code="200"} 9990\n'
    'sark_requests_total{code="500"} 10\n'
    "# HELP sark_availability_ratio Availability over the SLO window.\n"
    "# TYPE sark_availability_ratio gauge\n"
    "sark_availability_ratio 0.9995\n"
    "# HELP edge_heartbeat_age_seconds Seconds since the edge node's last heartbeat.\n"
    "# TYPE edge_heartbeat_age_seconds gauge\n"
    'edge_heartbeat_age_seconds{node="edge-1"} 12\n'
    'edge_heartbeat_age_seconds{node="edge-2"} 75\n'
)


def prometheus_available() -> bool:
    return Path(PROMETHEUS).is_file() or shutil.which("prometheus") is not None


@dataclass
class PrometheusRun:
    url: str
    exporter_url: str


@contextlib.contextmanager
def prometheus_scraping_exporter() -> Iterator[PrometheusRun]:
    """Debian's Prometheus on loopback scraping a /metrics endpoint every second; ready after one scrape."""
    binary = PROMETHEUS if Path(PROMETHEUS).is_file() else str(shutil.which("prometheus"))
    workdir = Path(tempfile.mkdtemp(prefix="drillbook-prometheus-"))
    try:
        with serve(
            {"/metrics": Route(body=EXPORTER_METRICS.encode(), content_type="text/plain; version=0.0.4")}
        ) as exporter:
            port = free_port()
            config = workdir / "prometheus.yml"
            config.write_text(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: exporter\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{exporter.port}']\n"
            )
            command = [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ]
            url = f"http://127.0.0.1:{port}"
            with (workdir / "prometheus.log").open("w") as log:
                executor = HTTPExecutor(
                    command, url=f"{url}/-/ready", timeout=PROMETHEUS_START_S, stdout=log, stderr=log
                )
                executor.start()
                try:
                    _wait_first_scrape(url)
                    yield PrometheusRun(url=url, exporter_url=exporter.url)
                finally:
                    executor.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_first_scrape(url: str) -> None:
    """Until ``up{job="exporter"}`` is 1 and the exporter's gauges are queryable; fail at the deadline."""
    query = urllib.request.quote('up{job="exporter"} == 1 and on() sark_availability_ratio')
    deadline = time.monotonic() + FIRST_SCRAPE_S
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError, ValueError),
            urllib.request.urlopen(f"{url}/api/v1/query?query={query}", timeout=2) as answer,  # noqa: S310
        ):
            if json.loads(answer.read())["data"]["result"]:
                return
        time.sleep(0.2)
    raise TimeoutError(f"Prometheus at {url} had not scraped the exporter within {FIRST_SCRAPE_S:g} s")


def utc_now() -> datetime:
    return datetime.now(UTC)
