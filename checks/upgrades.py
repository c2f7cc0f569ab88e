"""Upgrade plans: is the order of operations one the runbook allows?

An upgrade plan is an ordered list of steps (each with the component it
touches, whether it is destructive, its rollback step, whether the service is
down during it, and an estimate), the documented "must come before" rules
between steps, the product's components, a declared downtime window, and the
version rules. The checks here are pure functions of a plan (and of versions):

- :func:`ordering` — every rule's ``before`` step comes before its ``after``
  step; the rules themselves must form a DAG (a cycle is bad input);
- :func:`rollbacks` — every destructive step names a rollback step;
- :func:`downtime_window` — the downtime span (first to last downtime step,
  everything in between counted: the service is down meanwhile) fits in the
  declared window;
- :func:`version_path` — the installed → target jump is allowed: not a
  downgrade, no skipped major version, and the minimum installed version the
  runbook demands before a major upgrade;
- :func:`plan_structure` — step names unique, components known, rules naming
  steps of the plan.

Versions follow SemVer 2.0 precedence (``v`` prefix and missing minor/patch
accepted: ``v4.2`` is ``4.2.0``; pre-release lower than the release; build
metadata ignored).

Errors::

    DrillbookError
    └── PlanError           a plan or version that cannot be read (the message names the step)
        └── VersionError    not a version
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import total_ordering
from typing import Any

from .errors import DrillbookError
from .verdict import Verdict, format_duration


class PlanError(DrillbookError):
    default_hint = "fix the upgrade plan (the feature's table or the plan file) at the named step"


class VersionError(PlanError):
    default_hint = "write versions as MAJOR.MINOR.PATCH, e.g. 4.2.0 (a leading v and a -pre-release are fine)"


# -------------------------------------------------------------------------- versions

_VERSION = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)(?:\.(?P<minor>0|[1-9]\d*))?(?:\.(?P<patch>0|[1-9]\d*))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
_MAX_PART = 10**9  # no product has version numbers beyond this; keeps the text short and sane


@total_ordering
@dataclass(frozen=True)
class Version:
    """A release version with SemVer 2.0 precedence (build metadata kept, never compared)."""

    major: int
    minor: int = 0
    patch: int = 0
    pre: tuple[str, ...] = ()
    build: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str) -> Version:
        """``4.2.0``, ``v4.2``, ``5.0.0-rc.1``; raise :class:`VersionError` naming the text otherwise."""
        match = _VERSION.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise VersionError(f"not a version: {text!r}", version=str(text))
        parts = [int(match.group(g) or 0) for g in ("major", "minor", "patch")]
        if any(p > _MAX_PART for p in parts):
            raise VersionError(f"not a version: {text!r} (a part exceeds {_MAX_PART})", version=text)
        pre = tuple(match.group("pre").split(".")) if match.group("pre") else ()
        for ident in pre:
            if ident.isdigit() and len(ident) > 1 and ident.startswith("0"):
                raise VersionError(f"not a version: {text!r} (numeric pre-release part {ident!r} "
                                   "has a leading zero)", version=text)
        return cls(parts[0], parts[1], parts[2], pre, match.group("build") or "")

    def _key(self) -> tuple[Any, ...]:
        # A release sorts after all its pre-releases; numeric identifiers sort before alphanumeric
        # ones and compare as numbers; a shorter pre-release sorts first when all else is equal.
        pre_key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre_key)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            text += "-" + ".".join(self.pre)
        if self.build:
            text += "+" + self.build
        return text


@dataclass(frozen=True)
class VersionPolicy:
    """The runbook's rules for a version jump."""

    max_major_jump: int = 1
    # "To reach major N, be on at least version V first" (e.g. 5 → 4.8.0).
    minimum_installed: Mapping[int, Version] = field(default_factory=dict)
    allow_prerelease: bool = False

    def to_evidence(self) -> dict[str, Any]:
        return {"max_major_jump": self.max_major_jump, "allow_prerelease": self.allow_prerelease,
                "minimum_installed": {str(k): str(v) for k, v in sorted(self.minimum_installed.items())}}


def version_path(installed: Version, target: Version, policy: VersionPolicy | None = None) -> Verdict:
    """Is ``installed`` → ``target`` an upgrade the runbook permits?"""
    policy = policy or VersionPolicy()
    check = "upgrade.version_path"
    evidence = {"installed": str(installed), "target": str(target), "policy": policy.to_evidence()}
    expected = (f"a newer version, at most {policy.max_major_jump} major version(s) ahead"
                + (", minimum installed versions met" if policy.minimum_installed else ""))
    shown = f"{installed} → {target}"
    if target < installed:
        return Verdict.error(
            check, f"target version {target} is lower than the installed version {installed}: "
            "a downgrade is not an upgrade (roll back with the plan's rollback steps instead)",
            measured=shown, expected=expected, evidence=evidence)
    if target == installed:
        return Verdict.not_applicable(check, f"version {installed} is already installed: nothing to upgrade",
                                      measured=shown, expected=expected, evidence=evidence)
    if target.pre and not policy.allow_prerelease:
        return Verdict.failed(check, f"target version {target} is a pre-release; the upgrade policy allows "
                                     "only releases", measured=shown, expected=expected, evidence=evidence)
    jump = target.major - installed.major
    if jump > policy.max_major_jump:
        skipped = ", ".join(str(m) for m in range(installed.major + 1, target.major))
        return Verdict.failed(
            check, f"{shown} skips major version(s) {skipped}: upgrade one major version at a time "
            f"(at most {policy.max_major_jump} per upgrade), first to {installed.major + 1}.x",
            measured=shown, expected=expected, evidence={**evidence, "skipped_majors": skipped})
    if jump > 0:
        for major in range(installed.major + 1, target.major + 1):
            needed = policy.minimum_installed.get(major)
            if needed is not None and installed < needed:
                return Verdict.failed(
                    check, f"{shown}: an upgrade to {major}.x requires at least {needed} installed "
                    f"first (installed {installed})",
                    measured=shown, expected=expected, evidence={**evidence, "requires": str(needed)})
    kind = "major" if jump else ("minor" if target.minor != installed.minor else "patch")
    return Verdict.passed(check, f"{shown} is an allowed {kind} upgrade", measured=shown,
                          expected=expected, evidence={**evidence, "kind": kind})


# -------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class PlanStep:
    """One step of an upgrade plan, at ``position`` (1-based, plan order)."""

    position: int
    name: str
    component: str
    destructive: bool = False
    rollback: str | None = None
    downtime: bool = False
    estimate: timedelta | None = None
    rehearse: str | None = None  # what the rehearsal does for it: restore, migrate, health

    def label(self) -> str:
        return f"step {self.position} `{self.name}`"

    def to_evidence(self) -> dict[str, Any]:
        return {"position": self.position, "name": self.name, "component": self.component,
                "destructive": self.destructive, "rollback": self.rollback, "downtime": self.downtime,
                "estimate_s": self.estimate.total_seconds() if self.estimate is not None else None,
                "rehearse": self.rehearse}


@dataclass(frozen=True)
class OrderRule:
    """``before`` must come before ``after``; ``because`` is the runbook's reason."""

    before: str
    after: str
    because: str = ""

    def shown(self) -> str:
        reason = f" ({self.because})" if self.because else ""
        return f"`{self.before}` before `{self.after}`{reason}"


@dataclass(frozen=True)
class UpgradePlan:
    """An upgrade plan as the runbook states it."""

    name: str
    steps: tuple[PlanStep, ...]
    rules: tuple[OrderRule, ...] = ()
    components: frozenset[str] | None = None
    window: timedelta | None = None
    installed: Version | None = None
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    source: str = ""
    target: Version | None = None  # the release the plan prepares (--to overrides it)
    source_sha256: str | None = None  # of the plan file, when read from one

    def step(self, name: str) -> PlanStep | None:
        return next((s for s in self.steps if s.name == name), None)

    def to_evidence(self) -> dict[str, Any]:
        return {"plan": self.name, "source": self.source, "source_sha256": self.source_sha256,
                "steps": [s.to_evidence() for s in self.steps],
                "rules": [{"before": r.before, "after": r.after, "because": r.because} for r in self.rules],
                "components": sorted(self.components) if self.components is not None else None,
                "window_s": self.window.total_seconds() if self.window is not None else None,
                "installed": str(self.installed) if self.installed else None,
                "target": str(self.target) if self.target else None,
                "versions": self.policy.to_evidence()}


def plan_structure(plan: UpgradePlan) -> Verdict:
    """Bad input, named: no steps, duplicate names, unknown components, rules naming unknown steps."""
    check = "upgrade.plan"
    problems: list[str] = []
    if not plan.steps:
        problems.append("the plan has no steps")
    seen: dict[str, PlanStep] = {}
    for step in plan.steps:
        if step.name in seen:
            problems.append(f"{step.label()} repeats the name of {seen[step.name].label()}")
        seen.setdefault(step.name, step)
        if plan.components is not None and step.component not in plan.components:
            problems.append(f"{step.label()} names unknown component `{step.component}` "
                            f"(known: {', '.join(sorted(plan.components))})")
    for rule in plan.rules:
        for name in (rule.before, rule.after):
            if name not in seen:
                problems.append(f"rule {rule.shown()} names `{name}`, which is no step of the plan")
        if rule.before == rule.after:
            problems.append(f"rule {rule.shown()} orders a step before itself")
    evidence = {"plan": plan.name, "source": plan.source, "steps": len(plan.steps), "rules": len(plan.rules),
                "as_checked": plan.to_evidence()}
    if problems:
        return Verdict.error(check, f"upgrade plan `{plan.name}` cannot be checked: " + "; ".join(problems),
                             measured=len(problems), expected="a well-formed plan",
                             evidence={**evidence, "problems": problems})
    return Verdict.passed(check, f"upgrade plan `{plan.name}`: {len(plan.steps)} steps, "
                                 f"{len(plan.rules)} ordering rules", evidence=evidence)


def find_cycle(rules: Sequence[OrderRule]) -> list[str] | None:
    """A cycle among the rules (``[a, b, a]``), or None when they form a DAG."""
    graph: dict[str, list[str]] = {}
    for rule in rules:
        graph.setdefault(rule.before, []).append(rule.after)
        graph.setdefault(rule.after, [])
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    for root in sorted(graph):
        if colour[root] != white:
            continue
        # Iterative DFS with an explicit path: a deep plan must not hit the recursion limit.
        path: list[str] = [root]
        iters = [iter(graph[root])]
        colour[root] = grey
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                iters.pop()
                continue
            if colour[nxt] == grey:
                return [*path[path.index(nxt):], nxt]
            if colour[nxt] == white:
                colour[nxt] = grey
                path.append(nxt)
                iters.append(iter(graph[nxt]))
    return None


def ordering(plan: UpgradePlan) -> Verdict:
    """Every documented "must come before" rule holds in the plan's order."""
    check = "upgrade.order"
    structure = plan_structure(plan)
    if structure.counts_as_fail():
        return Verdict(check, structure.outcome, structure.message, structure.measured, structure.expected,
                       structure.evidence)
    cycle = find_cycle(plan.rules)
    evidence: dict[str, Any] = {"plan": plan.name, "source": plan.source,
                                "order": [s.name for s in plan.steps],
                                "rules": [r.shown() for r in plan.rules]}
    if cycle is not None:
        steps = " → ".join(f"`{name}`" for name in cycle)
        return Verdict.error(check, f"the ordering rules of `{plan.name}` contain a cycle: {steps}; "
                                    "no order can satisfy them",
                             expected="rules forming a DAG", evidence={**evidence, "cycle": cycle})
    violations: list[str] = []
    for rule in plan.rules:
        before, after = plan.step(rule.before), plan.step(rule.after)
        assert before is not None and after is not None  # plan_structure checked the names
        if before.position > after.position:
            violations.append(f"{after.label()} comes before {before.label()}, "
                              f"but the rule says {rule.shown()}")
    if violations:
        return Verdict.failed(check, "; ".join(violations), measured=len(violations),
                              expected="every rule holds", evidence={**evidence, "violations": violations})
    return Verdict.passed(check, f"the {len(plan.steps)} steps of `{plan.name}` respect all "
                                 f"{len(plan.rules)} ordering rules", measured=0,
                          expected="every rule holds", evidence=evidence)


_NO_ROLLBACK = {"", "-", "none", "n/a", "no"}


def rollbacks(plan: UpgradePlan) -> Verdict:
    """Every destructive step names the step that rolls it back."""
    check = "upgrade.rollback"
    destructive = [s for s in plan.steps if s.destructive]
    missing = [s for s in destructive if (s.rollback or "").strip().lower() in _NO_ROLLBACK]
    evidence = {"plan": plan.name, "destructive": {s.name: s.rollback for s in destructive}}
    if missing:
        names = ", ".join(s.label() for s in missing)
        return Verdict.failed(check, f"destructive {names} {'has' if len(missing) == 1 else 'have'} "
                                     "no rollback step: a failure there cannot be undone",
                              measured=len(missing), expected="a rollback step for every destructive step",
                              evidence={**evidence, "missing": [s.name for s in missing]})
    if not destructive:
        return Verdict.passed(check, f"`{plan.name}` has no destructive step", evidence=evidence)
    return Verdict.passed(check, f"all {len(destructive)} destructive steps of `{plan.name}` have a "
                                 "rollback step", measured=0, evidence=evidence)


def downtime_window(plan: UpgradePlan, window: timedelta | None = None) -> Verdict:
    """The downtime span — first to last downtime step, all in between — fits in the window."""
    check = "upgrade.downtime_window"
    window = window if window is not None else plan.window
    down = [s for s in plan.steps if s.downtime]
    if window is None:
        return Verdict.error(check, f"`{plan.name}` declares no downtime window",
                             evidence={"hint": "add `And the planned downtime window is 30 minutes` "
                                               "or `window = \"30m\"` to the plan"})
    if not down:
        return Verdict.passed(check, f"`{plan.name}` has no downtime step (window {format_duration(window)})",
                              measured=timedelta(0), expected=f"<= {format_duration(window)}")
    first, last = down[0], down[-1]
    span = [s for s in plan.steps if first.position <= s.position <= last.position]
    unestimated = [s for s in span if s.estimate is None]
    if unestimated:
        return Verdict.error(check, "no estimate for " + ", ".join(s.label() for s in unestimated)
                             + f", inside the downtime from {first.label()} to {last.label()}",
                             evidence={"unestimated": [s.name for s in unestimated]})
    total = sum((s.estimate for s in span if s.estimate is not None), timedelta(0))
    evidence = {"plan": plan.name, "window_s": window.total_seconds(),
                "span": [{"step": s.name, "estimate_s": s.estimate.total_seconds() if s.estimate else None,
                          "downtime": s.downtime} for s in span]}
    inside = [s.name for s in span if not s.downtime]
    if inside:
        evidence["counted_while_down"] = inside
    message = (f"planned downtime from {first.label()} to {last.label()}: {format_duration(total)} "
               f"({len(span)} steps), window {format_duration(window)}")
    if total > window:
        message += f" — over by {format_duration(total - window)}"
    return Verdict.compare(check, measured=total, expected=f"<= {format_duration(window)}",
                           ok=total <= window, message=message, evidence=evidence)


def plan_verdicts(plan: UpgradePlan) -> list[Verdict]:
    """Ordering, rollbacks and the downtime window, in that order (what "the plan is valid" means)."""
    return [ordering(plan), rollbacks(plan), downtime_window(plan)]


# -------------------------------------------------------------------------- rehearsal


def precise_duration(seconds: float) -> str:
    """A measured duration: milliseconds below 10 s (a sandbox migration takes 8 ms), else ``1m 02s``."""
    if seconds < 10:
        return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f}s"
    return format_duration(timedelta(seconds=seconds))


@dataclass(frozen=True)
class RehearsedStep:
    """A plan step as the rehearsal executed it, measured."""

    step: str
    action: str
    downtime: bool
    duration_s: float
    ok: bool
    detail: str

    def to_evidence(self) -> dict[str, Any]:
        return {"step": self.step, "action": self.action, "downtime": self.downtime,
                "duration_s": round(self.duration_s, 6), "ok": self.ok, "detail": self.detail}


def rehearsed_downtime(steps: Iterable[RehearsedStep], window: timedelta, *,
                       estimated: Mapping[str, timedelta] | None = None) -> Verdict:
    """Measured downtime of the rehearsed steps, plus the estimates of downtime steps the
    rehearsal cannot execute (the application's own), against the declared window."""
    check = "upgrade.rehearsal_downtime"
    done = list(steps)
    others = dict(estimated or {})
    evidence: dict[str, Any] = {
        "steps": [s.to_evidence() for s in done], "window_s": window.total_seconds(),
        "estimated_not_rehearsed_s": {k: v.total_seconds() for k, v in others.items()},
    }
    failed = [s for s in done if not s.ok]
    if failed:
        return Verdict.failed(check, f"rehearsal stopped at step `{failed[0].step}` ({failed[0].action}): "
                                     f"{failed[0].detail}", expected=f"<= {format_duration(window)}",
                              evidence=evidence)
    down = [s for s in done if s.downtime]
    if not down:
        return Verdict.error(check, "no rehearsed step is a downtime step: nothing measured the downtime",
                             evidence=evidence)
    measured = timedelta(seconds=sum(s.duration_s for s in down))
    total = measured + sum(others.values(), timedelta(0))
    parts = ", ".join(f"`{s.step}` {precise_duration(s.duration_s)}" for s in down)
    message = f"measured downtime {precise_duration(measured.total_seconds())} ({parts})"
    if others:
        message += (f" + {format_duration(total - measured)} estimated for steps not rehearsed "
                    f"({', '.join(f'`{n}`' for n in others)})")
    message += f" = {format_duration(total)}, window {format_duration(window)}"
    if total > window:
        message += f" — over by {format_duration(total - window)}"
    evidence["measured_downtime_s"] = round(measured.total_seconds(), 6)
    return Verdict.compare(check, measured=total, expected=f"<= {format_duration(window)}",
                           ok=total <= window, message=message, evidence=evidence)
