"""The scenario cards, the verdict tables in them, and the cadence and pack indexes of those cards."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from checks.redact import redact_obj
from checks.verdict import Outcome, Verdict, format_duration, jsonable
from reports.results import CADENCES, ScenarioResult, StepResult

from .outcomes import DISPLAY_ORDER, LABELS, Badge, badge, css_class, r

# Evidence longer than this is folded into a <details> element.
_EVIDENCE_FOLD_CHARS = 600
_EVIDENCE_FOLD_LINES = 14
# A scalar evidence value longer than this is shown as a block, not inline.
_INLINE_VALUE_CHARS = 100

_STEP_STATUS_SYMBOLS = {"passed": "\u2713", "failed": "\u2717", "error": "\u2717", "undefined": "?",
                        "skipped": "\u2013"}
_NO_CADENCE = "none"
_REFERENCE_PREFIX = "ref:"
_ID_PREFIX = "id:"


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


def anchor_of(index: int) -> str:
    """The id of the card of the ``index``-th scenario (1-based, in run order): links point here."""
    return f"scenario-{index}"


def scenario_view(scenario: ScenarioResult, index: int, *, strict: bool) -> ScenarioView:
    """The card of one scenario, every string redacted."""
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
        anchor=anchor_of(index),
        # BKP-01[orders-eu] for a fleet member's scenario, the plain id otherwise.
        ident=r(scenario.display_id or "no id"),
        name=r(scenario.scenario),
        feature=r(scenario.feature),
        feature_path=r(scenario.feature_path),
        nodeid=r(scenario.nodeid),
        badge=badge(scenario.outcome, strict=strict),
        description=r(scenario.description.strip()),
        cadences=tuple(r(c) for c in scenario.cadences),
        references=tuple(r(ref) for ref in references),
        other_tags=tuple(r(t) for t in other),
        group=r(group),
        verdicts=verdicts,
        steps=tuple(_step_view(s) for s in scenario.steps),
        failure=r((scenario.failure or "").rstrip()),
        duration=format_duration(timedelta(seconds=scenario.duration_s)),
        first_problem=r(problem),
    )


def _step_view(step: StepResult) -> StepView:
    return StepView(
        keyword=r(step.keyword.strip().capitalize()),
        text=r(step.text),
        status=r(step.status),
        symbol=_STEP_STATUS_SYMBOLS.get(step.status, "?"),
    )


def _verdict_view(verdict: Verdict, *, strict: bool) -> VerdictView:
    return VerdictView(
        id=r(verdict.id),
        badge=badge(verdict.outcome, strict=strict),
        message=r(verdict.message),
        measured=r(_show(verdict.measured)),
        expected=r(_show(verdict.expected)),
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
    return json.dumps(jsonable(value), ensure_ascii=False, sort_keys=True)


def _evidence_view(evidence: Mapping[str, Any]) -> EvidenceView:
    # Redact the structure before serialising it: JSON escaping could split a secret.
    clean = redact_obj(jsonable(evidence))
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
    return EvidenceItem(key=r(key), value=r(text), block=block)


def listed(cards: Iterable[ScenarioView], outcome: Outcome) -> tuple[ListedVerdict, ...]:
    """Every verdict with ``outcome`` across ``cards``, with the card it belongs to."""
    css = css_class(outcome)
    return tuple(
        ListedVerdict(card, verdict)
        for card in cards
        for verdict in card.verdicts
        if verdict.badge.css == css
    )


def cadence_groups(
    scenarios: Sequence[ScenarioResult], cards: Sequence[ScenarioView]
) -> tuple[CadenceGroup, ...]:
    """Cards by their most frequent cadence; the other cadences list them as "also run"."""
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


def pack_groups(
    scenarios: Sequence[ScenarioResult], cards: Sequence[ScenarioView]
) -> tuple[PackGroup, ...]:
    """An index of the cards by area of the suite, then by product pack."""
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
            f"{tally[LABELS[o]]} {LABELS[o].lower()}" for o in DISPLAY_ORDER if LABELS[o] in tally
        )
        slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower())
        groups.append(
            PackGroup(
                anchor=f"{'pack' if is_pack else 'area'}-{len(groups) + 1}-{slug}",
                title=r(name),
                kind=kind,
                scenarios=tuple(members),
                summary=summary,
            )
        )
    return tuple(groups)
