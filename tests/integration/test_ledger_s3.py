"""The cadence ledger on S3 (moto's S3 server on loopback): chain, races, damage, unreachable."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checks.verdict import Outcome
from drillbook.audit import s3_ledger
from drills.processes import S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, S3Server, free_port
from reports.ledger import LedgerError, NewEntry
from reports.ledger_s3 import S3Ledger

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    s3 = S3Server()
    s3.start()
    try:
        yield s3
    finally:
        s3.stop()


def options(server: S3Server) -> dict[str, str]:
    return {"endpoint_url": server.endpoint_url, "access_key_id": S3_ACCESS_KEY_ID,
            "secret_access_key": S3_SECRET_ACCESS_KEY}


@pytest.fixture
def ledger(server: S3Server) -> S3Ledger:
    bucket = f"ledger-{secrets.token_hex(4)}"
    made = s3_ledger(f"s3://{bucket}/drillbook/ledger", options(server))
    assert isinstance(made, S3Ledger)
    made.client.create_bucket(Bucket=bucket)
    return made


def entry(ident: str, run_id: str = "r1") -> NewEntry:
    return NewEntry(id=ident, scenario="s", cadence="monthly", pack="backup", outcome=Outcome.PASSED,
                    run_id=run_id, time="2026-11-22T09:00:00+00:00", duration_s=1.0, evidence_sha256="00")


def keys(ledger: S3Ledger) -> list[str]:
    page: dict[str, Any] = ledger.client.list_objects_v2(Bucket=ledger.location.bucket)
    return [o["Key"] for o in page.get("Contents", [])]


class TestS3Ledger:
    def test_each_run_is_one_object_named_by_its_first_seq(self, ledger: S3Ledger) -> None:
        ledger.append([entry("BKP-01"), entry("BKP-02")])
        ledger.append([entry("BKP-01", "r2")])
        assert keys(ledger) == ["drillbook/ledger/000000000001.jsonl", "drillbook/ledger/000000000003.jsonl"]
        read = ledger.read()
        assert read.ok, read.problems
        assert [e.seq for e in read.entries] == [1, 2, 3]
        assert read.entries[2].prev == read.entries[1].hash

    def test_racing_appends_lose_nothing(self, ledger: S3Ledger, server: S3Server) -> None:
        """Two writers with their own clients, 15 runs each, at once: 30 runs, one chain."""
        url = f"s3://{ledger.location.bucket}/{ledger.location.prefix}"
        errors: list[Exception] = []

        def writer(name: str) -> None:
            mine = s3_ledger(url, options(server))
            try:
                for i in range(15):
                    mine.append([entry(f"{name}-{i}", f"{name}{i}")])
            except Exception as exc:  # noqa: BLE001 - a thread's error, surfaced by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in ("A", "B")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        read = ledger.read()
        assert read.ok, read.problems
        assert sorted(e.id or "" for e in read.entries) == sorted(
            [f"A-{i}" for i in range(15)] + [f"B-{i}" for i in range(15)])

    def test_edited_object_is_named(self, ledger: S3Ledger) -> None:
        ledger.append([entry("BKP-01")])
        ledger.append([entry("BKP-02", "r2")])
        key = "drillbook/ledger/000000000001.jsonl"
        body = ledger.client.get_object(Bucket=ledger.location.bucket, Key=key)["Body"].read()
        ledger.client.put_object(Bucket=ledger.location.bucket, Key=key,
                                 Body=body.replace(b'"outcome":"passed"', b'"outcome":"failed"'))
        assert [str(p) for p in ledger.read().problems] == [
            "line 1: entry seq 1 was edited: its content does not match its hash"]

    def test_deleted_object_is_named(self, ledger: S3Ledger) -> None:
        for i in range(3):
            ledger.append([entry(f"BKP-0{i}", f"r{i}")])
        ledger.client.delete_object(Bucket=ledger.location.bucket, Key="drillbook/ledger/000000000002.jsonl")
        assert [str(p) for p in ledger.read().problems] == ["line 2: entry seq 2 deleted before seq 3"]

    def test_foreign_object_is_named(self, ledger: S3Ledger) -> None:
        ledger.append([entry("BKP-01")])
        ledger.client.put_object(Bucket=ledger.location.bucket, Key="drillbook/ledger/notes.txt", Body=b"x")
        assert "notes.txt is not a ledger object" in str(ledger.read().problems[0])

    def test_missing_bucket_is_named(self, server: S3Server) -> None:
        missing = s3_ledger("s3://no-such-ledger-bucket/x/", options(server))
        with pytest.raises(LedgerError) as caught:
            missing.read()
        assert "s3://no-such-ledger-bucket/x/" in str(caught.value)
        assert "NoSuchBucket" in str(caught.value)
        assert caught.value.hint

    def test_unreachable_endpoint_is_named_without_secrets(self) -> None:
        endpoint = f"http://127.0.0.1:{free_port()}"
        down = s3_ledger("s3://ledger-down/x/",
                         {**options_for(endpoint), "secret_access_key": "s3cr3t-key-x"})
        with pytest.raises(LedgerError) as caught:
            down.append([entry("BKP-01")])
        assert endpoint in str(caught.value)
        assert "s3cr3t-key-x" not in str(caught.value)


def options_for(endpoint: str) -> dict[str, str]:
    return {"endpoint_url": endpoint, "access_key_id": S3_ACCESS_KEY_ID}


class TestRunWithAnS3Ledger:
    def test_run_appends_and_status_reads_the_s3_ledger(self, server: S3Server, tmp_path: Path) -> None:
        """`drillbook run` and `drillbook status` with `[ledger] url = "s3://..."`, as a team sets it."""
        bucket = f"ledger-{secrets.token_hex(4)}"
        made = s3_ledger(f"s3://{bucket}/runs/", options(server))
        assert isinstance(made, S3Ledger)
        made.client.create_bucket(Bucket=bucket)
        features = tmp_path / "features"
        features.mkdir()
        (features / "gate.feature").write_text(
            "Feature: g\n  @id:TST-09 @weekly\n  Scenario: s\n"
            "    Then the drill `TST-09` passed within its cadence\n")
        config = tmp_path / "drillbook.toml"
        config.write_text(f'[ledger]\nurl = "s3://{bucket}/runs/"\nendpoint_url = "{server.endpoint_url}"\n'
                          'access_key_id = "testing"\nsecret_access_key = "${LEDGER_SECRET}"\n')
        env = {**os.environ, "LEDGER_SECRET": S3_SECRET_ACCESS_KEY}
        common = ["--config", str(config), "--features", str(features)]
        for _ in range(2):
            run = subprocess.run([sys.executable, "-m", "drillbook.cli", "run", *common,
                                  "--out", str(tmp_path / "out")],
                                 capture_output=True, text=True, cwd=REPO, env=env, timeout=120, check=False)
        # The first run never ran TST-09 before (fails); the second finds that run failed: still no pass.
        assert run.returncode == 1, run.stdout + run.stderr
        assert "never passed" in run.stdout
        assert keys(made) == [f"runs/{n:012d}.jsonl" for n in (1, 2)]
        status = subprocess.run([sys.executable, "-m", "drillbook.cli", "status", "--json", *common],
                                capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=False)
        assert status.returncode == 0, status.stdout + status.stderr
        data = json.loads(status.stdout)
        assert data["ledger"] == f"s3://{bucket}/runs/"
        assert [(d["id"], d["state"]) for d in data["drills"]] == [("TST-09", "overdue")]
        assert (tmp_path / "out" / "drillbook.prom").is_file()
