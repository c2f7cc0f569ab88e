"""A child PostgreSQL client gets its password from a private passfile: never argv, never our environment.

The server side is a loopback listener speaking just enough of the PostgreSQL protocol to ask
for a cleartext password and record what libpq (inside a real ``psql``) sends back.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drills import pgclient, pgtools


class PasswordCatcher:
    """Accepts connections; asks each for a cleartext password; records it; then says FATAL."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.passwords: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    self._one(conn)
                except (OSError, struct.error):
                    continue

    @staticmethod
    def _read(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise OSError("closed")
            data += chunk
        return data

    def _one(self, conn: socket.socket) -> None:
        (length,) = struct.unpack("!I", self._read(conn, 4))
        body = self._read(conn, length - 4)
        if struct.unpack("!I", body[:4])[0] == 80877103:  # SSLRequest: no
            conn.sendall(b"N")
            (length,) = struct.unpack("!I", self._read(conn, 4))
            self._read(conn, length - 4)
        conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
        kind = self._read(conn, 1)
        (length,) = struct.unpack("!I", self._read(conn, 4))
        payload = self._read(conn, length - 4)
        if kind == b"p":
            self.passwords.append(payload.rstrip(b"\0"))
        message = b"SFATAL\0C28P01\0Mcaught\0\0"
        conn.sendall(b"E" + struct.pack("!I", len(message) + 4) + message)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def catcher() -> PasswordCatcher:
    server = PasswordCatcher()
    yield server  # type: ignore[misc]
    server.close()


PASSWORDS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\0"),
    min_size=4, max_size=30,
)


class TestAccess:
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(password=PASSWORDS)
    def test_psql_sends_the_password_from_the_passfile(self, catcher: PasswordCatcher, password: str) -> None:
        """Reserved characters (colon, backslash, quotes, non-ASCII) survive the passfile; argv holds none."""
        dsn = psycopg.conninfo.make_conninfo(host="127.0.0.1", port=str(catcher.port), user="drill",
                                             dbname="scratch", password=password)
        before = len(catcher.passwords)
        with pgclient.access(dsn) as access:
            assert password not in access.conninfo and "password" not in access.conninfo
            assert password not in "".join(access.env.values())
            passfile = Path(access.env["PGPASSFILE"])
            assert passfile.stat().st_mode & 0o077 == 0
            subprocess.run([pgtools.tool("psql"), "-X", "-w", "-d", access.conninfo, "-c", "SELECT 1"],
                           env=access.env, capture_output=True, timeout=20, check=False)
        assert not passfile.exists() and not passfile.parent.exists()
        assert catcher.passwords[before:] == [password.encode()]

    def test_the_child_environment_is_only_what_it_needs(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Nothing of the parent's environment: not a DSN, not AWS keys, not PG* meant for elsewhere."""
        monkeypatch.setenv("PROD_PG_DSN", "postgresql://app:secret@prod/db")
        monkeypatch.setenv("PGPASSWORD", "someone-elses")
        with pgclient.access("host=127.0.0.1 dbname=x user=y password=pw-1234") as access:
            assert set(access.env) == {"PATH", "LANG", "LC_ALL", "PGCONNECT_TIMEOUT", "PGOPTIONS",
                                       "PGPASSFILE"}
        with pgclient.access("host=127.0.0.1 dbname=x user=y") as access:
            assert "PGPASSFILE" not in access.env and "PGPASSWORD" not in access.env
