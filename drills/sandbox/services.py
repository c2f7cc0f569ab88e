"""The sandbox products' HTTP services, their TLS certificates, and a real Prometheus scraping them.

Each product gets a small HTTP(S) server on loopback, served by a thread of
this process on a real socket (port chosen by the kernel): its health
endpoint exactly as its runbook documents it, plus a Prometheus ``/metrics``
endpoint whose counters grow with wall-clock time at the product's rates
(so ``rate()`` is exact after two scrapes). HTTPS services present
certificates issued by a sandbox CA made for the run (``ca.pem`` in the run's
temp dir); the TLS checks and Prometheus verify against it.

Prometheus is Debian's ``prometheus`` binary with a config of our own and a
temp TSDB, scraping every service each second. Its scrape manager applies
new targets on a fixed 5-second tick (2.42 has no flag for it), so the first
samples arrive ~5 s after launch: the sandbox spawns it at start without
waiting (the spawn costs milliseconds) and the first pack query waits for
three scrapes of every job. It holds only what it scraped since: the SLO
queries of the packs use production windows (``[30d]``), which Prometheus
evaluates over the samples it has. Backfilling 30 days with ``promtool tsdb
create-blocks-from openmetrics`` was the alternative, measured here: 19 of
Sovra's series at one-minute resolution are 55 MB of OpenMetrics (0.4 s to
write) and take promtool 83 s with its default 2-hour blocks, 1.2 s with
``--max-block-duration=744h``. It buys nothing the checks can see (the
sandbox's rates are constant, so a month gives the ratio a minute gives);
blocks cached per day end hours before ``now``, while the p95 (``[5m]``) and
heartbeat (5-minute lookback) queries need the last minutes, so it would
have to run on every start; and ``up``, the alert rules and the canary's
live faults still need live scrapes, so it would not remove the wait.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import signal
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from checks.errors import EnvironmentError_, ServerStartError

from ..processes import DEFAULT_TIMEOUT_S, _Process, free_port, wait_until

HOSTNAME = "localhost"
_ORGANIZATION = "drillbook sandbox"

# A route answers a query string with (status, body): a dict/list is sent as JSON, a str as text.
Payload = dict[str, Any] | list[Any] | str
Route = Callable[[str], tuple[int, Payload]]


# --- a CA for the run -----------------------------------------------------------------------------------


class SandboxCA:
    """A throwaway root CA issuing loopback server certificates (ECDSA P-256, ~1 ms each)."""

    def __init__(self, directory: Path, *, now: datetime) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._now = now
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"{_ORGANIZATION} root CA")])
        self._name = name
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=800)).not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, *, valid_from: timedelta = timedelta(days=30),
              valid_for: timedelta = timedelta(days=365)) -> tuple[Path, Path]:
        """A server certificate for ``localhost`` and 127.0.0.1, valid from ``now - valid_from`` on.

        A ``valid_for`` shorter than ``valid_from`` gives an expired certificate.
        """
        import ipaddress

        key = ec.generate_private_key(ec.SECP256R1())
        start = self._now - valid_from
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
                                     x509.NameAttribute(NameOID.COMMON_NAME, f"{name}.{HOSTNAME}")]))
            .issuer_name(self._name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + valid_for)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOSTNAME),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                           critical=False)
            .sign(self._key, hashes.SHA256())
        )
        cert_file, key_file = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(0o600)
        return cert_file, key_file


# --- HTTP services ----------------------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    routes: Mapping[str, Route] = {}
    tls: bool = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that drops the connection or rejects our certificate is not our error to print."""


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    server_version = "drillbook-sandbox"
    sys_version = ""

    def setup(self) -> None:
        # The TLS handshake happens here, in the request's thread, not in the accept loop.
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
        super().setup()

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        route = self.server.routes.get(path)
        status, payload = route(query) if route is not None else (404, {"error": f"no route {path}"})
        if isinstance(payload, str):
            body, kind = payload.encode(), "text/plain; version=0.0.4; charset=utf-8"
        else:
            body, kind = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a run makes many requests."""


class ProductService:
    """One product's HTTP(S) endpoints on 127.0.0.1, served by a thread of this process."""

    def __init__(self, name: str, routes: Mapping[str, Route], *,
                 cert: tuple[Path, Path] | None = None) -> None:
        self.name = name
        self._routes = dict(routes)
        self._cert = cert
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def label(self) -> str:
        return f"sandbox service {self.name} on 127.0.0.1:{self.port}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1]) if self._server is not None else 0

    @property
    def url(self) -> str:
        return f"{'https' if self._cert else 'http'}://{HOSTNAME}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.routes = self._routes
        if self._cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self._cert)
            server.socket = context.wrap_socket(server.socket, server_side=True,
                                                do_handshake_on_connect=False)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"sandbox-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


# --- Prometheus exposition --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counter:
    """A counter growing at ``per_second`` since a day before the service started."""

    name: str
    labels: Mapping[str, str]
    per_second: float

    def value(self, elapsed_s: float) -> float:
        return self.per_second * (86_400 + elapsed_s)


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def exposition(*, counters: Sequence[Counter], gauges: Sequence[tuple[str, Mapping[str, str], float]],
               histogram: tuple[str, float, Mapping[float, float]] | None, elapsed_s: float) -> str:
    """Prometheus text format: counters, gauges, and one histogram (name, requests/s, le → share)."""
    lines: list[str] = []
    typed: set[str] = set()
    for counter in counters:
        if counter.name not in typed:
            lines.append(f"# TYPE {counter.name} counter")
            typed.add(counter.name)
        lines.append(f"{counter.name}{_labels(counter.labels)} {counter.value(elapsed_s):.3f}")
    for name, labels, value in gauges:
        if name not in typed:
            lines.append(f"# TYPE {name} gauge")
            typed.add(name)
        lines.append(f"{name}{_labels(labels)} {value:g}")
    if histogram is not None:
        name, per_second, shares = histogram
        total = per_second * (86_400 + elapsed_s)
        lines.append(f"# TYPE {name} histogram")
        mean = 0.0
        previous_le, previous_share = 0.0, 0.0
        for le, share in sorted(shares.items()):
            lines.append(f'{name}_bucket{{le="{le:g}"}} {total * share:.3f}')
            mean += (share - previous_share) * (le + previous_le) / 2
            previous_le, previous_share = le, share
        lines.append(f'{name}_bucket{{le="+Inf"}} {total:.3f}')
        lines.append(f"{name}_sum {total * mean:.3f}")
        lines.append(f"{name}_count {total:.3f}")
    return "\n".join(lines) + "\n"


# --- Prometheus ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScrapeJob:
    name: str
    port: int
    https: bool


class PrometheusServer:
    """Debian's ``prometheus`` on loopback, scraping the sandbox services every second."""

    def __init__(self, workdir: Path, jobs: list[ScrapeJob], *, ca_file: Path | None, rules: str = "",
                 binary: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        found = binary or shutil.which("prometheus")
        if found is None:
            raise EnvironmentError_(
                "the sandbox Prometheus needs the `prometheus` binary, which is not installed",
                hint="install Debian's `prometheus` package (./bootstrap does), or point the pack's "
                "Prometheus targets at a real server in drillbook.toml",
            )
        self.binary = found
        self.workdir = workdir
        self.jobs = list(jobs)
        self.ca_file = ca_file
        self.rules = rules
        self.port = free_port()
        self.timeout_s = timeout_s
        self._process: _Process | None = None

    @property
    def label(self) -> str:
        return f"Prometheus on 127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def config(self) -> str:
        """The prometheus.yml: one job per service, TLS verified against the sandbox CA."""
        lines = ["global:", "  scrape_interval: 1s", "  scrape_timeout: 900ms", "  evaluation_interval: 1s"]
        if self.rules:
            lines += ["rule_files:", f"  - {self.workdir / 'rules.yml'}"]
        lines.append("scrape_configs:")
        for job in self.jobs:
            lines += [f"  - job_name: {job.name}", f"    scheme: {'https' if job.https else 'http'}"]
            if job.https:
                lines += ["    tls_config:", f"      ca_file: {self.ca_file}",
                          f"      server_name: {HOSTNAME}"]
            lines += ["    static_configs:", f"      - targets: ['127.0.0.1:{job.port}']"]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(self.config(), encoding="utf-8")
        if self.rules:
            (self.workdir / "rules.yml").write_text(self.rules, encoding="utf-8")
        command = [self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                   f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1d",
                   "--log.level=warn"]
        self._process = _Process(self.label, command, log_path=self.workdir / "prometheus.log",
                                 timeout_s=self.timeout_s, stop_signal=signal.SIGTERM, popen_kwargs={})
        self._process.spawn()

    def query(self, promql: str) -> list[Any]:
        """The result vector of an instant query (raises on transport or query errors)."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback server
            body = json.loads(response.read())
        result: list[Any] = body["data"]["result"]
        return result

    def wait_ready(self, *, samples: int = 3) -> None:
        """Until every job has ``samples`` scrapes that came up.

        ``rate()`` needs two; the third leaves the rules a one-second evaluation over two.
        """
        process = self._process
        if process is None:
            raise ServerStartError(f"{self.label} was never started", server="prometheus", port=self.port)

        def scraped() -> bool:
            try:
                up = self.query("count_over_time(up[1m]) and up == 1")
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                return False
            return len(up) == len(self.jobs) and all(float(s["value"][1]) >= samples for s in up)

        try:
            wait_until(scraped, what=self.label, deadline_s=self.timeout_s, gave_up=process.exit_reason)
        except ServerStartError as exc:
            self.stop()
            raise ServerStartError(f"{exc.message}; last lines of its log:\n{process.log_tail()}",
                                   server="prometheus", port=self.port,
                                   hint="every sandbox service must answer /metrics") from None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(Exception):
                process.stop()


def now_utc() -> datetime:
    return datetime.now(UTC)
