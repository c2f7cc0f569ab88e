"""A doctor check: a name and a function returning a :class:`Verdict`; run under a deadline, shown one a line.

Every check runs in a thread of its own, all at once, so that unreachable hosts cost one
connect timeout in all rather than one each. A check that raises is a ``FAIL`` naming the error
(its hint becomes the fix); one that has not answered by the deadline is a ``FAIL`` saying so,
and the others are reported all the same. Verdicts map to three words: ``PASS`` (passed, not
applicable), ``WARN`` (warning: still exit 0) and ``FAIL`` (failed, or could not check).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from checks import redact
from checks.errors import DrillbookError
from checks.verdict import Outcome, Verdict

# Each call of a check has its own timeout (PostgreSQL and Redis: 5 s to connect, PostgreSQL 10 s a
# statement; an S3 store listing: two attempts of 3 s to connect and 5 s to read; the S3 ledger's
# list, put and delete: one attempt of 3 + 3 s each, the put only while it and the delete fit;
# HTTP 5 s; TLS 10 s): a silent host ends its check within this backstop, which catches the rest
# (a server that answers each statement slowly, one after another).
CHECK_DEADLINE_S = 20.0
CONNECT_TIMEOUT_S = 5
T = TypeVar("T")
R = TypeVar("R")
_UNEXPECTED_FIX = ("an unexpected error: run the check's command by hand (or `drillbook doctor "
                   "--json`) and report it if it persists")


class Label(enum.StrEnum):
    PASS = "PASS"  # noqa: S105 - a verdict word, not a password
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report: ``name`` (``targets.production reachable``) and what decides it."""

    name: str
    run: Callable[[], Verdict]


def label(outcome: Outcome) -> Label:
    """``warning`` is WARN; ``failed`` and ``error`` (could not check) are FAIL; the rest PASS."""
    if outcome is Outcome.WARNING:
        return Label.WARN
    if outcome.counts_as_fail():
        return Label.FAIL
    return Label.PASS


def fix_of(verdict: Verdict) -> str:
    """The remediation a verdict carries (``evidence["fix"]``), or ""."""
    return str(verdict.evidence.get("fix") or "")


def result(name: str, outcome: Outcome, message: str, *, fix: str = "", **evidence: Any) -> Verdict:
    """A doctor verdict: ``fix`` says what to do about a WARN or FAIL."""
    return Verdict(name, outcome, message, evidence={**evidence, **({"fix": fix} if fix else {})})


def from_error(name: str, exc: BaseException) -> Verdict:
    """A check that raised: FAIL naming the error; a drillbook error's hint is the fix."""
    if isinstance(exc, DrillbookError):
        return result(name, Outcome.ERROR, redact.redact(exc.message), fix=exc.hint or _UNEXPECTED_FIX,
                      error=type(exc).__name__)
    return result(name, Outcome.ERROR, f"{type(exc).__name__}: {redact.redact(str(exc))}",
                  fix=_UNEXPECTED_FIX, error=type(exc).__name__)


def guarded(check: Check) -> Verdict:
    """Run one check; whatever it raises becomes its FAIL line, never the end of the report."""
    try:
        verdict = check.run()
    except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
        return from_error(check.name, exc)
    return verdict if verdict.id == check.name else replace(verdict, id=check.name)


def run_checks(checks: Sequence[Check], *, deadline_s: float = CHECK_DEADLINE_S) -> Iterator[Verdict]:
    """Run every check at once; yield their verdicts in order, each by ``deadline_s`` after the start.

    A check still running at its deadline is left to finish in a daemon thread (it only reads)
    and reported as a FAIL: the report never hangs on a host that does not answer.
    """
    slots: list[list[Verdict]] = [[] for _ in checks]
    threads = []
    for check, slot in zip(checks, slots, strict=True):
        thread = threading.Thread(target=lambda c=check, s=slot: s.append(guarded(c)),
                                  name=f"doctor: {check.name}", daemon=True)
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + deadline_s
    for check, slot, thread in zip(checks, slots, threads, strict=True):
        thread.join(max(0.0, deadline - time.monotonic()))
        if slot:
            yield slot[0]
        else:
            yield result(check.name, Outcome.ERROR, f"no answer within {deadline_s:g} s",
                         fix="the check hung: look for a host that accepts connections but never "
                             "answers (a firewall dropping packets, a stuck proxy)", error="timeout")


def concurrently(work: Callable[[T], R], items: Sequence[T]) -> list[R | BaseException]:
    """``work`` on every item at once (each bounded by its own timeouts); results or errors, in order.

    So that a check reading several servers costs one connect timeout, not one per silent server.
    """
    if not items:
        return []
    from concurrent.futures import ThreadPoolExecutor

    def attempt(item: T) -> R | BaseException:
        try:
            return work(item)
        except Exception as exc:  # noqa: BLE001 - handed back to the caller, which names it
            return exc

    with ThreadPoolExecutor(max_workers=len(items), thread_name_prefix="doctor") as pool:
        return list(pool.map(attempt, items))


def one_line(text: str) -> str:
    """Line breaks (a server's multi-line error) folded into one line."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def render(verdict: Verdict) -> list[str]:
    """``PASS  name: message``, and on WARN/FAIL an indented ``fix:`` line."""
    word = label(verdict.outcome)
    lines = [f"{word.value}  {one_line(verdict.id)}: {one_line(verdict.message)}"]
    fix = fix_of(verdict)
    if word is not Label.PASS and fix:
        lines.append(f"      fix: {one_line(fix)}")
    return lines


def summary(verdicts: Iterable[Verdict]) -> str:
    """``12 checks: 10 pass, 1 warn, 1 fail``."""
    counts = dict.fromkeys(Label, 0)
    total = 0
    for verdict in verdicts:
        counts[label(verdict.outcome)] += 1
        total += 1
    noun = "check" if total == 1 else "checks"
    return f"{total} {noun}: " + ", ".join(f"{n} {w.value.lower()}" for w, n in counts.items())


def as_json(verdicts: Iterable[Verdict]) -> list[dict[str, str]]:
    """Each check as ``{name, outcome, verdict, message, fix}`` (``outcome``: pass, warn or fail)."""
    return [{"name": v.id, "outcome": label(v.outcome).value.lower(), "verdict": v.outcome.value,
             "message": v.message, "fix": fix_of(v) if label(v.outcome) is not Label.PASS else ""}
            for v in verdicts]


def failed(verdicts: Iterable[Verdict]) -> bool:
    """True when any check is a FAIL (warnings pass)."""
    return any(label(v.outcome) is Label.FAIL for v in verdicts)
