"""The cadence ledger on S3 (moto's S3 server on loopback): chain, races, damage, unreachable."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from checks.signatures import load_trusted_root
from checks.verdict import Outcome
from drillbook.audit import s3_ledger
from drills.processes import S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, S3Server, free_port
from drills.signing_authority import DEFAULT_IDENTITY, DEFAULT_ISSUER, SigningAuthority
from reports.evidence_signature import Trust
from reports.ledger import GENESIS, LedgerError, NewEntry, _with_hash, parse_entry
from reports.ledger_heads import HeadError, sign_run_head, verify_heads
from reports.ledger_s3 import S3Ledger

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]



def options(s3_server: S3Server) -> dict[str, str]:
    return {"endpoint_url": s3_server.endpoint_url, "access_key_id": S3_ACCESS_KEY_ID,
            "secret_access_key": S3_SECRET_ACCESS_KEY}


@pytest.fixture
def ledger(s3_server: S3Server) -> S3Ledger:
    bucket = f"ledger-{secrets.token_hex(4)}"
    made = s3_ledger(f"s3://{bucket}/drillbook/ledger", options(s3_server))
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

    def test_racing_appends_lose_nothing(self, ledger: S3Ledger, s3_server: S3Server) -> None:
        """Two writers with their own clients, 15 runs each, at once: 30 runs, one chain."""
        url = f"s3://{ledger.location.bucket}/{ledger.location.prefix}"
        errors: list[Exception] = []

        def writer(name: str) -> None:
            mine = s3_ledger(url, options(s3_server))
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

    def test_missing_bucket_is_named(self, s3_server: S3Server) -> None:
        missing = s3_ledger("s3://no-such-ledger-bucket/x/", options(s3_server))
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
    def test_run_appends_and_status_reads_the_s3_ledger(self, s3_server: S3Server, tmp_path: Path) -> None:
        """`drillbook run` and `drillbook status` with `[ledger] url = "s3://..."`, as a team sets it."""
        made, env, common = _gate_on_s3_ledger(s3_server, tmp_path)
        bucket = made.location.bucket
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


@pytest.fixture(scope="module")
def authority() -> SigningAuthority:
    return SigningAuthority.create("s3-heads-test")


@pytest.fixture(scope="module")
def trust(authority: SigningAuthority, tmp_path_factory: pytest.TempPathFactory) -> Trust:
    root = authority.write_trusted_root(tmp_path_factory.mktemp("root") / "root.json")
    return Trust(load_trusted_root(root), DEFAULT_IDENTITY, DEFAULT_ISSUER, options="--trusted-root")


class TestSignedHeadsOnS3:
    """Signed heads as objects under ``<prefix>heads/``, against moto's real S3 server."""

    @staticmethod
    def signed_run(ledger: S3Ledger, authority: SigningAuthority, run_id: str, outcome: Outcome) -> None:
        appended = ledger.append([replace(entry("BKP-01", run_id), outcome=outcome), entry("BKP-02", run_id)])
        first = next(e for e in ledger.read().entries if e.seq == 1)
        sign_run_head(ledger, appended, lambda data: json.dumps(authority.sign(data)).encode(),
                      ledger_id=first.hash, location=str(ledger.location), now=datetime.now(UTC))

    def signed(self, ledger: S3Ledger, authority: SigningAuthority) -> S3Ledger:
        for run_id, outcome in (("r1", Outcome.PASSED), ("r2", Outcome.FAILED), ("r3", Outcome.PASSED)):
            self.signed_run(ledger, authority, run_id, outcome)
        return ledger

    @staticmethod
    def rewrite(ledger: S3Ledger, seq: int) -> None:
        """Entry ``seq`` failed -> passed, every later object re-chained and overwritten in place."""
        bucket, prefix = ledger.location.bucket, ledger.location.prefix
        prev = GENESIS
        for key in sorted(k for k in keys(ledger) if k[len(prefix):].endswith(".jsonl")
                          and "/" not in k[len(prefix):]):
            body = ledger.client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            lines = []
            for line in body.splitlines():
                item = parse_entry(line)
                changed = replace(item, outcome=Outcome.PASSED) if item.seq == seq else item
                forged = _with_hash(replace(changed, prev=prev))
                prev = forged.hash
                lines.append(forged.line())
            ledger.client.put_object(Bucket=bucket, Key=key, Body="".join(lines).encode())

    def test_heads_are_objects_beside_the_runs_and_not_foreign(
            self, ledger: S3Ledger, authority: SigningAuthority, trust: Trust) -> None:
        self.signed(ledger, authority)
        assert [k for k in keys(ledger) if "/heads/" in k] == [
            f"drillbook/ledger/heads/{n:012d}.json" for n in (1, 3, 5)]
        read = ledger.read()
        assert read.ok, read.problems
        verdict = verify_heads(read, trust)
        assert verdict.ok and (verdict.verified, verdict.covered_to) == (3, 6)

    def test_heads_are_create_only(self, ledger: S3Ledger, authority: SigningAuthority) -> None:
        self.signed(ledger, authority)
        with pytest.raises(HeadError, match="exists already"):
            ledger.create_head("000000000001.json", b"{}")

    def test_a_rechained_rewrite_is_named_with_the_trusted_root(
            self, ledger: S3Ledger, authority: SigningAuthority, trust: Trust) -> None:
        self.signed(ledger, authority)
        self.rewrite(ledger, 3)
        read = ledger.read()
        problems = [str(p) for p in [*read.problems, *verify_heads(read, trust).problems]]
        assert problems[0].startswith(f"s3://{ledger.location.bucket}/drillbook/ledger: entry seq 3 "
                                      "(BKP-01, run r2, now passed) was rewritten after run r2 signed it")

    def test_the_rewrite_with_heads_deleted_passes_unsigned_but_not_trusted(
            self, ledger: S3Ledger, authority: SigningAuthority, trust: Trust) -> None:
        self.signed(ledger, authority)
        self.rewrite(ledger, 3)
        for n in (3, 5):
            ledger.client.delete_object(Bucket=ledger.location.bucket,
                                        Key=f"drillbook/ledger/heads/{n:012d}.json")
        read = ledger.read()
        assert read.ok  # what the chain alone does not reveal
        assert [str(p).split(": ", 1)[1][:40] for p in verify_heads(read, trust).problems] == [
            "entries seq 3..6 (run r2, r3) are vouche"]

    def test_a_signing_run_and_a_trusted_status_on_s3(self, s3_server: S3Server, tmp_path: Path) -> None:
        """`drillbook run --sign-sandbox` with `[ledger] url = "s3://..."`, then `status --trusted-root`
        before and after the run's failed entry is rewritten as passed and re-chained in place."""
        made, env, common = _gate_on_s3_ledger(s3_server, tmp_path)
        bucket = made.location.bucket
        out = tmp_path / "out"
        run = subprocess.run([sys.executable, "-m", "drillbook.cli", "run", *common, "--out", str(out),
                              "--sign-sandbox"],
                             capture_output=True, text=True, cwd=REPO, env=env, timeout=120, check=False)
        assert run.returncode == 1, run.stdout + run.stderr  # TST-09 never passed before
        assert f"signed:   s3://{bucket}/runs/heads/000000000001.json" in run.stdout
        root = str(out / "sandbox-authority" / "trusted_root.json")

        def status() -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "drillbook.cli", "status", "--json", *common,
                                   "--trusted-root", root],
                                  capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=False)

        before = status()
        assert before.returncode == 0, before.stdout + before.stderr
        assert json.loads(before.stdout)["ledger_signed_heads"]["verified"] == 1
        self.rewrite(made, 1)
        after = status()
        assert after.returncode == 1, after.stdout + after.stderr
        data = json.loads(after.stdout)
        assert data["ledger_problems"][0].startswith(
            f"s3://{bucket}/runs: entry seq 1 (TST-09, run ")
        assert "now passed) was rewritten" in data["ledger_problems"][0]


def _gate_on_s3_ledger(s3_server: S3Server, tmp_path: Path) -> tuple[S3Ledger, dict[str, str], list[str]]:
    """A fresh bucket's ledger, a one-scenario cadence-gate feature, and a config pointing at both.

    Returns the ledger, the environment holding its secret, and the ``--config/--features`` args.
    """
    bucket = f"ledger-{secrets.token_hex(4)}"
    made = s3_ledger(f"s3://{bucket}/runs/", options(s3_server))
    assert isinstance(made, S3Ledger)
    made.client.create_bucket(Bucket=bucket)
    features = tmp_path / "features"
    features.mkdir()
    (features / "gate.feature").write_text(
        "Feature: g\n  @id:TST-09 @weekly\n  Scenario: s\n"
        "    Then the drill `TST-09` passed within its cadence\n")
    config = tmp_path / "drillbook.toml"
    config.write_text(f'[ledger]\nurl = "s3://{bucket}/runs/"\nendpoint_url = "{s3_server.endpoint_url}"\n'
                      'access_key_id = "testing"\nsecret_access_key = "${LEDGER_SECRET}"\n')
    env = {**os.environ, "LEDGER_SECRET": S3_SECRET_ACCESS_KEY}
    return made, env, ["--config", str(config), "--features", str(features)]
