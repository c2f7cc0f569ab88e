"""Immutable backups against moto's real S3 HTTP server: the read-only facts and the probe.

The facts use the module's shared ``s3_server``. The probe needs IAM enforced, which moto does
only after ``INITIAL_NO_AUTH_ACTION_COUNT`` requests: it gets a moto server of its own, in a
subprocess (the setting is process-wide), set up unauthenticated and then switched to
enforcing with ``POST /moto-api/reset-auth`` = 0 — every request drillbook makes is then checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from checks.verdict import Outcome, Verdict
from drills.processes import S3Server, free_port
from drills.targets import StoreSpec
from steps.immutability import immutability_verdicts

KEY_ID = "testing"
SECRET = "moto-fake-secret-Immutable0000000000000"
DAY = datetime.now(UTC).strftime("%Y%m%d")
BACKUP = f"db/nightly_{DAY}_020000.sql.gz"
PATTERN = "nightly_%Y%m%d_%H%M%S.sql.gz"


def _client(endpoint: str, service: str = "s3", key: str = KEY_ID, secret: str = SECRET) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret)


def _spec(endpoint: str, bucket: str, **extra: Any) -> StoreSpec:
    keys = {"access_key_id": KEY_ID, "secret_access_key": SECRET, **extra}
    return StoreSpec(name="vault", url=f"s3://{bucket}/db/", key_pattern=PATTERN, endpoint_url=endpoint,
                     **keys)


def _bucket(s3: Any, name: str, *, lock_days: int | None = 30, mode: str = "COMPLIANCE",
            versioned: bool = True) -> str:
    if lock_days is None:
        s3.create_bucket(Bucket=name)
        if versioned:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    else:
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": mode, "Days": lock_days}}})
    s3.put_object(Bucket=name, Key=BACKUP, Body=b"dump")
    s3.put_object(Bucket=name, Key=BACKUP + ".sha256", Body=b"0" * 64 + b"  dump\n")
    return name


def _by_id(verdicts: list[Verdict]) -> dict[str, list[Verdict]]:
    found: dict[str, list[Verdict]] = {}
    for verdict in verdicts:
        found.setdefault(verdict.id, []).append(verdict)
    return found


def _text(verdicts: list[Verdict]) -> str:
    return json.dumps([v.to_dict() for v in verdicts], default=str)


@pytest.fixture(scope="module")
def s3(s3_server: S3Server) -> Any:
    return _client(s3_server.endpoint_url)


def test_locked_bucket_passes(s3_server: S3Server, s3: Any) -> None:
    bucket = _bucket(s3, "imm-locked")
    verdicts = immutability_verdicts(_spec(s3_server.endpoint_url, bucket), days=30, run_id="t")
    assert [v.outcome for v in verdicts] == [Outcome.PASSED] * 5, _text(verdicts)
    keys = [v.evidence["key"] for v in _by_id(verdicts)["immutability.object_retention"]]
    assert keys == [BACKUP, BACKUP + ".sha256"]
    assert SECRET not in _text(verdicts)


def test_unlocked_bucket_fails_naming_it(s3_server: S3Server, s3: Any) -> None:
    bucket = _bucket(s3, "imm-unlocked", lock_days=None)
    found = _by_id(immutability_verdicts(_spec(s3_server.endpoint_url, bucket), days=30, run_id="t"))
    lock = found["immutability.object_lock"][0]
    assert lock.outcome is Outcome.FAILED and "'imm-unlocked' has no Object Lock" in lock.message
    assert found["immutability.default_retention"][0].outcome is Outcome.NOT_APPLICABLE
    assert found["immutability.versioning"][0].outcome is Outcome.PASSED
    assert [v.outcome for v in found["immutability.object_retention"]] == [Outcome.FAILED] * 2
    assert f"{BACKUP} has no Object Lock retention" in found["immutability.object_retention"][0].message


def test_short_retention_fails_naming_the_days(s3_server: S3Server, s3: Any) -> None:
    bucket = _bucket(s3, "imm-short", lock_days=7)
    found = _by_id(immutability_verdicts(_spec(s3_server.endpoint_url, bucket), days=30, run_id="t"))
    default = found["immutability.default_retention"][0]
    assert default.outcome is Outcome.FAILED and "7 d < 30 d" in default.message
    for verdict in found["immutability.object_retention"]:
        assert verdict.outcome is Outcome.FAILED and "7.0 d from its write < 30 d" in verdict.message


def test_governance_is_a_warning(s3_server: S3Server, s3: Any) -> None:
    bucket = _bucket(s3, "imm-governance", mode="GOVERNANCE", lock_days=40)
    found = _by_id(immutability_verdicts(_spec(s3_server.endpoint_url, bucket), days=30, run_id="t"))
    assert found["immutability.default_retention"][0].outcome is Outcome.WARNING
    assert "BypassGovernanceRetention" in found["immutability.object_retention"][0].message


def test_versioning_never_enabled_fails(s3_server: S3Server, s3: Any) -> None:
    bucket = _bucket(s3, "imm-unversioned", lock_days=None, versioned=False)
    found = _by_id(immutability_verdicts(_spec(s3_server.endpoint_url, bucket), days=30, run_id="t"))
    versioning = found["immutability.versioning"][0]
    assert versioning.outcome is Outcome.FAILED and "versioning never enabled" in versioning.message


def test_missing_bucket_is_an_error_for_each_fact(s3_server: S3Server) -> None:
    verdicts = immutability_verdicts(_spec(s3_server.endpoint_url, "imm-nowhere"), days=30, run_id="t")
    found = _by_id(verdicts)
    assert found["immutability.object_lock"][0].outcome is Outcome.ERROR
    assert "imm-nowhere" in found["immutability.object_lock"][0].message
    assert found["immutability.versioning"][0].outcome is Outcome.ERROR
    # No backup found is a failure by the project's convention (verdict_from_error), named too.
    retention = found["immutability.object_retention"][0]
    assert retention.outcome is Outcome.FAILED and "imm-nowhere" in retention.message
    assert SECRET not in _text(verdicts)


def test_directory_store_is_not_applicable(tmp_path: Path) -> None:
    spec = StoreSpec(name="disk", url=str(tmp_path))
    [verdict] = immutability_verdicts(spec, days=30, run_id="t")
    assert verdict.outcome is Outcome.NOT_APPLICABLE and "no object lock" in verdict.message


# -- the probe: IAM enforced by a moto server of its own ----------------------------------------

ACCOUNT = "123456789012"
READER_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
DENY_DELETE = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject", "s3:ListBucket"], "Resource": "*"},
    {"Effect": "Deny", "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"], "Resource": "*"}]}
ALLOW_DELETE = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject",
                                   "s3:DeleteObjectVersion"], "Resource": "*"}]}
TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/reader"},
     "Action": "sts:AssumeRole"}]}


def _wait(endpoint: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "moto server exited"
        try:
            with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):  # noqa: S310
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("moto server did not answer")


@pytest.fixture(scope="module")
def enforcing() -> Iterator[dict[str, Any]]:
    """A moto server enforcing IAM: a reader user, two roles, a locked bucket with a foreign object."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "1000000"}
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(endpoint, process)
        iam = _client(endpoint, "iam")
        iam.create_user(UserName="reader")
        access = iam.create_access_key(UserName="reader")["AccessKey"]
        iam.put_user_policy(UserName="reader", PolicyName="all", PolicyDocument=json.dumps(READER_POLICY))
        for role, policy in (("writer-locked", DENY_DELETE), ("writer-open", ALLOW_DELETE)):
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(TRUST))
            iam.put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=json.dumps(policy))
        s3 = _client(endpoint)
        _bucket(s3, "imm-probe")
        s3.put_object(Bucket="imm-probe", Key="probes/not-ours", Body=b"someone else's")
        _bucket(s3, "imm-open", lock_days=None)
        # From here on every request is authenticated and authorised.
        request = urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0", method="POST",  # noqa: S310
                                         headers={"Content-Type": "text/plain"})  # form data is eaten
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310
            pass
        yield {"endpoint": endpoint, "key": access["AccessKeyId"], "secret": access["SecretAccessKey"]}
    finally:
        process.terminate()
        process.wait(timeout=10)


def _probe_spec(env: dict[str, Any], role: str) -> StoreSpec:
    return StoreSpec(name="vault", url="s3://imm-probe/db/", key_pattern=PATTERN,
                     endpoint_url=env["endpoint"], access_key_id=env["key"], secret_access_key=env["secret"],
                     probe_role_arn=f"arn:aws:iam::{ACCOUNT}:role/{role}", probe_prefix="probes/")


def _versions(env: dict[str, Any]) -> list[tuple[str, str]]:
    s3 = _client(env["endpoint"], key=env["key"], secret=env["secret"])
    answer = s3.list_object_versions(Bucket="imm-probe")
    return sorted((v["Key"], v["VersionId"]) for v in answer.get("Versions", []))


def test_probe_role_denied_delete_passes(enforcing: dict[str, Any]) -> None:
    before = _versions(enforcing)
    verdicts = immutability_verdicts(_probe_spec(enforcing, "writer-locked"), days=30, run_id="run-1")
    found = _by_id(verdicts)
    assert [v.outcome for v in verdicts] == [Outcome.PASSED] * 7, _text(verdicts)
    marker = found["immutability.probe_delete"][0].evidence["marker"]
    assert marker.startswith("probes/drillbook-probe/run-1-")
    after = _versions(enforcing)
    assert set(before) < set(after) and {k for k, _ in set(after) - set(before)} == {marker}
    assert enforcing["secret"] not in _text(verdicts)


def test_probe_role_allowed_to_delete_fails_naming_the_delete_marker(enforcing: dict[str, Any]) -> None:
    before = _versions(enforcing)
    verdicts = immutability_verdicts(_probe_spec(enforcing, "writer-open"), days=30, run_id="run-2")
    found = _by_id(verdicts)
    delete = found["immutability.probe_delete"][0]
    assert delete.outcome is Outcome.FAILED, _text(verdicts)
    assert delete.evidence["delete_marker"] and delete.evidence["delete_marker"] in delete.message
    # The lock still refuses the version delete (moto enforces COMPLIANCE on versions).
    assert found["immutability.probe_delete_version"][0].outcome is Outcome.PASSED
    # Nothing drillbook did not write was touched: every earlier version is still there.
    assert set(before) <= set(_versions(enforcing))
    assert ("probes/not-ours" in {k for k, _ in before})
    assert enforcing["secret"] not in _text(verdicts)


def test_probe_unknown_role_is_an_error_naming_it(enforcing: dict[str, Any]) -> None:
    # Real STS refuses to assume a missing role; moto hands out credentials that then fail the put.
    verdicts = immutability_verdicts(_probe_spec(enforcing, "nobody"), days=30, run_id="run-3")
    probe = _by_id(verdicts)["immutability.probe"][0]
    assert probe.outcome is Outcome.ERROR and "role/nobody" in probe.message
    assert enforcing["secret"] not in _text(verdicts)


def test_retention_is_measured_from_the_write(s3_server: S3Server, s3: Any) -> None:
    # Retained 30 d from its write: asking 31 days fails, and a check 31 days later finds it ended.
    bucket = _bucket(s3, "imm-dated")
    spec = _spec(s3_server.endpoint_url, bucket)
    found = _by_id(immutability_verdicts(spec, days=31, run_id="t"))
    assert [v.outcome for v in found["immutability.object_retention"]] == [Outcome.FAILED] * 2
    later = _by_id(immutability_verdicts(spec, days=30, run_id="t",
                                         now=datetime.now(UTC) + timedelta(days=31)))
    assert "retention ended" in later["immutability.object_retention"][0].message


def test_drillbook_run_reports_every_fact_and_no_secret(enforcing: dict[str, Any], tmp_path: Path) -> None:
    """A real ``drillbook run``: the step from a feature, the probe from the config, secrets from ${VAR}."""
    common = (f'endpoint_url = "{enforcing["endpoint"]}"\nkey_pattern = "{PATTERN}"\n'
              'access_key_id = "${KEY_ID}"\nsecret_access_key = "${SECRET_KEY}"\n')
    config = tmp_path / "drillbook.toml"
    config.write_text(
        '[targets.vault]\nkind = "s3"\nurl = "s3://imm-probe/db/"\n' + common
        + 'probe_role_arn = "${ROLE}"\nprobe_prefix = "probes/"\n'
        '[targets.open]\nkind = "s3"\nurl = "s3://imm-open/db/"\n' + common, encoding="utf-8")
    features = tmp_path / "features"
    features.mkdir()
    (features / "immutable.feature").write_text(
        "Feature: immutable backups\n\n"
        "  @id:IMM-01 @weekly\n  Scenario: the vault is locked\n"
        '    Then the backups in "vault" cannot be deleted or changed for 30 days\n\n'
        "  @id:IMM-02 @weekly\n  Scenario: the open bucket is not\n"
        '    Then the backups in "open" cannot be deleted or changed for 30 days\n', encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "drillbook.cli", "run", "--config", str(config), "--features", str(features),
         "--out", str(out)], capture_output=True, text=True, timeout=300, check=False,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "KEY_ID": enforcing["key"], "SECRET_KEY": enforcing["secret"],
             "ROLE": f"arn:aws:iam::{ACCOUNT}:role/writer-locked"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [run] = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    results = json.loads((run / "results.json").read_text())
    scenarios = {s["id"]: s for s in results["scenarios"]}
    assert {k: s["outcome"] for k, s in scenarios.items()} == {"IMM-01": "passed", "IMM-02": "failed"}
    ids = [v["id"] for v in scenarios["IMM-01"]["verdicts"]]
    assert ids.count("immutability.object_retention") == 2 and "immutability.probe_delete_version" in ids
    marker = next(v for v in scenarios["IMM-01"]["verdicts"] if v["id"] == "immutability.probe_delete")
    assert marker["evidence"]["marker"].startswith(f"probes/drillbook-probe/{run.name}-")
    # Every check of the failing scenario is reported, not only the first failure.
    failed = {v["id"]: v["outcome"] for v in scenarios["IMM-02"]["verdicts"]}
    assert failed["immutability.object_lock"] == "failed" and failed["immutability.versioning"] == "passed"
    files = [p.read_text(errors="replace") for p in run.rglob("*") if p.is_file()]
    for text in [proc.stdout, proc.stderr, *files]:
        assert enforcing["secret"] not in text
