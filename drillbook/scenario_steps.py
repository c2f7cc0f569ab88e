"""Every step of a scenario is reported: soft ``Then`` checks, and a stop that lists what it left.

pytest-bdd runs a scenario's steps in order and stops at the first step that
raises. For a drill that hides exactly what an auditor and an on-call engineer
need: when "the newest backup is at most 26h old" fails, whether that backup
still restores, matches its checksum and holds the expected rows is never
known. So the plugin (``drillbook.plugin``) calls these helpers from its
pytest-bdd hooks:

- :func:`begin_step` (``pytest_bdd_before_step``) makes a ``Then`` step *soft*
  (:func:`checks.verdict.soft_checks`): a failing verdict is recorded and the
  scenario goes on to its next check. ``Given`` and ``When`` steps stay hard:
  the steps after them need what they set up. A scenario (or feature) tagged
  ``@stop-on-failure`` keeps its ``Then`` steps hard too, for checks that only
  make sense when the one before them held.
- :func:`end_step` (after-step, step-error and lookup-error hooks) records the
  step with a status taken from the verdicts it recorded.
- :func:`list_unchecked` (``pytest_bdd_after_scenario``) lists every step after
  the one that stopped the scenario, as an ``error`` step with an ``error``
  verdict "not checked: <the step that stopped it>": never absent, never
  skipped. The scenario's outcome stays the stopping step's (see
  ``ScenarioResult.outcome``): the unchecked steps are its consequence.
- :func:`deferred_failure` gives the one :class:`~checks.verdict.ChecksFailed`
  the scenario owes when soft checks failed and nothing raised, and
  :func:`failure_text` the one failure message (JUnit, terminal) that lists
  every check that did not pass.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import pytest

from checks.verdict import NOT_CHECKED, ChecksFailed, Outcome, Verdict, failure_summary, soft_checks, worst
from reports.results import ScenarioResult, StepResult

# The tag a scenario (or a whole feature) carries when a failed check should end it there.
STOP_TAG = "stop-on-failure"
STOP_TAG_MEANING = "a failing Then step stops the scenario; the steps after it are listed as not checked"


@dataclass
class _OpenStep:
    """The step pytest-bdd is running: where its verdicts start, and its soft-checks context."""

    first_verdict: int
    soft: contextlib.AbstractContextManager[None]


_OPEN = pytest.StashKey[_OpenStep]()


def stops_on_failure(feature: Any, scenario: Any) -> bool:
    """True when the scenario or its feature carries ``@stop-on-failure``."""
    return STOP_TAG in set(scenario.tags) | set(feature.tags)


def begin_step(item: pytest.Item, result: ScenarioResult, feature: Any, scenario: Any, step: Any) -> None:
    """Remember where this step's verdicts start; make a ``Then`` step soft unless the scenario stops."""
    soft = soft_checks(step.type == "then" and not stops_on_failure(feature, scenario))
    # Entered here and left in end_step: pytest-bdd's hooks bracket the step, no `with` can.
    soft.__enter__()
    item.stash[_OPEN] = _OpenStep(first_verdict=len(result.verdicts), soft=soft)


def end_step(item: pytest.Item, result: ScenarioResult, step: Any, *, raised: bool, strict: bool,
             undefined: bool = False) -> None:
    """Leave soft mode and record the step, its status the worst of the verdicts it recorded."""
    first = len(result.verdicts)
    opened = item.stash.get(_OPEN, None)
    if opened is not None:
        del item.stash[_OPEN]
        opened.soft.__exit__(None, None, None)
        first = opened.first_verdict
    failing = [v.outcome for v in result.verdicts[first:] if v.counts_as_fail(strict=strict)]
    if undefined:
        status = "undefined"
    elif failing:
        status = "error" if worst(failing) is Outcome.ERROR else "failed"
    else:
        status = "failed" if raised else "passed"
    result.steps.append(StepResult(keyword=step.keyword, text=step.name, status=status))


def list_unchecked(result: ScenarioResult, scenario: Any) -> None:
    """List every step the scenario never reached as an ``error`` step and verdict, naming the cause."""
    done = len(result.steps)
    remaining = list(scenario.steps)[done:]
    if not remaining:
        return
    stopped = scenario.steps[done - 1] if done else None
    cause = _sentence(stopped) if stopped is not None else "the scenario's setup"
    for step in remaining:
        result.steps.append(StepResult(keyword=step.keyword, text=step.name, status=Outcome.ERROR.value))
        result.verdicts.append(Verdict.error(
            NOT_CHECKED,
            f"not checked: {cause} did not pass, so {_sentence(step)} never ran",
            evidence={"step": _sentence(step), "line": step.line_number, "stopped_at": cause,
                      **({"stopped_line": stopped.line_number} if stopped is not None else {})},
        ))


def _sentence(step: Any) -> str:
    # The step's kind, not its keyword: "And the subject database" reads as "Given the subject ...".
    return f"{str(step.type).capitalize()} {step.name}"


def failing_verdicts(result: ScenarioResult, *, strict: bool) -> list[Verdict]:
    return [v for v in result.verdicts if v.counts_as_fail(strict=strict)]


def deferred_failure(result: ScenarioResult, *, strict: bool) -> ChecksFailed | None:
    """The failure a scenario owes when soft checks recorded failing verdicts and no step raised."""
    failing = failing_verdicts(result, strict=strict)
    return ChecksFailed(failing) if failing else None


def failure_text(result: ScenarioResult, *, strict: bool, raised: str | None) -> str | None:
    """One failure message listing every check that did not pass; ``raised`` (a step's own
    exception that was not a verdict, with its traceback) is kept after the list."""
    failing = failing_verdicts(result, strict=strict)
    if not failing:
        return None
    text = failure_summary(failing)
    return f"{text}\n\n{raised}" if raised else text


def is_not_checked(verdict: Verdict) -> bool:
    return verdict.id == NOT_CHECKED
