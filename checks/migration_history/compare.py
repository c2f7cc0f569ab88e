"""Flyway-style ``validate``: a subject's migration history against the files on disk.

:func:`validate_history` reports, by version: **pending** (on disk, not applied, newer than
everything applied), **out of order** (on disk, not applied, older than something applied),
**missing** (applied, no longer on disk), **edited** (applied, but the file's checksum changed
since) and **failed** (the tool recorded a failure, or golang-migrate's ``dirty`` flag). Rows that
name their step by an id (a sqitch change, a Liquibase changeset) are matched by that id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..verdict import Verdict
from .model import AppliedMigration, History, HistoryKind, LocalMigration, show_version, version_key
from .tables import checksum_matches


@dataclass
class HistoryReport:
    """The outcome of comparing a history with the files, by category."""

    applied: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    edited: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def pending_versions(self) -> list[str]:
        return list(self.pending)

    def to_evidence(self) -> dict[str, Any]:
        return {"applied": self.applied, "pending": self.pending, "out_of_order": self.out_of_order,
                "missing": self.missing, "edited": self.edited, "failed": self.failed,
                "details": self.details}


def compare_history(history: History, local: Sequence[LocalMigration]) -> HistoryReport:
    """Sort every version into applied / pending / out-of-order / missing / edited / failed."""
    report = HistoryReport()
    by_key = {m.key: m for m in local}
    applied: dict[tuple[int, ...], AppliedMigration] = {}
    by_id = {m.history_id: m for m in local if m.history_id is not None}
    for row in history.applied:
        if row.history_id is not None:
            # The tool names its steps (a sqitch change, a Liquibase changeset): match by name,
            # and place the row at the local step's position.
            named = by_id.get(row.history_id)
            if named is None:
                report.missing.append(row.history_id)
                report.details.append(f"{row.history_id} {row.description}: applied on the subject, "
                                      "but not on disk".replace("  ", " "))
                continue
            applied[named.key] = row
            continue
        try:
            applied[version_key(row.version)] = row
        except ValueError:
            report.missing.append(row.version)
            report.details.append(f"history row with version {row.version!r} names no numeric version")
    if history.current_only:
        # golang-migrate: one row, the current version; every file up to it is applied.
        current = max(applied, default=None)
        if current is not None:
            row = applied[current]
            applied = {k: AppliedMigration(show_version(k), success=True) for k in by_key if k <= current}
            applied[current] = row
    highest = max(applied, default=None)
    for key, row in sorted(applied.items()):
        shown = show_version(key)
        if not row.success:
            report.failed.append(shown)
            report.details.append(f"{shown}: recorded as failed in {history.table}"
                                  + (" (dirty)" if history.kind is HistoryKind.GOLANG_MIGRATE else ""))
        migration = by_key.get(key)
        if migration is None:
            report.missing.append(shown)
            report.details.append(f"{shown} {row.description}: applied on the subject, "
                                  "but no file for it on disk".replace("  ", " "))
            continue
        report.applied.append(shown)
        expected = migration.checksum(history.kind)
        if row.checksum is not None and not checksum_matches(history.kind, migration, row.checksum):
            report.edited.append(shown)
            report.details.append(f"{shown} ({migration.file}): edited after it was applied — "
                                  f"checksum on the subject {row.checksum}, file now {expected}")
    for key, migration in sorted(by_key.items()):
        if key in applied:
            continue
        shown = show_version(key)
        if highest is not None and key < highest:
            report.out_of_order.append(shown)
            report.details.append(f"{shown} ({migration.file}): not applied, but older than "
                                  f"applied {show_version(highest)} (out of order)")
        else:
            report.pending.append(shown)
    return report


def validate_history(history: History, local: Sequence[LocalMigration], *,
                     allow_pending: bool = True, check_id: str = "migrations.history") -> Verdict:
    """Failed on missing, edited, out-of-order or failed migrations (and pending, unless allowed)."""
    report = compare_history(history, local)
    problems = []
    for label, versions in (("missing", report.missing), ("edited", report.edited),
                            ("out of order", report.out_of_order), ("failed", report.failed)):
        if versions:
            problems.append(f"{label}: {', '.join(versions)}")
    if report.pending and not allow_pending:
        problems.append(f"pending: {', '.join(report.pending)}")
    evidence = {"table": history.table, "format": history.kind.value, **report.to_evidence()}
    summary = (f"{len(report.applied)} applied, {len(report.pending)} pending "
               f"({', '.join(report.pending) or 'none'})")
    if problems:
        detail = "; ".join(report.details[:4])
        return Verdict.failed(
            check_id, f"migration history in {history.table} does not match the files: "
                      f"{'; '.join(problems)} ({summary}){': ' + detail if detail else ''}",
            measured=problems, expected="no missing, edited, out-of-order or failed migrations",
            evidence=evidence)
    return Verdict.passed(check_id, f"migration history in {history.table} matches the files: {summary}",
                          measured=summary, evidence=evidence)




def checksums_of(local: Sequence[LocalMigration], kind: HistoryKind) -> Mapping[str, str | None]:
    """Version → checksum as the tool would record it (for tests and evidence)."""
    return {m.version: m.checksum(kind) for m in local}
