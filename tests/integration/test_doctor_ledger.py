"""`drillbook doctor ledger`: racing create-only writers against moto's S3 server (one winner per
race: passes) and against a loopback S3 stand-in that ignores If-None-Match (every writer wins:
refused), as the library call and as the command."""

from __future__ import annotations

import http.server
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest

from checks.conditional_writes import race_create_only
from checks.verdict import Outcome
from drillbook.audit import s3_ledger
from drills.processes import S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, S3Server
from reports.ledger import NewEntry
from reports.ledger_s3 import S3Ledger

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
_SESSION = boto3.session.Session()


class _CarelessS3(http.server.BaseHTTPRequestHandler):
    """Path-style PUT/GET/DELETE of objects that honours no precondition: the last PUT wins."""

    protocol_version = "HTTP/1.1"  # answers Expect: 100-continue as botocore may send it
    objects: ClassVar[dict[str, bytes]] = {}
    lock: ClassVar[threading.Lock] = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.lock:
            self.objects[self.path] = data
        self._reply(200, headers={"ETag": f'"{secrets.token_hex(8)}"'})

    def do_GET(self) -> None:
        with self.lock:
            data = self.objects.get(self.path)
        if data is None:
            self._reply(404, b"<Error><Code>NoSuchKey</Code></Error>", {"Content-Type": "application/xml"})
        else:
            self._reply(200, data, {"Content-Type": "application/octet-stream"})

    def do_DELETE(self) -> None:
        with self.lock:
            self.objects.pop(self.path, None)
        self._reply(204)


@pytest.fixture(scope="module")
def careless() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CarelessS3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()



def options(endpoint: str) -> dict[str, str]:
    return {"endpoint_url": endpoint, "access_key_id": S3_ACCESS_KEY_ID,
            "secret_access_key": S3_SECRET_ACCESS_KEY}


def client_for(endpoint: str, url: str) -> Any:
    made = s3_ledger(url, options(endpoint), session=_SESSION)
    assert isinstance(made, S3Ledger)
    return made.client


def bucket_on(s3_server: S3Server) -> str:
    bucket = f"doctor-{secrets.token_hex(4)}"
    client_for(s3_server.endpoint_url, f"s3://{bucket}/").create_bucket(Bucket=bucket)
    return bucket


class TestRaceCreateOnly:
    def test_moto_has_one_winner_per_race_and_the_scratch_keys_go(self, s3_server: S3Server) -> None:
        bucket = bucket_on(s3_server)
        verdict = race_create_only(lambda: client_for(s3_server.endpoint_url, f"s3://{bucket}/"),
                                   bucket=bucket, scratch_prefix="ledger.doctor/", writers=8, trials=3)
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert verdict.evidence["winners_per_trial"] == [1, 1, 1]
        assert verdict.evidence["not_deleted"] == []
        listed = client_for(s3_server.endpoint_url, f"s3://{bucket}/").list_objects_v2(Bucket=bucket)
        assert listed.get("KeyCount", 0) == 0

    def test_an_endpoint_ignoring_if_none_match_is_refused(self, careless: str) -> None:
        verdict = race_create_only(lambda: client_for(careless, "s3://ops/"), bucket="ops",
                                   scratch_prefix="ledger.doctor/", writers=6, trials=2)
        assert verdict.outcome is Outcome.FAILED
        assert verdict.evidence["winners_per_trial"] == [6, 6]
        assert verdict.message.startswith("s3://ops/ledger.doctor/: the endpoint does not honour "
                                          "If-None-Match atomically: in 2 of 2 races of 6 writers more "
                                          "than one PUT")

    def test_a_missing_bucket_is_an_error_not_a_pass(self, s3_server: S3Server) -> None:
        verdict = race_create_only(lambda: client_for(s3_server.endpoint_url, "s3://no-such-doctor/"),
                                   bucket="no-such-doctor", scratch_prefix="x/", writers=2, trials=1)
        assert verdict.outcome is Outcome.ERROR
        assert "could not test conditional writes" in verdict.message
        assert "NoSuchBucket" in verdict.message


def doctor(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEDGER_SECRET": S3_SECRET_ACCESS_KEY}
    return subprocess.run([sys.executable, "-m", "drillbook.cli", "doctor", "ledger", "--config", str(config),
                           "--writers", "6", "--trials", "2", *extra],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=180, check=False)


def config_for(tmp_path: Path, endpoint: str, url: str) -> Path:
    config = tmp_path / "drillbook.toml"
    config.write_text(f'[ledger]\nurl = "{url}"\nendpoint_url = "{endpoint}"\n'
                      f'access_key_id = "{S3_ACCESS_KEY_ID}"\nsecret_access_key = "${{LEDGER_SECRET}}"\n')
    return config


class TestDoctorCommand:
    def test_passes_on_moto_and_leaves_the_ledger_readable(self, s3_server: S3Server, tmp_path: Path) -> None:
        bucket = bucket_on(s3_server)
        url = f"s3://{bucket}/drillbook/ledger/"
        ledger = s3_ledger(url, options(s3_server.endpoint_url), session=_SESSION)
        ledger.append([NewEntry(id="BKP-01", scenario="s", cadence="monthly", pack=None,
                                outcome=Outcome.PASSED, run_id="r1", time="2026-12-03T02:00:00+00:00",
                                duration_s=1.0, evidence_sha256="00")])
        done = doctor(config_for(tmp_path, s3_server.endpoint_url, url))
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith(f"drillbook doctor ledger: PASS — s3://{bucket}/drillbook/"
                                      "ledger.doctor/: each of 2 races of 6 create-only writers had "
                                      "exactly one winner")
        read = ledger.read()
        assert read.ok, read.problems  # the scratch keys were beside the ledger, and are gone
        assert S3_SECRET_ACCESS_KEY not in done.stdout + done.stderr

    def test_refuses_an_endpoint_that_ignores_if_none_match(self, careless: str, tmp_path: Path) -> None:
        done = doctor(config_for(tmp_path, careless, "s3://ops/ledger/"), "--json")
        assert done.returncode == 1, done.stdout + done.stderr
        assert '"outcome": "failed"' in done.stdout
        assert "does not honour If-None-Match atomically" in done.stdout

    def test_a_file_ledger_is_a_usage_error_naming_the_key(self, tmp_path: Path) -> None:
        config = tmp_path / "drillbook.toml"
        config.write_text('[ledger]\nurl = "out/ledger.jsonl"\n')
        done = doctor(config)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "`ledger.url`" in done.stderr and "s3://" in done.stderr
