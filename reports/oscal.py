"""OSCAL assessment results from recorded runs, built with compliance-trestle's typed models.

Every object is a trestle (pydantic) model generated from the OSCAL schema, so
a document that does not fit the schema fails while it is built, never later
in a GRC tool. Identifiers are UUIDv5 of stable names (run id, scenario node
id, control), so the same runs always give the same document.

Mapping:

- one ``result`` per run (start/end, the command as description);
- ``reviewed-controls``: every ``@control:CP-9`` and ``@ref:ISO27001-A.8.13``
  tag of the run's scenarios, as lower-case OSCAL control ids (``cp-9``,
  ``iso27001-a.8.13``);
- one ``observation`` per scenario (method TEST): its verdicts with measured
  vs expected, linked to the scenario's JSON file in the evidence bundle;
- one ``finding`` per scenario and control: ``satisfied`` when the scenario's
  outcome is passed, warning or not applicable; ``not-satisfied`` otherwise,
  including ``waived`` (the waiver accepts the risk; it does not make the
  control hold), with the waiver in the remarks.
"""

from __future__ import annotations

import importlib
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from checks.errors import DrillbookError
from checks.verdict import Outcome
from reports.results import RunResult, ScenarioResult

# trestle's models accept field names at runtime (populate_by_name) while their stubs show only the
# JSON aliases, so mypy cannot check the calls; pydantic validates every value on construction.
ar: Any = importlib.import_module("trestle.oscal.assessment_results")
common: Any = importlib.import_module("trestle.oscal.common")

# A fixed namespace: drillbook's OSCAL ids are reproducible from run and scenario names alone.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://drillbook.invalid/oscal")
_CONTROL_TAGS = ("control:", "ref:")
_TOKEN = re.compile(r"[^a-z0-9_.-]+")
_SATISFIED = (Outcome.PASSED, Outcome.WARNING, Outcome.NOT_APPLICABLE)


class OscalError(DrillbookError):
    """The OSCAL document could not be built: a value the schema rejects, a naive timestamp."""

    default_hint = "the run's results.json holds a value OSCAL cannot carry: report it as a drillbook bug"


def _id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(parts)))


def control_ids(tags: Sequence[str]) -> list[str]:
    """``@control:CP-9`` → ``cp-9``; ``@ref:ISO27001-A.8.13`` → ``iso27001-a.8.13`` (OSCAL tokens)."""
    found = []
    for tag in tags:
        for prefix in _CONTROL_TAGS:
            if tag.startswith(prefix):
                token = _TOKEN.sub("-", tag[len(prefix):].lower()).strip("-.")
                if token and not token[0].isalpha():
                    token = f"c-{token}"
                if token and token not in found:
                    found.append(token)
    return found


def _moment(text: str, fallback: str) -> datetime:
    value = datetime.fromisoformat(text or fallback)
    if value.tzinfo is None:
        raise OscalError(f"timestamp {text!r} has no time zone; OSCAL needs aware date-times")
    return value


def assessment_results(runs: Sequence[RunResult], *, evidence_paths: dict[tuple[str, str], str] | None = None
                       ) -> str:
    """The OSCAL assessment-results JSON for ``runs`` (validated by trestle's models while built)."""
    if not runs:
        raise OscalError("no run to describe", hint="run `drillbook run` first, or widen --since")
    ordered = sorted(runs, key=lambda r: r.run_id)
    try:
        results = [_result(run, evidence_paths or {}) for run in ordered]
        last = max(_moment(r.finished_at, r.started_at) for r in ordered)
        metadata = common.Metadata(
            title=f"drillbook assessment results: {', '.join(r.run_id for r in ordered)}",
            last_modified=last,
            version=ordered[-1].drillbook_version or "0",
            oscal_version=common.OscalVersion("1.1.2"),
        )
        document = ar.AssessmentResults(
            uuid=_id("assessment-results", *(r.run_id for r in ordered)),
            metadata=metadata,
            import_ap=ar.ImportAp(href="drillbook-assessment-plan.json",
                                  remarks="The features under features/ are the assessment plan."),
            results=results,
        )
        text: str = document.oscal_serialize_json(pretty=True, wrapped=True)
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise OscalError(f"the OSCAL document does not fit the schema: {exc}") from exc
    return text + "\n"


def _result(run: RunResult, evidence: dict[tuple[str, str], str]) -> Any:
    controls: list[str] = []
    for scenario in run.scenarios:
        controls.extend(c for c in control_ids(scenario.tags) if c not in controls)
    observations: list[Any] = []
    findings: list[Any] = []
    for scenario in run.scenarios:
        obs_id = _id("observation", run.run_id, scenario.nodeid)
        observations.append(_observation(run, scenario, obs_id, evidence))
        findings.extend(_finding(run, scenario, control, obs_id) for control in control_ids(scenario.tags))
    reviewed = common.ReviewedControls(
        description="Controls named by the scenarios' @control and @ref tags",
        control_selections=[common.ControlSelections(
            include_controls=[common.SelectControlById(control_id=c) for c in sorted(controls)])]
        if controls else [common.ControlSelectionsAll(include_all=common.IncludeAll())],
    )
    return ar.Result(
        uuid=_id("result", run.run_id),
        title=f"drillbook run {run.run_id}",
        description=f"{run.command or 'drillbook run'} — environment {run.environment or 'unknown'}, "
                    f"host {run.host or 'unknown'}, user {run.user or 'unknown'}",
        start=_moment(run.started_at, run.started_at),
        end=_moment(run.finished_at, run.started_at),
        reviewed_controls=reviewed,
        observations=observations or None,
        findings=findings or None,
    )


def _observation(run: RunResult, scenario: ScenarioResult, obs_id: str,
                 evidence: dict[tuple[str, str], str]) -> Any:
    lines = [f"[{v.outcome.value}] {v.id}: {v.message}" for v in scenario.verdicts]
    if scenario.failure:
        lines.append(f"failure: {scenario.failure.splitlines()[0]}")
    props = [common.Property(name="outcome", value=scenario.outcome.value,
                             ns="https://drillbook.invalid/ns/oscal")]
    if scenario.scenario_id:
        props.append(common.Property(name="scenario-id", value=scenario.scenario_id,
                                     ns="https://drillbook.invalid/ns/oscal"))
    href = evidence.get((run.run_id, scenario.nodeid))
    return ar.Observation(
        uuid=obs_id,
        title=scenario.scenario,
        description="\n".join(lines) or "no verdict recorded",
        props=props,
        methods=["TEST"],
        collected=_moment(scenario.started_at, run.started_at),
        relevant_evidence=[common.RelevantEvidence(
            href=href,
            description=f"scenario evidence: verdicts, measured vs expected ({scenario.feature_path})",
        )],
        remarks=scenario.description or None,
    )


def _finding(run: RunResult, scenario: ScenarioResult, control: str, obs_id: str) -> Any:
    outcome = scenario.outcome
    state = (common.ObjectiveStatusStateValidValues.satisfied if outcome in _SATISFIED
             else common.ObjectiveStatusStateValidValues.not_satisfied)
    remarks = None
    if outcome is Outcome.WAIVED:
        waivers = [v.evidence.get("waiver") for v in scenario.verdicts if v.outcome is Outcome.WAIVED]
        remarks = f"failed, covered by a waiver: {waivers[0]}" if waivers else "failed, covered by a waiver"
    return common.Finding(
        uuid=_id("finding", run.run_id, scenario.nodeid, control),
        title=f"{control}: {scenario.scenario}",
        description=f"Scenario {scenario.scenario_id or scenario.nodeid} {outcome.value}",
        target=common.FindingTarget(
            type=common.FindingTargetTypeValidValues.objective_id,
            target_id=f"{control}_obj",
            status=common.ObjectiveStatus(state=state, reason=None if outcome in _SATISFIED else "fail"),
        ),
        related_observations=[common.RelatedObservation(observation_uuid=obs_id)],
        remarks=remarks,
    )
