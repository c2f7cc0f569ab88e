"""``pgbackrest verify --output=text --verbose --log-level-console=detail`` read into one verdict (pure).

pgBackRest 2.45 exits 0 even with ``status: error`` (study A2): the verdict comes from the text.
A bad file shows only as a log line (``INFO: invalid checksum '<set>/pg_data/…'``); a WAL gap only
as the DETAIL ranges that exist (``archiveId: 15-1, wal start: …, wal stop: …``): two ranges in one
archive id mean the segments between them are missing. The summary block (printed twice: in the
INFO log line and as the command's output) gives each set's status and counts.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from checks.errors import UnusableAnswer
from checks.verdict import Verdict

CHECK_ID = "backup.tool_verify"
_LOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ P\d+ +([A-Z]+): (.*)$")
_RANGE = re.compile(r"archiveId: (\S+), wal start: ([0-9A-F]{24}), wal stop: ([0-9A-F]{24})$")
_FILE = re.compile(r"([a-z][a-z ]{2,40}) '([^'\n]{1,4096})'$")
_STATUS = re.compile(r"status: (\w+)$")
_ARCHIVE = re.compile(r"archiveId: (\S+), total WAL checked: (\d+), total valid WAL: (\d+)$")
_BACKUP = re.compile(r"backup: (\S+), status: ([\w ]+?), total files checked: (\d+), "
                     r"total valid files: (\d+)$")
_COUNTS = re.compile(r"missing: (\d+), checksum invalid: (\d+), size invalid: (\d+), other: (\d+)$")
_ERROR = re.compile(r"\[\d{3}\]: .*")


@dataclass
class Entry:
    """An archive id or a backup set in the summary, with its counts."""

    name: str
    status: str
    checked: int
    valid: int
    problems: dict[str, int] = field(default_factory=dict)  # missing / checksum invalid / ... > 0


@dataclass
class VerifyReport:
    """What ``verify`` said about one stanza."""

    stanza: str
    status: str
    archives: list[Entry] = field(default_factory=list)
    backups: list[Entry] = field(default_factory=list)
    invalid_files: list[tuple[str, str]] = field(default_factory=list)  # (reason, path in the repo)
    ranges: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # archive id → [(start, stop)]
    warnings: list[str] = field(default_factory=list)

    def gaps(self) -> list[tuple[str, str, str]]:
        """(archive id, last segment before, first segment after) for each hole between ranges."""
        found = []
        for archive, spans in self.ranges.items():
            ordered = sorted(set(spans))
            found += [(archive, a[1], b[0]) for a, b in itertools.pairwise(ordered)
                      if a[0][:8] == b[0][:8]]  # another timeline is no gap
        return found


def parse_verify(text: str) -> VerifyReport:
    """The last summary block plus the DETAIL ranges and file lines; UnusableAnswer without a summary."""
    ranges: dict[str, list[tuple[str, str]]] = {}
    files: list[tuple[str, str]] = []
    warnings: list[str] = []
    blocks: list[list[str]] = []
    for raw in text.splitlines():
        log = _LOG.match(raw)
        line = (log.group(2) if log else raw).strip()
        level = log.group(1) if log else ""
        if level in ("WARN", "ERROR", "ASSERT"):
            warnings.append(line[:500])
        if found := _RANGE.search(line):
            ranges.setdefault(found.group(1), []).append((found.group(2), found.group(3)))
        elif log and level in ("INFO", "DETAIL") and (bad := _FILE.fullmatch(line)) \
                and not line.startswith(("stanza:", "status:")):
            files.append((bad.group(1), bad.group(2)))
        if line.startswith("stanza: "):
            blocks.append([line])
        elif blocks and not log:
            blocks[-1].append(line)
    if not blocks:
        said = next((w for w in warnings if _ERROR.search(w)), warnings[0] if warnings else "")
        raise UnusableAnswer("pgbackrest verify printed no summary"
                             + (f": {said}" if said else " (was --verbose given?)"))
    report = _summary(blocks[-1])
    report.ranges, report.invalid_files, report.warnings = ranges, list(dict.fromkeys(files)), warnings
    return report


def _summary(lines: list[str]) -> VerifyReport:
    report = VerifyReport(stanza=lines[0].removeprefix("stanza: ").strip(), status="")
    current: Entry | None = None
    for line in lines[1:]:
        if status := _STATUS.fullmatch(line):
            report.status = status.group(1)
        elif archive := _ARCHIVE.fullmatch(line):
            current = Entry(archive.group(1), "", int(archive.group(2)), int(archive.group(3)))
            report.archives.append(current)
        elif backup := _BACKUP.fullmatch(line):
            current = Entry(backup.group(1), backup.group(2), int(backup.group(3)), int(backup.group(4)))
            report.backups.append(current)
        elif (counts := _COUNTS.fullmatch(line)) and current is not None:
            names = ("missing", "checksum invalid", "size invalid", "other")
            current.problems = {n: int(v) for n, v in zip(names, counts.groups(), strict=True) if int(v)}
    if not report.status:
        raise UnusableAnswer(f"pgbackrest verify's summary for stanza `{report.stanza[:64]}` "
                             "has no status line")
    return report


def verify_verdict(report: VerifyReport, *, store: str, repo: int) -> Verdict:
    """One verdict: passed only when the status is ok and no set, file or WAL range is at fault."""
    invalid = [b for b in report.backups if b.status != "valid" or b.problems]
    bad_archives = [a for a in report.archives if a.problems]
    gaps = report.gaps()
    evidence: dict[str, Any] = {
        "stanza": report.stanza, "repo": repo, "status": report.status,
        "backups": {b.name: {"status": b.status, "checked": b.checked, "valid": b.valid, **b.problems}
                    for b in report.backups},
        "archives": {a.name: {"checked": a.checked, "valid": a.valid, **a.problems} for a in report.archives},
        "wal_ranges": report.ranges, "invalid_files": [f"{r}: {p}" for r, p in report.invalid_files],
        "warnings": report.warnings[:20],
    }
    parts = [f"set {b.name} is {b.status}" + (f" ({_counts(b.problems)})" if b.problems else "")
             for b in invalid]
    parts += [f"{reason} {path}" for reason, path in report.invalid_files]
    parts += [f"WAL archive {a.name}: {_counts(a.problems)}" for a in bad_archives]
    parts += [f"WAL gap in archive {a}: nothing between {before} and {after}" for a, before, after in gaps]
    where = f"stanza `{report.stanza}` in repo{repo} of `{store}`"
    if report.status == "ok" and not parts:
        return Verdict.passed(CHECK_ID, f"pgbackrest verify: {where} is ok ({len(report.backups)} sets, "
                              f"{sum(a.checked for a in report.archives)} WAL segments checked)",
                              evidence=evidence)
    if not parts:
        parts = [f"status {report.status}", *report.warnings[:3]]
    return Verdict.failed(CHECK_ID, f"pgbackrest verify: {where}: " + "; ".join(parts), evidence=evidence)


def _counts(problems: dict[str, int]) -> str:
    return ", ".join(f"{name}: {count}" for name, count in problems.items())
