"""The one-page HTML compliance report an auditor reads without a terminal.

:func:`write_html_report` turns a :class:`~reports.results.RunResult` into a
single self-contained file: inline CSS, no JavaScript, nothing fetched (no
fonts, no CDN), print-friendly. The page shows, top to bottom:

- the overall verdict (PASS/FAIL in words *and* colour), who ran what, when,
  where, with which version, configuration, command line and strict mode;
- counts per outcome, for scenarios and for checks;
- what needs attention (scenarios that count as a fail);
- waived checks with their waivers, and not-applicable checks with reasons;
- every scenario as a card, grouped by cadence (continuous … annually, then
  "no cadence"): id, name, feature file, outcome, rationale, references, a
  table of its checks (measured against expected, message, evidence), any
  failure text, and its steps;
- an index of the same scenarios by product pack / area.

Every string is redacted with :func:`checks.redact.redact` while the view is
built and again by the template environment's ``finalize`` hook, and Jinja2
autoescaping is on for everything. The output depends only on the
``RunResult``: the same run renders to the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2

from checks.files import write_atomic
from checks.redact import redact, redact_obj
from checks.verdict import Outcome, Verdict, format_duration, jsonable
from reports.results import CADENCES, RunResult, ScenarioResult, StepResult

__all__ = ["render_html_report", "write_html_report"]

_TEMPLATES = Path(__file__).parent / "templates"
_TEMPLATE = "report.html.j2"

# Evidence longer than this is folded into a <details> element.
_EVIDENCE_FOLD_CHARS = 600
_EVIDENCE_FOLD_LINES = 14
# A scalar evidence value longer than this is shown as a block, not inline.
_INLINE_VALUE_CHARS = 100

# The order outcomes are counted and explained in: what needs action first.
_DISPLAY_ORDER = (
    Outcome.FAILED,
    Outcome.ERROR,
    Outcome.WARNING,
    Outcome.WAIVED,
    Outcome.NOT_APPLICABLE,
    Outcome.PASSED,
)
_LABELS = {
    Outcome.PASSED: "Passed",
    Outcome.WARNING: "Warning",
    Outcome.FAILED: "Failed",
    Outcome.ERROR: "Error",
    Outcome.NOT_APPLICABLE: "Not applicable",
    Outcome.WAIVED: "Waived",
}
# A symbol next to every outcome word, so no outcome is told by colour alone.
_SYMBOLS = {
    Outcome.PASSED: "\u2713",  # check mark
    Outcome.WARNING: "\u26a0",  # warning sign
    Outcome.FAILED: "\u2717",  # ballot x
    Outcome.ERROR: "\u203c",  # double exclamation mark
    Outcome.NOT_APPLICABLE: "\u2205",  # empty set
    Outcome.WAIVED: "\u2691",  # flag
}
_MEANINGS = {
    Outcome.PASSED: "checked, and it holds",
    Outcome.WARNING: "checked, inside a documented warning band",
    Outcome.FAILED: "checked, and it does not hold",
    Outcome.ERROR: "could not check (unreachable, unreadable, timed out)",
    Outcome.NOT_APPLICABLE: "does not exist here, with the reason",
    Outcome.WAIVED: "failed, but covered by an unexpired waiver",
}
# How a count of scenarios with an outcome reads in the verdict sentence.
_PHRASES = {
    Outcome.PASSED: "passed",
    Outcome.WARNING: "with a warning",
    Outcome.FAILED: "failed",
    Outcome.ERROR: "could not be checked",
    Outcome.NOT_APPLICABLE: "not applicable",
    Outcome.WAIVED: "waived",
}
_STEP_STATUS_SYMBOLS = {"passed": "\u2713", "failed": "\u2717", "error": "\u2717", "undefined": "?",
                        "skipped": "\u2013"}
_NO_CADENCE = "none"
_REFERENCE_PREFIX = "ref:"
_ID_PREFIX = "id:"


@dataclass(frozen=True)
class Badge:
    """An outcome as the page shows it: word, symbol and CSS class."""

    css: str
    label: str
    symbol: str
    counts_as_fail: bool


@dataclass(frozen=True)
class EvidenceItem:
    """One evidence key; ``block`` values are shown preformatted."""

    key: str
    value: str
    block: bool


@dataclass(frozen=True)
class EvidenceView:
    """A verdict's evidence, folded behind <details> when long."""

    items: tuple[EvidenceItem, ...]
    folded: bool
    summary: str


@dataclass(frozen=True)
class VerdictView:
    """One check's finding, ready to render."""

    id: str
    badge: Badge
    message: str
    measured: str
    expected: str
    duration: str
    evidence: EvidenceView


@dataclass(frozen=True)
class StepView:
    """One Gherkin step and pytest's status for it."""

    keyword: str
    text: str
    status: str
    symbol: str


@dataclass(frozen=True)
class ScenarioView:
    """One scenario card."""

    anchor: str
    ident: str
    name: str
    feature: str
    feature_path: str
    nodeid: str
    badge: Badge
    description: str
    cadences: tuple[str, ...]
    references: tuple[str, ...]
    other_tags: tuple[str, ...]
    group: str
    verdicts: tuple[VerdictView, ...]
    steps: tuple[StepView, ...]
    failure: str
    duration: str
    first_problem: str


@dataclass(frozen=True)
class CadenceGroup:
    """Scenarios of one cadence: cards for those whose most frequent cadence it is."""

    anchor: str
    title: str
    cards: tuple[ScenarioView, ...]
    also: tuple[ScenarioView, ...]


@dataclass(frozen=True)
class PackGroup:
    """Scenarios of one product pack or area, as an index."""

    anchor: str
    title: str
    kind: str
    scenarios: tuple[ScenarioView, ...]
    summary: str


@dataclass(frozen=True)
class ListedVerdict:
    """A verdict listed outside its card (waived, not applicable)."""

    scenario: ScenarioView
    verdict: VerdictView


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


def write_html_report(run: RunResult, path: Path) -> Path:
    """Write the self-contained HTML compliance report for ``run`` to ``path``.

    The parent directory is created when missing; the file is replaced
    atomically. Returns ``path``.
    """
    return write_atomic(path, render_html_report(run), phase="writing the HTML report")


def render_html_report(run: RunResult) -> str:
    """The report as a string: deterministic for the same ``run``, every string redacted."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    template = environment.get_template(_TEMPLATE)
    return template.render(report=build_view(run))


def build_view(run: RunResult) -> ReportView:
    """The redacted, display-ready view of a run (what the template renders)."""
    cards = tuple(
        _scenario_view(scenario, index, strict=run.strict)
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
        Count(_badge(o, strict=run.strict), _MEANINGS[o], scenario_counts[o], verdict_counts[o])
        for o in _DISPLAY_ORDER
    )
    word, sentence = _overall(run, scenario_counts)
    title = f"drillbook compliance report \u2014 run {run.run_id} \u2014 {word}"
    return ReportView(
        title=_r(title),
        run_id=_r(run.run_id),
        passed=run.passed,
        verdict_word=word,
        verdict_sentence=_r(sentence),
        facts=_facts(run),
        environment=_r(run.environment or "\u2014"),
        environment_details=tuple(
            (_r(str(k)), _r(str(v))) for k, v in run.environment_details.items()
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
        waived=_listed(cards, Outcome.WAIVED),
        not_applicable=_listed(cards, Outcome.NOT_APPLICABLE),
        empty_scenarios=tuple(c for c in cards if not c.verdicts),
        cadence_groups=_cadence_groups(run.scenarios, cards),
        pack_groups=_pack_groups(run.scenarios, cards),
        footer=_r(
            f"Generated by drillbook {run.drillbook_version or '(unknown version)'} from the "
            f"recorded results of run {run.run_id}. The evidence bundle holds the same data as JSON."
        ),
    )


def _finalize(value: Any) -> Any:
    """Jinja2 hook: the last redaction before anything reaches the page."""
    if isinstance(value, str):
        return redact(value)
    return value


def _r(text: str) -> str:
    return redact(text)


def _badge(outcome: Outcome, *, strict: bool) -> Badge:
    return Badge(
        css=f"o-{outcome.value.replace('_', '-')}",
        label=_LABELS[outcome],
        symbol=_SYMBOLS[outcome],
        counts_as_fail=outcome.counts_as_fail(strict=strict),
    )


def _overall(run: RunResult, counts: Mapping[Outcome, int]) -> tuple[str, str]:
    total = len(run.scenarios)
    if total == 0:
        return "FAIL", "No scenario ran: an empty run proves nothing."
    word = "PASS" if run.passed else "FAIL"
    failing = sum(
        n for outcome, n in counts.items() if outcome.counts_as_fail(strict=run.strict)
    )
    listed = [
        f"{counts[o]} {_PHRASES[o]}"
        for o in (Outcome.WARNING, Outcome.WAIVED, Outcome.NOT_APPLICABLE)
        if counts[o] and not o.counts_as_fail(strict=run.strict)
    ]
    noun = "scenario" if total == 1 else "scenarios"
    if run.passed:
        sentence = f"All {total} {noun} count as passed"
        return word, sentence + (f" ({', '.join(listed)})." if listed else ".")
    parts = [f"{counts[o]} {_PHRASES[o]}" for o in _DISPLAY_ORDER
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
    return tuple((label, _r(value)) for label, value in facts)


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


def _scenario_view(scenario: ScenarioResult, index: int, *, strict: bool) -> ScenarioView:
    verdicts = tuple(_verdict_view(v, strict=strict) for v in scenario.verdicts)
    problem = next(
        (v.message for v in verdicts if v.badge.counts_as_fail),
        (scenario.failure or "").strip().splitlines()[0] if scenario.failure else "",
    )
    references = tuple(t[len(_REFERENCE_PREFIX):] for t in scenario.tags if t.startswith(_REFERENCE_PREFIX))
    other = tuple(
        f"@{t}"
        for t in scenario.tags
        if not t.startswith((_REFERENCE_PREFIX, _ID_PREFIX)) and t not in CADENCES
    )
    group = f"pack {scenario.pack}" if scenario.pack else f"area {scenario.area}"
    return ScenarioView(
        anchor=f"scenario-{index}",
        ident=_r(scenario.scenario_id or "no id"),
        name=_r(scenario.scenario),
        feature=_r(scenario.feature),
        feature_path=_r(scenario.feature_path),
        nodeid=_r(scenario.nodeid),
        badge=_badge(scenario.outcome, strict=strict),
        description=_r(scenario.description.strip()),
        cadences=tuple(_r(c) for c in scenario.cadences),
        references=tuple(_r(r) for r in references),
        other_tags=tuple(_r(t) for t in other),
        group=_r(group),
        verdicts=verdicts,
        steps=tuple(_step_view(s) for s in scenario.steps),
        failure=_r((scenario.failure or "").rstrip()),
        duration=format_duration(timedelta(seconds=scenario.duration_s)),
        first_problem=_r(problem),
    )


def _step_view(step: StepResult) -> StepView:
    return StepView(
        keyword=_r(step.keyword.strip().capitalize()),
        text=_r(step.text),
        status=_r(step.status),
        symbol=_STEP_STATUS_SYMBOLS.get(step.status, "?"),
    )


def _verdict_view(verdict: Verdict, *, strict: bool) -> VerdictView:
    return VerdictView(
        id=_r(verdict.id),
        badge=_badge(verdict.outcome, strict=strict),
        message=_r(verdict.message),
        measured=_r(_show(verdict.measured)),
        expected=_r(_show(verdict.expected)),
        duration=format_duration(timedelta(seconds=verdict.duration_s)) if verdict.duration_s else "",
        evidence=_evidence_view(verdict.evidence),
    )


def _show(value: Any) -> str:
    """A measured or expected value for a person: durations readable, seconds kept."""
    if value is None:
        return "\u2014"
    if isinstance(value, timedelta):
        return f"{format_duration(value)} ({value.total_seconds():g} s)"
    if isinstance(value, str):
        return value
    return json.dumps(_plain(value), ensure_ascii=False, sort_keys=True)


def _evidence_view(evidence: Mapping[str, Any]) -> EvidenceView:
    # Redact the structure before serialising it: JSON escaping could split a secret.
    clean = redact_obj(_plain(evidence))
    items: list[EvidenceItem] = []
    if isinstance(clean, dict):
        for key, value in clean.items():
            items.append(_evidence_item(str(key), value))
    chars = sum(len(i.key) + len(i.value) for i in items)
    lines = sum(i.value.count("\n") + 1 for i in items)
    folded = chars > _EVIDENCE_FOLD_CHARS or lines > _EVIDENCE_FOLD_LINES
    noun = "field" if len(items) == 1 else "fields"
    summary = f"Evidence: {len(items)} {noun}, {lines} lines \u2014 show"
    return EvidenceView(items=tuple(items), folded=folded, summary=summary)


def _evidence_item(key: str, value: Any) -> EvidenceItem:
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, bool | int | float):
        text = json.dumps(value)
    else:
        text = json.dumps(value, ensure_ascii=False, indent=2)
    block = "\n" in text or len(text) > _INLINE_VALUE_CHARS
    return EvidenceItem(key=_r(key), value=_r(text), block=block)


_plain = jsonable



def _listed(cards: Iterable[ScenarioView], outcome: Outcome) -> tuple[ListedVerdict, ...]:
    css = f"o-{outcome.value.replace('_', '-')}"
    return tuple(
        ListedVerdict(card, verdict)
        for card in cards
        for verdict in card.verdicts
        if verdict.badge.css == css
    )


def _cadence_groups(
    scenarios: Sequence[ScenarioResult], cards: Sequence[ScenarioView]
) -> tuple[CadenceGroup, ...]:
    groups: list[CadenceGroup] = []
    for cadence in (*CADENCES, _NO_CADENCE):
        primary: list[ScenarioView] = []
        also: list[ScenarioView] = []
        for scenario, card in zip(scenarios, cards, strict=True):
            found = scenario.cadences
            ordered = [c for c in CADENCES if c in found]
            if cadence == _NO_CADENCE:
                if not ordered:
                    primary.append(card)
            elif ordered and ordered[0] == cadence:
                primary.append(card)
            elif cadence in ordered:
                also.append(card)
        if primary or also:
            title = "No cadence" if cadence == _NO_CADENCE else cadence.capitalize()
            groups.append(CadenceGroup(f"cadence-{cadence}", title, tuple(primary), tuple(also)))
    return tuple(groups)


def _pack_groups(
    scenarios: Sequence[ScenarioResult], cards: Sequence[ScenarioView]
) -> tuple[PackGroup, ...]:
    keyed: dict[tuple[int, str], list[ScenarioView]] = {}
    for scenario, card in zip(scenarios, cards, strict=True):
        # Areas of the suite first, then product packs; each alphabetically.
        key = (1, scenario.pack) if scenario.pack else (0, scenario.area)
        keyed.setdefault(key, []).append(card)
    groups: list[PackGroup] = []
    for (is_pack, name), members in sorted(keyed.items()):
        kind = "Product pack" if is_pack else "Area"
        tally: dict[str, int] = {}
        for member in members:
            tally[member.badge.label] = tally.get(member.badge.label, 0) + 1
        summary = ", ".join(
            f"{tally[_LABELS[o]]} {_LABELS[o].lower()}" for o in _DISPLAY_ORDER if _LABELS[o] in tally
        )
        slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower())
        groups.append(
            PackGroup(
                anchor=f"{'pack' if is_pack else 'area'}-{len(groups) + 1}-{slug}",
                title=_r(name),
                kind=kind,
                scenarios=tuple(members),
                summary=summary,
            )
        )
    return tuple(groups)
