"""Can the backups be deleted or changed? Read-only facts about an S3 store's Object Lock.

Each fact is a :class:`Verdict` (every one reported, none short-circuits the others):

- ``immutability.object_lock``: the bucket's Object Lock configuration exists and is enabled;
- ``immutability.default_retention``: its default rule's mode and days against the days asked;
- ``immutability.versioning``: versioning ``Enabled`` (MFA delete named when S3 reports it);
- ``immutability.object_retention``: per newest backup object (the backup and its checksum
  sidecar), ``head_object``'s ``ObjectLockMode`` / ``ObjectLockRetainUntilDate`` / legal hold.

Retention is read with ``head_object``, not ``get_object_retention`` (broken on moto 5.2.5 and
answered by ``head_object`` on real S3 too, docs/design/physical-backups.md A6). GOVERNANCE mode is
a warning: a principal with ``s3:BypassGovernanceRetention`` can still delete. Nothing here writes;
the write probe is drills/immutability_probe.py. The client is a boto3 S3 client (drills/stores.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from checks import redact
from checks.verdict import Verdict

# S3 counts a retention "year" as 365 days (PutObjectLockConfiguration documentation).
DAYS_PER_YEAR = 365
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
# S3 dates are whole seconds; a retention computed from the write time may land a little early.
RETAIN_UNTIL_SLACK = timedelta(minutes=1)
_DENIED = {"AccessDenied", "403", "AllAccessDisabled"}
_NO_LOCK = {"ObjectLockConfigurationNotFoundError"}


def check_role_arn(value: str, *, store_prefix: str = "") -> str | None:
    """What is wrong with a ``probe_role_arn`` (None when it is an IAM role ARN)."""
    if not _ROLE_ARN.fullmatch(value):
        return f"must be an IAM role ARN like arn:aws:iam::123456789012:role/backup-writer, got {value!r}"
    return None


def check_probe_prefix(value: str, *, store_prefix: str) -> str | None:
    """What is wrong with a ``probe_prefix`` (None when drillbook may write its markers there)."""
    if not value.endswith("/") or value.startswith("/"):
        return f"must be a key prefix ending in `/` without a leading `/`, got {value!r}"
    if any(part in ("", ".", "..") for part in value[:-1].split("/")):
        return f"must not contain empty, `.` or `..` segments, got {value!r}"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return "must not contain control characters"
    if store_prefix and (value.startswith(store_prefix) or store_prefix.startswith(value)):
        return (f"{value!r} overlaps the store's prefix {store_prefix!r}: the probe's marker would be "
                "listed among the backups (or the backups under the probe's prefix)")
    return None


@dataclass(frozen=True)
class LockConfiguration:
    """A bucket's Object Lock configuration as S3 reports it."""

    enabled: bool
    mode: str | None = None
    days: int | None = None


def parse_lock_configuration(response: Mapping[str, Any]) -> LockConfiguration:
    """``get_object_lock_configuration``'s answer → enabled, default mode and days (years × 365)."""
    config = _mapping(response.get("ObjectLockConfiguration"))
    enabled = config.get("ObjectLockEnabled") == "Enabled"
    default = _mapping(_mapping(config.get("Rule")).get("DefaultRetention"))
    if not default:
        return LockConfiguration(enabled=enabled)
    days = int(default.get("Days") or 0) + DAYS_PER_YEAR * int(default.get("Years") or 0)
    return LockConfiguration(enabled=enabled, mode=default.get("Mode"), days=days or None)


def _mapping(value: Any) -> Mapping[str, Any]:
    # An S3-compatible server's answer is outside input: a missing or odd member reads as absent.
    return value if isinstance(value, Mapping) else {}


def parse_retain_until(value: Any) -> datetime:
    """``ObjectLockRetainUntilDate`` (a datetime from boto3, or ISO 8601 text) as an aware UTC time."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise ValueError(f"not a retain-until date: {value!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def error_code(exc: Exception) -> str:
    """The S3 error code of a botocore ``ClientError`` ("" for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _cannot(check_id: str, what: str, where: str, exc: Exception, permission: str) -> Verdict:
    code = error_code(exc) or type(exc).__name__
    needs = f" (needs {permission})" if code in _DENIED else ""
    return Verdict.error(check_id, redact.redact(f"cannot read {what} of {where}: {code}{needs}"),
                         evidence={"where": where, "code": code})


def bucket_verdicts(client: Any, bucket: str, where: str, *, days: int) -> list[Verdict]:
    """The bucket's Object Lock, default retention and versioning, one verdict each."""
    from botocore.exceptions import BotoCoreError, ClientError

    verdicts: list[Verdict] = []
    lock: LockConfiguration | None = None
    try:
        lock = parse_lock_configuration(client.get_object_lock_configuration(Bucket=bucket))
    except ClientError as exc:
        if error_code(exc) in _NO_LOCK:
            lock = LockConfiguration(enabled=False)
        else:
            verdicts.append(_cannot("immutability.object_lock", "the Object Lock configuration", where, exc,
                                    "s3:GetBucketObjectLockConfiguration"))
    except (BotoCoreError, ValueError, TypeError) as exc:  # unreachable, or an answer that is not S3's
        verdicts.append(_cannot("immutability.object_lock", "the Object Lock configuration", where, exc, ""))
    if lock is not None:
        verdicts.extend(lock_verdicts(lock, bucket, where, days=days))
    else:
        verdicts.append(Verdict.not_applicable("immutability.default_retention",
                                               "the Object Lock configuration could not be read"))
    try:
        verdicts.append(versioning_verdict(client.get_bucket_versioning(Bucket=bucket), bucket, where))
    except (ClientError, BotoCoreError) as exc:
        verdicts.append(_cannot("immutability.versioning", "the versioning status", where, exc,
                                "s3:GetBucketVersioning"))
    return verdicts


def lock_verdicts(lock: LockConfiguration, bucket: str, where: str, *, days: int) -> list[Verdict]:
    """Object Lock enabled; its default retention mode and days against ``days``."""
    evidence = {"where": where, "mode": lock.mode, "default_days": lock.days}
    if not lock.enabled:
        return [
            Verdict.failed("immutability.object_lock",
                           f"bucket {bucket!r} has no Object Lock ({where}): its objects can be deleted "
                           "by whoever may delete them", measured="disabled", expected="Enabled",
                           evidence=evidence),
            Verdict.not_applicable("immutability.default_retention", f"bucket {bucket!r} has no Object Lock"),
        ]
    verdicts = [Verdict.passed("immutability.object_lock", f"bucket {bucket!r} has Object Lock enabled",
                               measured="Enabled", expected="Enabled", evidence=evidence)]
    if lock.mode is None or lock.days is None:
        verdicts.append(Verdict.warning(
            "immutability.default_retention",
            f"bucket {bucket!r} has no default retention: an object is locked only when its writer asks "
            "(the newest backup objects are checked one by one)", measured=None, expected=f">= {days} d",
            evidence=evidence))
    elif lock.days < days:
        verdicts.append(Verdict.failed(
            "immutability.default_retention",
            f"bucket {bucket!r} default retention {lock.days} d < {days} d ({lock.mode})",
            measured=lock.days, expected=days, evidence=evidence))
    elif lock.mode != "COMPLIANCE":
        verdicts.append(Verdict.warning(
            "immutability.default_retention",
            f"bucket {bucket!r} default retention is {lock.mode} {lock.days} d: a principal with "
            "s3:BypassGovernanceRetention can still delete; COMPLIANCE cannot be bypassed",
            measured=lock.mode, expected="COMPLIANCE", evidence=evidence))
    else:
        verdicts.append(Verdict.passed(
            "immutability.default_retention",
            f"bucket {bucket!r} default retention COMPLIANCE {lock.days} d >= {days} d",
            measured=lock.days, expected=days, evidence=evidence))
    return verdicts


def versioning_verdict(response: Mapping[str, Any], bucket: str, where: str) -> Verdict:
    """``Enabled`` passes; ``Suspended`` or never enabled fails. MFA delete is reported when S3 says."""
    status = response.get("Status")
    mfa = response.get("MFADelete")
    evidence = {"where": where, "status": status, "mfa_delete": mfa}
    mfa_text = f", MFA delete {mfa}" if mfa else ""
    if status == "Enabled":
        return Verdict.passed("immutability.versioning", f"bucket {bucket!r} versioning Enabled{mfa_text}",
                              measured=status, expected="Enabled", evidence=evidence)
    shown = "suspended" if status == "Suspended" else "never enabled"
    return Verdict.failed("immutability.versioning",
                          f"bucket {bucket!r} versioning {shown}{mfa_text} ({where}): an overwrite or "
                          "delete destroys the only copy", measured=status, expected="Enabled",
                          evidence=evidence)


def object_verdict(head: Mapping[str, Any], key: str, where: str, *, days: int, now: datetime) -> Verdict:
    """One object's lock from ``head_object``: mode, retention of ``days`` from its write, legal hold.

    "Cannot be deleted for 30 days" is a promise about each backup from the moment it was written:
    retain-until must reach ``LastModified + days`` (a minute's slack for S3's second-rounded dates)
    and lie in the future. (``now + days`` would fail every 30-day lock an hour after the backup.)
    """
    mode = head.get("ObjectLockMode")
    hold = head.get("ObjectLockLegalHoldStatus")
    raw = head.get("ObjectLockRetainUntilDate")
    until = parse_retain_until(raw) if raw is not None else None
    written = parse_retain_until(head["LastModified"]) if head.get("LastModified") else now
    needed = written + timedelta(days=days)
    evidence = {"key": key, "where": where, "version_id": head.get("VersionId"), "mode": mode,
                "written": written, "retain_until": until, "legal_hold": hold, "needed_until": needed}
    held = " (a legal hold is ON, but whoever may lift it can then delete)" if hold == "ON" else ""
    make = Verdict.warning if hold == "ON" else Verdict.failed
    if mode is None or until is None:
        return make("immutability.object_retention", f"{key} has no Object Lock retention{held} ({where})",
                    measured=None, expected=f"retained until >= {needed:%Y-%m-%d}", evidence=evidence)
    granted = (until - written) / timedelta(days=1)
    if until <= now:
        return make("immutability.object_retention",
                    f"{key}: its retention ended {until:%Y-%m-%d %H:%M} UTC{held}",
                    measured=until, expected=needed, evidence=evidence)
    if until < needed - RETAIN_UNTIL_SLACK:
        return make("immutability.object_retention",
                    f"{key} retained until {until:%Y-%m-%d %H:%M} UTC: {granted:.1f} d from its write "
                    f"< {days} d{held}", measured=until, expected=needed, evidence=evidence)
    if mode != "COMPLIANCE":
        return Verdict.warning("immutability.object_retention",
                               f"{key} is {mode} until {until:%Y-%m-%d}: a principal with "
                               "s3:BypassGovernanceRetention can still delete it",
                               measured=mode, expected="COMPLIANCE", evidence=evidence)
    return Verdict.passed("immutability.object_retention",
                          f"{key} COMPLIANCE until {until:%Y-%m-%d %H:%M} UTC "
                          f"({granted:.1f} d from its write >= {days} d)",
                          measured=until, expected=needed, evidence=evidence)


def object_verdicts(client: Any, bucket: str, keys: list[str], where: str, *, days: int,
                    now: datetime) -> list[Verdict]:
    """``head_object`` of each key (its current version), one verdict each."""
    from botocore.exceptions import BotoCoreError, ClientError

    verdicts = []
    for key in keys:
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            verdicts.append(_cannot("immutability.object_retention", f"the retention of {key}", where, exc,
                                    "s3:GetObject and s3:GetObjectRetention"))
            continue
        try:
            verdicts.append(object_verdict(head, key, where, days=days, now=now))
        except (ValueError, TypeError) as exc:  # a retain-until date that is not a date
            verdicts.append(Verdict.error("immutability.object_retention",
                                          f"cannot read the retention of {key} in {where}: {exc}"))
    return verdicts
