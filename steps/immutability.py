"""Immutable backups: ``Then the backups in "<store>" cannot be deleted or changed for <N> days``.

Thin glue: resolve the store, read its facts (checks/immutability.py), run the optional probe
(drills/immutability_probe.py), record every verdict (a Then step is soft: each one is reported).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pytest_bdd import parsers, then

from checks import immutability
from checks.errors import DrillbookError
from checks.verdict import Verdict, record, verdict_from_error
from drills.immutability_probe import probe
from drills.restore import newest_in_store
from drills.stores import S3Store
from drills.targets import StoreSpec


@then(parsers.parse('the backups in "{store}" cannot be deleted or changed for {days:d} days'))
def backups_immutable(store: str, days: int, drillbook_env: Any, request: pytest.FixtureRequest) -> None:
    """S3 Object Lock, default retention, versioning, the newest objects' retention; the probe if set."""
    try:
        spec = drillbook_env.store(store)
    except DrillbookError as exc:
        record(verdict_from_error("immutability.object_lock", exc))
        return
    out = request.config.getoption("--drillbook-out", default=None)
    for verdict in immutability_verdicts(spec, days=days, run_id=Path(out).name if out else "pytest"):
        record(verdict)


def immutability_verdicts(spec: StoreSpec, *, days: int, run_id: str,
                          now: datetime | None = None) -> list[Verdict]:
    """Every fact about one store, then the probe's verdicts when its config names a role."""
    if not spec.is_s3:
        return [Verdict.not_applicable("immutability.object_lock",
                                       f"store {spec.name!r} is a directory ({spec.url}): a filesystem "
                                       "has no object lock; keep an S3 copy with Object Lock to prove "
                                       "immutability")]
    s3 = S3Store(spec)
    where = s3.describe()
    verdicts = immutability.bucket_verdicts(s3.client, spec.bucket, where, days=days)
    try:
        backup, _, objects = newest_in_store(spec)
    except DrillbookError as exc:
        verdicts.append(verdict_from_error("immutability.object_retention", exc))
    else:
        keys = [backup.key]
        sidecar = backup.key + spec.checksum_suffix
        if any(obj.key == sidecar for obj in objects):
            keys.append(sidecar)
        verdicts.extend(immutability.object_verdicts(s3.client, spec.bucket, keys, where, days=days,
                                                     now=now or datetime.now(UTC)))
    if spec.probe_role_arn:
        verdicts.extend(probe(spec, run_id=run_id))
    return verdicts
