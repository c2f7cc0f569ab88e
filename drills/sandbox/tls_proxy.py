"""HTTPS in front of the sandbox's plain-HTTP S3, on a loopback port (pgBackRest speaks only HTTPS).

One small TLS terminator serves both sandbox environments: in ``local`` it fronts moto's
in-process server, in ``containers`` the S3 container's published port (moto or MinIO), so the
two serve the same objects over TLS the same way. A second werkzeug server with an
``ssl_context`` over moto's WSGI app would do for ``local`` only. The certificate comes from the
run's :class:`~drills.sandbox.services.SandboxCA` (``DNS:localhost`` and 127.0.0.1); clients are
given that CA, never told to skip verification.

Bytes are relayed unchanged (the ``Host`` header too, so S3 signatures still match). One thread
per connection; pgBackRest opens a handful.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import socketserver
import ssl
import threading
from pathlib import Path

_CHUNK = 256 * 1024
_IDLE_S = 60.0
_HANDSHAKE_S = 10.0


class TlsProxy:
    """``https://localhost:<port>`` relaying every connection to ``127.0.0.1:<upstream>``."""

    def __init__(self, upstream_port: int, cert_file: Path, key_file: Path) -> None:
        self.upstream_port = upstream_port
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_file, key_file)
        upstream = upstream_port

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                _relay(self.request, context, upstream)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def label(self) -> str:
        return f"S3 over TLS on 127.0.0.1:{self.port}"

    @property
    def endpoint_url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> TlsProxy:
        """Serve in a daemon thread (the socket is bound already: clients may connect at once)."""
        # A short poll: stop() returns within 50 ms rather than werkzeug-like 0.5 s.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=self.label,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and close the socket; idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._server.shutdown()
            thread.join(timeout=5)
        self._server.server_close()


def _relay(raw: socket.socket, context: ssl.SSLContext, upstream_port: int) -> None:
    """TLS handshake with the client, then copy bytes both ways until either side closes."""
    raw.settimeout(_HANDSHAKE_S)
    try:
        client = context.wrap_socket(raw, server_side=True)
    except (OSError, ssl.SSLError):
        return  # a client that does not trust the CA, or a port scan: nothing to relay
    try:
        with socket.create_connection(("127.0.0.1", upstream_port), timeout=_HANDSHAKE_S) as server:
            # Small requests and answers back to back: Nagle + delayed ACK would add ~40 ms to each.
            for end in (client, server):
                end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                end.setblocking(False)
            with selectors.DefaultSelector() as selector:
                selector.register(client, selectors.EVENT_READ, server)
                selector.register(server, selectors.EVENT_READ, client)
                while True:
                    # An SSL socket may hold decrypted bytes the selector cannot see.
                    ready: list[tuple[object, socket.socket]] = \
                        [(client, server)] if client.pending() else []
                    if not ready:
                        events = selector.select(timeout=_IDLE_S)
                        if not events:
                            return
                        ready = [(key.fileobj, key.data) for key, _ in events]
                    for source, sink in ready:
                        if not _pump(source, sink):
                            return
    except OSError:
        return
    finally:
        with contextlib.suppress(OSError):
            client.close()


def _pump(source: object, sink: socket.socket) -> bool:
    """One read from ``source`` written whole to ``sink``; False at end of stream."""
    assert isinstance(source, socket.socket)
    try:
        data = source.recv(_CHUNK)
    except (ssl.SSLWantReadError, BlockingIOError):
        return True
    if not data:
        return False
    sink.settimeout(_IDLE_S)  # a blocking send of the whole chunk: the other side reads meanwhile
    try:
        sink.sendall(data)
    finally:
        sink.setblocking(False)
    return True
