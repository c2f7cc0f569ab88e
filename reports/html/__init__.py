"""The one-page HTML compliance report an auditor reads without a terminal.

:func:`write_html_report` turns a :class:`~reports.results.RunResult` into a
single self-contained file: inline CSS, no JavaScript, nothing fetched (no
fonts, no CDN), print-friendly. The page shows, top to bottom:

- the overall verdict (PASS/FAIL in words *and* colour), who ran what, when,
  where, with which version, configuration, command line and strict mode;
- in a fleet run (any scenario ran for a member), the fleet overview: a member x
  drill matrix of outcomes, worst member first, with each member's restore
  duration and backup age over the last runs charted against their limits
  (:mod:`reports.html.fleet`; earlier runs come in as ``history``);
- counts per outcome, for scenarios and for checks;
- what needs attention (scenarios that count as a fail);
- waived checks with their waivers, and not-applicable checks with reasons;
- every scenario as a card, grouped by cadence (continuous … annually, then
  "no cadence"): id, name, feature file, outcome, rationale, references, a
  table of its checks (measured against expected, message, evidence), any
  failure text, and its steps (:mod:`reports.html.scenarios`);
- an index of the same scenarios by product pack / area.

Every string is redacted with :func:`checks.redact.redact` while the view is
built and again by the template environment's ``finalize`` hook, and Jinja2
autoescaping is on for everything. The output depends only on the
``RunResult`` and the history given: the same inputs render to the same bytes.
A run without fleet members renders exactly as before the fleet overview existed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from checks.files import write_atomic
from checks.redact import redact
from checks.verdict import Outcome, format_duration
from reports.results import RunResult, collector_paused

from .fleet import FleetView, fleet_view
from .outcomes import DISPLAY_ORDER, MEANINGS, PHRASES, Badge, badge, r
from .scenarios import (
    CadenceGroup,
    ListedVerdict,
    PackGroup,
    ScenarioView,
    cadence_groups,
    listed,
    pack_groups,
    scenario_view,
)

__all__ = ["build_view", "render_html_report", "write_html_report"]

_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class Count:
    """How many scenarios and checks ended with one outcome."""

    badge: Badge
    meaning: str
    scenarios: int
    checks: int


@dataclass(frozen=True)
class ReportView:
    """Everything the template shows."""

    title: str
    run_id: str
    passed: bool
    verdict_word: str
    verdict_sentence: str
    facts: tuple[tuple[str, str], ...]
    environment: str
    environment_details: tuple[tuple[str, str], ...]
    strict: bool
    strict_text: str
    counts: tuple[Count, ...]
    total_scenarios: int
    total_checks: int
    attention: tuple[ScenarioView, ...]
    waived: tuple[ListedVerdict, ...]
    not_applicable: tuple[ListedVerdict, ...]
    empty_scenarios: tuple[ScenarioView, ...]
    cadence_groups: tuple[CadenceGroup, ...]
    pack_groups: tuple[PackGroup, ...]
    footer: str
    fleet: FleetView | None = None


def write_html_report(run: RunResult, path: Path, *, history: Sequence[RunResult] = ()) -> Path:
    """Write the self-contained HTML compliance report for ``run`` to ``path``.

    ``history`` is earlier runs (in fleet mode: earlier *merged* results), read only
    for the fleet overview's charts. The parent directory is created when missing;
    the file is replaced atomically. Returns ``path``.
    """
    return write_atomic(path, render_html_report(run, history=history), phase="writing the HTML report")


@cache
def _template() -> jinja2.Template:
    """The compiled template, once per process (compiling it is a fixed cost each run would pay)."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return environment.get_template(_TEMPLATE)


def render_html_report(run: RunResult, *, history: Sequence[RunResult] = ()) -> str:
    """The report as a string: deterministic for the same inputs, every string redacted."""
    with collector_paused():
        return _template().render(report=build_view(run, history=history))


def build_view(run: RunResult, *, history: Sequence[RunResult] = ()) -> ReportView:
    """The redacted, display-ready view of a run (what the template renders)."""
    cards = tuple(
        scenario_view(scenario, index, strict=run.strict)
        for index, scenario in enumerate(run.scenarios, start=1)
    )
    verdict_counts = dict.fromkeys(Outcome, 0)
    for scenario in run.scenarios:
        for verdict in scenario.verdicts:
            verdict_counts[verdict.outcome] += 1
    scenario_counts = dict.fromkeys(Outcome, 0)
    for scenario in run.scenarios:
        scenario_counts[scenario.outcome] += 1
    counts = tuple(
        Count(badge(o, strict=run.strict), MEANINGS[o], scenario_counts[o], verdict_counts[o])
        for o in DISPLAY_ORDER
    )
    word, sentence = _overall(run, scenario_counts)
    title = f"drillbook compliance report \u2014 run {run.run_id} \u2014 {word}"
    return ReportView(
        title=r(title),
        run_id=r(run.run_id),
        passed=run.passed,
        verdict_word=word,
        verdict_sentence=r(sentence),
        facts=_facts(run),
        environment=r(run.environment or "\u2014"),
        environment_details=tuple(
            (r(str(k)), r(str(v))) for k, v in run.environment_details.items()
        ),
        strict=run.strict,
        strict_text=(
            "on \u2014 warnings count as failures"
            if run.strict
            else "off \u2014 warnings pass and are listed"
        ),
        counts=counts,
        total_scenarios=len(run.scenarios),
        total_checks=sum(verdict_counts.values()),
        attention=tuple(c for c in cards if c.badge.counts_as_fail),
        waived=listed(cards, Outcome.WAIVED),
        not_applicable=listed(cards, Outcome.NOT_APPLICABLE),
        empty_scenarios=tuple(c for c in cards if not c.verdicts),
        cadence_groups=cadence_groups(run.scenarios, cards),
        pack_groups=pack_groups(run.scenarios, cards),
        footer=r(
            f"Generated by drillbook {run.drillbook_version or '(unknown version)'} from the "
            f"recorded results of run {run.run_id}. The evidence bundle holds the same data as JSON."
        ),
        fleet=fleet_view(run, history),
    )


def _finalize(value: Any) -> Any:
    """Jinja2 hook: the last redaction before anything reaches the page."""
    if isinstance(value, str):
        return redact(value)
    return value


def _overall(run: RunResult, counts: Mapping[Outcome, int]) -> tuple[str, str]:
    total = len(run.scenarios)
    if total == 0:
        return "FAIL", "No scenario ran: an empty run proves nothing."
    word = "PASS" if run.passed else "FAIL"
    failing = sum(
        n for outcome, n in counts.items() if outcome.counts_as_fail(strict=run.strict)
    )
    noted = [
        f"{counts[o]} {PHRASES[o]}"
        for o in (Outcome.WARNING, Outcome.WAIVED, Outcome.NOT_APPLICABLE)
        if counts[o] and not o.counts_as_fail(strict=run.strict)
    ]
    noun = "scenario" if total == 1 else "scenarios"
    if run.passed:
        sentence = f"All {total} {noun} count as passed"
        return word, sentence + (f" ({', '.join(noted)})." if noted else ".")
    parts = [f"{counts[o]} {PHRASES[o]}" for o in DISPLAY_ORDER
             if counts[o] and o.counts_as_fail(strict=run.strict)]
    return word, (
        f"{failing} of {total} {noun} did not pass ({', '.join(parts)})."
        + (" Strict mode: warnings count as failures." if run.strict and counts[Outcome.WARNING] else "")
    )


def _facts(run: RunResult) -> tuple[tuple[str, str], ...]:
    who = "@".join(part for part in (run.user, run.host) if part) or "\u2014"
    facts = [
        ("Run id", run.run_id),
        ("Started", _utc(run.started_at)),
        ("Finished", _utc(run.finished_at)),
        ("Duration", _elapsed(run.started_at, run.finished_at)),
        ("Run by", who),
        ("drillbook version", run.drillbook_version or "\u2014"),
        ("Configuration", run.config_path or "none (embedded defaults)"),
        ("Command", run.command or "\u2014"),
    ]
    return tuple((label, r(value)) for label, value in facts)


def _parse_time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _utc(text: str) -> str:
    moment = _parse_time(text)
    if moment is None:
        return text or "\u2014"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _elapsed(start: str, end: str) -> str:
    begun, ended = _parse_time(start), _parse_time(end)
    if begun is None or ended is None:
        return "\u2014"
    return format_duration(ended - begun)
