"""The one result type of every check, and the one place a verdict becomes a failure.

A check returns a :class:`Verdict`. A step hands it to :func:`record`, which
appends it to the current scenario's evidence log (installed by the runner's
pytest plugin through :func:`recording`) and raises :class:`VerdictFailed`
when the verdict counts as a fail — unless the plugin has made the current
step *soft* (:func:`soft_checks`, every ``Then`` step): then the failing
verdict is only recorded, the scenario goes on to its next check, and the
plugin raises one :class:`ChecksFailed` listing every failing verdict when
the scenario ends. Nothing here imports pytest: both exceptions subclass
``AssertionError`` so pytest reports them as ordinary failures.
"""

from __future__ import annotations

import contextlib
import enum
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any


class Outcome(enum.StrEnum):
    """What a check found. See ARCHITECTURE.md, "Verdicts and outcomes"."""

    PASSED = "passed"
    WARNING = "warning"
    FAILED = "failed"
    ERROR = "error"
    NOT_APPLICABLE = "not_applicable"
    WAIVED = "waived"

    def counts_as_fail(self, *, strict: bool = False) -> bool:
        """``failed`` and ``error`` always fail; ``warning`` fails only with ``--strict``."""
        if self in (Outcome.FAILED, Outcome.ERROR):
            return True
        return strict and self is Outcome.WARNING


# Worst first: the outcome of a scenario is the worst of its verdicts.
_SEVERITY = [
    Outcome.ERROR,
    Outcome.FAILED,
    Outcome.WARNING,
    Outcome.WAIVED,
    Outcome.NOT_APPLICABLE,
    Outcome.PASSED,
]


def worst(outcomes: Iterator[Outcome] | list[Outcome]) -> Outcome | None:
    """The most severe outcome of several, or None when there are none."""
    found = list(outcomes)
    if not found:
        return None
    return min(found, key=_SEVERITY.index)


def jsonable(value: Any) -> Any:
    """JSON-friendly form of measured values and evidence (durations, datetimes, paths, enums)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
        # Sets have no order: sort so the same evidence always serialises the same.
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    return str(value)


_jsonable = jsonable


@dataclass(frozen=True)
class Verdict:
    """A check's finding: what was measured, what was expected, and the evidence."""

    id: str
    outcome: Outcome
    message: str
    measured: Any = None
    expected: Any = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    duration_s: float = 0.0

    def __bool__(self) -> bool:
        raise TypeError(
            "a Verdict is not a boolean: look at verdict.outcome, or hand it to record()"
        )

    @classmethod
    def compare(
        cls,
        id: str,
        *,
        measured: Any,
        expected: Any,
        ok: bool,
        message: str | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> Verdict:
        """A passed or failed verdict from a comparison the caller already made."""
        outcome = Outcome.PASSED if ok else Outcome.FAILED
        text = message or (
            f"{id}: measured {_show(measured)}, expected {_show(expected)}"
        )
        return cls(id, outcome, text, measured, expected, dict(evidence or {}))

    @classmethod
    def passed(cls, id: str, message: str, **kw: Any) -> Verdict:
        return cls(id, Outcome.PASSED, message, **kw)

    @classmethod
    def failed(cls, id: str, message: str, **kw: Any) -> Verdict:
        return cls(id, Outcome.FAILED, message, **kw)

    @classmethod
    def warning(cls, id: str, message: str, **kw: Any) -> Verdict:
        return cls(id, Outcome.WARNING, message, **kw)

    @classmethod
    def error(cls, id: str, message: str, **kw: Any) -> Verdict:
        """Could not check: unreachable, unreadable, timed out. Never a skip."""
        return cls(id, Outcome.ERROR, message, **kw)

    @classmethod
    def not_applicable(cls, id: str, reason: str, **kw: Any) -> Verdict:
        return cls(id, Outcome.NOT_APPLICABLE, reason, **kw)

    def with_timing(self, started_at: datetime, duration_s: float) -> Verdict:
        return replace(self, started_at=started_at, duration_s=duration_s)

    def counts_as_fail(self, *, strict: bool = False) -> bool:
        return self.outcome.counts_as_fail(strict=strict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form, as written to the evidence log."""
        return {
            "id": self.id,
            "outcome": self.outcome.value,
            "message": self.message,
            "measured": _jsonable(self.measured),
            "expected": _jsonable(self.expected),
            "evidence": _jsonable(self.evidence),
            "started_at": self.started_at.isoformat(),
            "duration_s": round(self.duration_s, 6),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        return cls(
            id=data["id"],
            outcome=Outcome(data["outcome"]),
            message=data["message"],
            measured=data.get("measured"),
            expected=data.get("expected"),
            evidence=data.get("evidence") or {},
            started_at=datetime.fromisoformat(data["started_at"]),
            duration_s=float(data.get("duration_s", 0.0)),
        )


def _show(value: Any) -> str:
    if isinstance(value, timedelta):
        return format_duration(value)
    return json.dumps(_jsonable(value), ensure_ascii=False) if not isinstance(value, str) else value


def format_duration(value: timedelta) -> str:
    """``1h 02m 03s`` style, for messages a person reads."""
    seconds = value.total_seconds()
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{sign}{hours}h {minutes:02d}m {secs:02d}s"
    return f"{sign}{minutes}m {secs:02d}s"


def timed(check: Callable[[], Verdict]) -> Verdict:
    """Run a check and stamp the verdict with its start time and duration."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    verdict = check()
    return verdict.with_timing(started, time.perf_counter() - t0)


class VerdictFailed(AssertionError):
    """Raised by :func:`record` when a verdict counts as a fail."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(f"[{verdict.outcome.value}] {verdict.message}")
        self.verdict = verdict


# The id of the error verdict a step gets when an earlier step stopped its scenario before it ran.
NOT_CHECKED = "step.not_checked"


class ChecksFailed(AssertionError):
    """Raised once at a scenario's end when soft checks recorded failing verdicts.

    The message lists every failing verdict, one a line, so that the one
    failure JUnit shows names every check that did not hold.
    """

    def __init__(self, verdicts: list[Verdict]) -> None:
        super().__init__(failure_summary(verdicts))
        self.verdicts = verdicts


def failure_summary(verdicts: list[Verdict]) -> str:
    """``N checks did not pass:`` and one ``[outcome] message`` line per failing verdict."""
    noun = "check" if len(verdicts) == 1 else "checks"
    lines = [f"{len(verdicts)} {noun} did not pass:"]
    lines += [f"  [{v.outcome.value}] {v.message}" for v in verdicts]
    return "\n".join(lines)


# A recorder may return a replacement verdict (the plugin turns a waived failure into `waived`).
Recorder = Callable[[Verdict], "Verdict | None"]
_recorder: ContextVar[Recorder | None] = ContextVar("drillbook_recorder", default=None)
_strict: ContextVar[bool] = ContextVar("drillbook_strict", default=False)
# Soft: a failing verdict is recorded and the step goes on (the plugin fails the scenario at its end).
_soft: ContextVar[bool] = ContextVar("drillbook_soft", default=False)


@contextlib.contextmanager
def recording(recorder: Recorder, *, strict: bool = False) -> Iterator[None]:
    """Install the recorder that :func:`record` writes to (the plugin does this per scenario)."""
    token = _recorder.set(recorder)
    strict_token = _strict.set(strict)
    try:
        yield
    finally:
        _recorder.reset(token)
        _strict.reset(strict_token)


@contextlib.contextmanager
def soft_checks(enabled: bool = True) -> Iterator[None]:
    """Within: :func:`record` records a failing verdict without raising.

    The plugin enters this around each ``Then`` step so that one failed check
    does not hide the checks after it; it then owes the scenario a failure
    (:class:`ChecksFailed`) at the end. Soft recording needs a recorder: with
    none installed there is nobody to fail the scenario later, so
    :func:`record` raises as usual.
    """
    token = _soft.set(enabled)
    try:
        yield
    finally:
        _soft.reset(token)


def record(verdict: Verdict) -> Verdict:
    """Record a verdict on the current scenario and fail it when the verdict counts as a fail.

    This is the one function steps use: no bare ``assert`` in steps. Inside
    :func:`soft_checks` a failing verdict is recorded and returned instead.
    """
    recorder = _recorder.get()
    if recorder is not None:
        replaced = recorder(verdict)
        if replaced is not None:
            verdict = replaced
    if verdict.counts_as_fail(strict=_strict.get()) and not (_soft.get() and recorder is not None):
        raise VerdictFailed(verdict)
    return verdict


def verdict_from_error(check_id: str, exc: Exception) -> Verdict:
    """A drill that raised: "checked and it does not hold" is failed, "could not check" is error."""
    from .errors import BackupUnreadable, NoBackupFound, RestoreFailed

    hint = getattr(exc, "hint", "")
    context = getattr(exc, "context", {})
    evidence = {"error": type(exc).__name__, **({"hint": hint} if hint else {}),
                **{k: v for k, v in context.items() if isinstance(v, str | int | float)}}
    message = str(exc)
    if isinstance(exc, NoBackupFound | BackupUnreadable | RestoreFailed):
        return Verdict.failed(check_id, message, evidence=evidence)
    return Verdict.error(check_id, message, evidence=evidence)
