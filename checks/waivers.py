"""Waivers: an approved, time-boxed acceptance of a known failure.

A waiver file is TOML, one ``[[waiver]]`` table per waiver::

    [[waiver]]
    id = "BKP-03"                       # the scenario's @id
    check = "restore.rto"               # optional: only this verdict id
    justification = "New storage array; RTO re-baselined in CHG-1234"
    author = "alice@example.com"
    approver = "bob@example.com"        # must differ from the author
    risk = "medium"                     # low | medium | high | critical
    start = 2026-11-01                  # TOML dates; both ends inclusive (UTC)
    expiry = 2026-12-31

:func:`load_waivers` validates everything and raises :class:`WaiverError`
naming the file and line; :func:`apply_waiver` turns a *failed* verdict of a
waived scenario into ``waived`` with the waiver in its evidence. ``error``
verdicts ("could not check") are never waived: a waiver accepts a known
shortfall, not the absence of a check.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from .errors import ConfigError
from .verdict import Outcome, Verdict

RISKS = ("low", "medium", "high", "critical")
_REQUIRED = ("id", "justification", "author", "approver", "risk", "start", "expiry")
_ALLOWED = {*_REQUIRED, "check"}
_HEADER = re.compile(r"^\s*\[\[\s*waiver\s*\]\]\s*(#.*)?$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TOML_LINE = re.compile(r"at line (\d+)")


class WaiverError(ConfigError):
    """A waiver file that is malformed, incomplete, self-approved or names an unknown scenario."""

    default_hint = "fix the named line of the waiver file; docs/evidence.md (Waivers) shows the format"


@dataclass(frozen=True)
class Waiver:
    """One approved exception: who asked, who approved, why, how risky, until when."""

    id: str
    justification: str
    author: str
    approver: str
    risk: str
    start: date
    expiry: date
    check: str | None = None
    line: int = 0
    source: str = ""

    def active_on(self, day: date) -> bool:
        return self.start <= day <= self.expiry

    def covers(self, scenario_id: str | None, verdict_id: str) -> bool:
        return scenario_id == self.id and (self.check is None or self.check == verdict_id)

    def to_evidence(self) -> dict[str, Any]:
        return {
            "id": self.id, "check": self.check, "justification": self.justification,
            "author": self.author, "approver": self.approver, "risk": self.risk,
            "start": self.start.isoformat(), "expiry": self.expiry.isoformat(),
            "source": f"{self.source}:{self.line}" if self.source else "",
        }


def load_waivers(text: str, *, source: str = "<waivers>") -> list[Waiver]:
    """Parse and validate a waiver file; raise :class:`WaiverError` naming ``source:line``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE.search(str(exc))
        where = f"{source}:{match.group(1)}" if match else source
        raise WaiverError(f"{where}: not valid TOML: {exc}", file=source) from None
    extra = sorted(set(data) - {"waiver"})
    if extra:
        raise WaiverError(f"{source}:{_key_line(text, extra[0], 1, len(text.splitlines()))}: unknown "
                          f"top-level key `{extra[0]}` (a waiver file holds only [[waiver]] tables)",
                          file=source, key=extra[0])
    tables = data.get("waiver", [])
    if not isinstance(tables, list):
        raise WaiverError(f"{source}: `waiver` must be written as [[waiver]] tables", file=source)
    headers = [n for n, line in enumerate(text.splitlines(), start=1) if _HEADER.match(line)]
    total = len(text.splitlines())
    waivers = []
    for index, table in enumerate(tables):
        start_line = headers[index] if index < len(headers) else 1
        end_line = headers[index + 1] - 1 if index + 1 < len(headers) else total
        waivers.append(_waiver(table, text, source, start_line, end_line))
    return waivers


def _key_line(text: str, key: str, first: int, last: int) -> int:
    """The line where ``key = ...`` appears between ``first`` and ``last``; else ``first``."""
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        if first <= number <= last and pattern.match(line):
            return number
    return first


def _waiver(table: Any, text: str, source: str, first: int, last: int) -> Waiver:
    def fail(message: str, key: str | None = None) -> WaiverError:
        line = _key_line(text, key, first, last) if key else first
        return WaiverError(f"{source}:{line}: waiver: {message}", file=source, line=line)

    if not isinstance(table, dict):
        raise fail("each waiver must be a table")
    for key in table:
        if key not in _ALLOWED:
            raise fail(f"unknown key `{key}` (allowed: {', '.join(sorted(_ALLOWED))})", key)
    for key in _REQUIRED:
        if key not in table:
            raise fail(f"`{key}` is required")
    strings = {}
    for key in ("id", "justification", "author", "approver", "risk", "check"):
        if key not in table:
            continue
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            raise fail(f"`{key}` must be a non-empty string, got {value!r}", key)
        strings[key] = value.strip()
    if not _ID.match(strings["id"]):
        raise fail(f"`id` must be a scenario id like BKP-01, got {strings['id']!r}", "id")
    if strings["risk"].lower() not in RISKS:
        raise fail(f"`risk` must be one of {', '.join(RISKS)}, got {strings['risk']!r}", "risk")
    if strings["author"].casefold() == strings["approver"].casefold():
        raise fail(f"the approver must differ from the author ({strings['author']} approved "
                   "their own waiver)", "approver")
    days = {}
    for key in ("start", "expiry"):
        value = table[key]
        if isinstance(value, datetime) or not isinstance(value, date):
            raise fail(f"`{key}` must be a TOML date like 2026-12-31, got {value!r}", key)
        days[key] = value
    if days["expiry"] < days["start"]:
        raise fail(f"`expiry` {days['expiry']} is before `start` {days['start']}", "expiry")
    return Waiver(id=strings["id"], justification=strings["justification"], author=strings["author"],
                  approver=strings["approver"], risk=strings["risk"].lower(), start=days["start"],
                  expiry=days["expiry"], check=strings.get("check"), line=first, source=source)


def unknown_ids(waivers: Iterable[Waiver], known: Iterable[str]) -> list[Waiver]:
    """Waivers naming a scenario id no feature defines."""
    ids = set(known)
    return [w for w in waivers if w.id not in ids]


def check_known(waivers: Sequence[Waiver], known: Iterable[str]) -> None:
    """Raise :class:`WaiverError` for the first waiver whose id no feature defines."""
    unknown = unknown_ids(waivers, known)
    if unknown:
        w = unknown[0]
        raise WaiverError(f"{w.source}:{w.line}: waiver for unknown scenario id {w.id!r}: no feature "
                          "has that @id tag", file=w.source, line=w.line,
                          hint="correct the id, or remove the waiver of a retired scenario")


def apply_waiver(verdict: Verdict, scenario_id: str | None, waivers: Sequence[Waiver], *,
                 today: date) -> Verdict:
    """A failed verdict covered by an active waiver becomes ``waived``; anything else is unchanged.

    An expired (or not yet started) waiver leaves the failure as it is, and says so in the evidence.
    """
    if verdict.outcome is not Outcome.FAILED:
        return verdict
    covering = [w for w in waivers if w.covers(scenario_id, verdict.id)]
    active = [w for w in covering if w.active_on(today)]
    if not active:
        if covering:
            stale = max(covering, key=lambda w: w.expiry)
            state = "expired" if stale.expiry < today else "not yet in force"
            evidence = {**verdict.evidence, "waiver_not_applied": {**stale.to_evidence(), "state": state}}
            return replace(verdict, evidence=evidence,
                           message=f"{verdict.message} (waiver {state}: {stale.start}..{stale.expiry})")
        return verdict
    waiver = max(active, key=lambda w: w.expiry)
    evidence = {**verdict.evidence, "waived_outcome": verdict.outcome.value, "waiver": waiver.to_evidence()}
    message = (f"{verdict.message} — WAIVED until {waiver.expiry} ({waiver.risk} risk): "
               f"{waiver.justification} [author {waiver.author}, approved by {waiver.approver}]")
    return replace(verdict, outcome=Outcome.WAIVED, message=message, evidence=evidence)
