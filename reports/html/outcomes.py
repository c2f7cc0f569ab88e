"""How an outcome looks on the page: a word, a symbol and a colour class, never colour alone.

Shared by every section of the report (summary, cards, the fleet overview), so the
same outcome reads the same everywhere. :func:`r` is the redaction every string
goes through while a view is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from checks.redact import redact
from checks.verdict import Outcome

# The order outcomes are counted and explained in: what needs action first.
DISPLAY_ORDER = (
    Outcome.FAILED,
    Outcome.ERROR,
    Outcome.WARNING,
    Outcome.WAIVED,
    Outcome.NOT_APPLICABLE,
    Outcome.PASSED,
)
LABELS = {
    Outcome.PASSED: "Passed",
    Outcome.WARNING: "Warning",
    Outcome.FAILED: "Failed",
    Outcome.ERROR: "Error",
    Outcome.NOT_APPLICABLE: "Not applicable",
    Outcome.WAIVED: "Waived",
}
# A symbol next to every outcome word, so no outcome is told by colour alone.
SYMBOLS = {
    Outcome.PASSED: "\u2713",  # check mark
    Outcome.WARNING: "\u26a0",  # warning sign
    Outcome.FAILED: "\u2717",  # ballot x
    Outcome.ERROR: "\u203c",  # double exclamation mark
    Outcome.NOT_APPLICABLE: "\u2205",  # empty set
    Outcome.WAIVED: "\u2691",  # flag
}
MEANINGS = {
    Outcome.PASSED: "checked, and it holds",
    Outcome.WARNING: "checked, inside a documented warning band",
    Outcome.FAILED: "checked, and it does not hold",
    Outcome.ERROR: "could not check (unreachable, unreadable, timed out)",
    Outcome.NOT_APPLICABLE: "does not exist here, with the reason",
    Outcome.WAIVED: "failed, but covered by an unexpired waiver",
}
# How a count of scenarios with an outcome reads in the verdict sentence.
PHRASES = {
    Outcome.PASSED: "passed",
    Outcome.WARNING: "with a warning",
    Outcome.FAILED: "failed",
    Outcome.ERROR: "could not be checked",
    Outcome.NOT_APPLICABLE: "not applicable",
    Outcome.WAIVED: "waived",
}


@dataclass(frozen=True)
class Badge:
    """An outcome as the page shows it: word, symbol and CSS class."""

    css: str
    label: str
    symbol: str
    counts_as_fail: bool


def badge(outcome: Outcome, *, strict: bool) -> Badge:
    """The badge of ``outcome``; ``counts_as_fail`` follows the run's strict mode."""
    return Badge(
        css=css_class(outcome),
        label=LABELS[outcome],
        symbol=SYMBOLS[outcome],
        counts_as_fail=outcome.counts_as_fail(strict=strict),
    )


def css_class(outcome: Outcome) -> str:
    """``o-not-applicable`` for :attr:`Outcome.NOT_APPLICABLE`: the template's colour classes."""
    return f"o-{outcome.value.replace('_', '-')}"


def r(text: str) -> str:
    """Redact ``text``: every string of a view goes through here (and again in the template)."""
    return redact(text)
