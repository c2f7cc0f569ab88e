"""The immutability probe: can the backup job's role delete what it wrote?

Only when the store names ``probe_role_arn`` and ``probe_prefix`` (drills/config.py). The probe
assumes the role (STS, with the store's own keys), writes a marker object drillbook owns at
``<probe_prefix>drillbook-probe/<run-id>``, then tries, as the role:

1. ``delete_object`` of the marker **without** VersionId — governed by IAM's ``s3:DeleteObject``;
   Object Lock never blocks it (it only adds a delete marker). ``AccessDenied`` passes; success
   fails, naming the delete marker it created;
2. ``delete_object`` **with** the marker's VersionId — governed by the lock (and
   ``s3:DeleteObjectVersion``): ``AccessDenied`` passes; success fails.

It never names any key but its own marker and never any version but the one it wrote. The marker
inherits the bucket's default retention, so it stays (a few bytes) until that retention ends: on
real S3 a COMPLIANCE retention cannot be shortened. Never the policy simulator: moto lacks it.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from checks import redact
from checks.immutability import error_code
from checks.verdict import Verdict

from .stores import make_client
from .targets import StoreSpec

_DENIED = {"AccessDenied", "403"}
PROBE_ID = "immutability.probe"
SESSION_SECONDS = 900  # the shortest STS allows: the probe takes seconds


def marker_key(probe_prefix: str, run_id: str) -> str:
    """Where the probe writes: ``<probe_prefix>drillbook-probe/<run-id>-<random>`` (never reused)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in run_id)[:80] or "run"
    return f"{probe_prefix}drillbook-probe/{safe}-{secrets.token_hex(4)}"


def probe(spec: StoreSpec, *, run_id: str) -> list[Verdict]:
    """Assume the role, write the marker, try both deletes: one verdict each (an error when stuck)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not spec.probe_role_arn or not spec.probe_prefix:
        return [Verdict.not_applicable(PROBE_ID, f"store {spec.name!r} names no probe_role_arn")]
    where = f"s3://{spec.bucket}/{spec.probe_prefix}"
    role = spec.probe_role_arn
    try:
        sts = make_client(spec, service="sts", read_timeout_s=30)
        answer = sts.assume_role(RoleArn=role, RoleSessionName="drillbook-probe",
                                 DurationSeconds=SESSION_SECONDS)
    except (ClientError, BotoCoreError) as exc:
        return [_error(f"cannot assume role {role}: {error_code(exc) or type(exc).__name__}", where)]
    creds = answer["Credentials"]
    # The session's secret and token are secrets like the store's own.
    redact.register(creds["SecretAccessKey"])
    redact.register(creds["SessionToken"])
    s3 = make_client(spec, read_timeout_s=30, credentials={
        "aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"]})
    key = marker_key(spec.probe_prefix, run_id)
    body = f"drillbook immutability probe {datetime.now(UTC).isoformat()} role {role}\n".encode()
    try:
        put = s3.put_object(Bucket=spec.bucket, Key=key, Body=body)
    except (ClientError, BotoCoreError) as exc:
        return [_error(f"role {role} cannot write the probe's marker {key}: "
                       f"{error_code(exc) or type(exc).__name__} (it needs s3:PutObject on {where})", where)]
    version = put.get("VersionId")
    evidence = {"role": role, "marker": key, "marker_version": version, "where": where,
                "note": "the marker stays until the bucket's default retention ends"}
    if not version or version == "null":
        return [Verdict.failed(PROBE_ID, f"the marker {key} got no version: bucket {spec.bucket!r} is not "
                               "versioned, so a delete destroys data", evidence=evidence)]
    return [_delete_unversioned(s3, spec.bucket, key, evidence),
            _delete_version(s3, spec.bucket, key, version, evidence)]


def _delete_unversioned(s3: Any, bucket: str, key: str, evidence: dict[str, Any]) -> Verdict:
    from botocore.exceptions import BotoCoreError, ClientError

    check = "immutability.probe_delete"
    try:
        answer = s3.delete_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in _DENIED:
            return Verdict.passed(check, f"role {evidence['role']} may not delete: DeleteObject of the "
                                  f"marker {key} → AccessDenied", evidence=evidence)
        return _error(f"DeleteObject of the marker {key}: {error_code(exc)}", evidence["where"], check)
    except BotoCoreError as exc:
        return _error(f"DeleteObject of the marker {key}: {type(exc).__name__}", evidence["where"], check)
    marker = answer.get("VersionId")
    return Verdict.failed(check, f"role {evidence['role']} deleted the marker {key} (delete marker "
                          f"{marker}): its policy allows s3:DeleteObject, so it can hide every backup",
                          evidence={**evidence, "delete_marker": marker})


def _delete_version(s3: Any, bucket: str, key: str, version: str, evidence: dict[str, Any]) -> Verdict:
    from botocore.exceptions import BotoCoreError, ClientError

    check = "immutability.probe_delete_version"
    try:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
    except ClientError as exc:
        if error_code(exc) in _DENIED:
            return Verdict.passed(check, f"version {version} of the marker {key} cannot be deleted "
                                  "(AccessDenied: the lock or the role's policy)", evidence=evidence)
        return _error(f"DeleteObject of version {version} of {key}: {error_code(exc)}",
                      evidence["where"], check)
    except BotoCoreError as exc:
        return _error(f"DeleteObject of version {version} of {key}: {type(exc).__name__}",
                      evidence["where"], check)
    return Verdict.failed(check, f"role {evidence['role']} deleted version {version} of the marker {key}: "
                          "versions are not protected (no Object Lock retention on it)", evidence=evidence)


def _error(message: str, where: str, check: str = PROBE_ID) -> Verdict:
    return Verdict.error(check, redact.redact(message), evidence={"where": where})
