"""Upgrade plans: versions, version paths, plan parsing, ordering, rollbacks, downtime windows."""

from __future__ import annotations

import contextlib
import itertools
import random
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from checks.upgrades import (
    OrderRule,
    PlanError,
    PlanStep,
    RehearsedStep,
    UpgradePlan,
    Version,
    VersionError,
    VersionPolicy,
    downtime_window,
    find_cycle,
    ordering,
    plan_structure,
    rehearsed_downtime,
    rollbacks,
    version_path,
)
from checks.verdict import Outcome
from drills.upgrades import HealthQuery, load_plan_file, parse_plan, rules_from_table, steps_from_table

PARTS = st.integers(min_value=0, max_value=10_000)
PRE_IDS = st.one_of(st.integers(min_value=0, max_value=999).map(str),
                    st.from_regex(r"[a-z][a-z0-9-]{0,6}", fullmatch=True))
VERSIONS = st.builds(Version, PARTS, PARTS, PARTS, st.lists(PRE_IDS, max_size=3).map(tuple))
RELEASES = st.builds(Version, st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))
NAMES = st.from_regex(r"[a-z][a-z0-9 ]{0,20}[a-z0-9]", fullmatch=True)


def _step(position: int, name: str, component: str = "postgres", **kw: object) -> PlanStep:
    return PlanStep(position=position, name=name, component=component, **kw)  # type: ignore[arg-type]


def _plan(names: list[str], rules: list[tuple[str, str]] = (), **kw: object) -> UpgradePlan:  # type: ignore[assignment]
    steps = tuple(_step(i, n) for i, n in enumerate(names, start=1))
    return UpgradePlan(name="p", steps=steps, rules=tuple(OrderRule(a, b, "why") for a, b in rules),
                       **kw)  # type: ignore[arg-type]


class TestVersion:
    @given(VERSIONS)
    def test_text_round_trips(self, version: Version) -> None:
        """str() of a version parses back to an equal version."""
        assert Version.parse(str(version)) == version

    @given(VERSIONS, VERSIONS)
    def test_order_is_total_and_antisymmetric(self, a: Version, b: Version) -> None:
        """Exactly one of a < b, a == b, a > b holds."""
        assert [a < b, a == b, a > b].count(True) == 1

    @given(VERSIONS, VERSIONS, VERSIONS)
    def test_order_is_transitive(self, a: Version, b: Version, c: Version) -> None:
        """a <= b <= c implies a <= c."""
        if a <= b and b <= c:
            assert a <= c

    @given(RELEASES, RELEASES)
    def test_releases_order_like_number_triples(self, a: Version, b: Version) -> None:
        """Without pre-releases, precedence is the (major, minor, patch) tuple order."""
        assert (a < b) == ((a.major, a.minor, a.patch) < (b.major, b.minor, b.patch))

    @given(RELEASES, st.lists(PRE_IDS, min_size=1, max_size=3))
    def test_pre_release_sorts_before_its_release(self, release: Version, pre: list[str]) -> None:
        """5.0.0-rc.1 < 5.0.0."""
        assert Version(release.major, release.minor, release.patch, tuple(pre)) < release

    def test_semver_spec_example_order(self) -> None:
        """The precedence example of the SemVer 2.0 spec, item 11."""
        texts = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
                 "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0"]
        parsed = [Version.parse(t) for t in texts]
        assert parsed == sorted(parsed)
        shuffled = parsed[:]
        random.Random(4).shuffle(shuffled)
        assert sorted(shuffled) == parsed

    def test_short_forms_and_prefix(self) -> None:
        """`v4.2` is 4.2.0, `4` is 4.0.0; build metadata is kept but never compared."""
        assert Version.parse("v4.2") == Version(4, 2, 0)
        assert Version.parse("4") == Version(4)
        assert Version.parse("4.2.0+build.7") == Version(4, 2, 0)
        assert str(Version.parse("4.2.0+build.7")) == "4.2.0+build.7"

    @pytest.mark.parametrize("text", ["", "banana", "4.2.0.1", "04.2.0", "4..2", "4.2.0-", "4.2.0-rc.01",
                                      "-1.0.0", "4.2.0 beta", "v", "1.2.3-rc!"])
    def test_malformed_text_is_named(self, text: str) -> None:
        """Anything else is a VersionError naming the text and how to write a version."""
        with pytest.raises(VersionError) as caught:
            Version.parse(text)
        assert repr(text) in str(caught.value)
        assert "MAJOR.MINOR.PATCH" in caught.value.hint

    @given(st.text(max_size=20))
    def test_arbitrary_text_parses_or_raises_version_error(self, text: str) -> None:
        """No other exception escapes the parser, whatever the text."""
        with contextlib.suppress(VersionError):
            Version.parse(text)


class TestVersionPath:
    @given(RELEASES, st.integers(0, 40), st.integers(0, 40))
    def test_within_one_major_is_allowed(self, installed: Version, minor: int, patch: int) -> None:
        """Any newer release of the same or the next major passes with the default policy."""
        for major in (installed.major, installed.major + 1):
            target = Version(major, minor, patch)
            assume(target > installed)
            verdict = version_path(installed, target)
            assert verdict.outcome is Outcome.PASSED, verdict.message

    @given(RELEASES, st.integers(2, 9), st.integers(0, 9))
    def test_a_skipped_major_fails_naming_it(self, installed: Version, jump: int, minor: int) -> None:
        """installed.major + 2 or more fails and names every skipped major version."""
        target = Version(installed.major + jump, minor, 0)
        verdict = version_path(installed, target)
        assert verdict.outcome is Outcome.FAILED
        assert f"skips major version(s) {installed.major + 1}" in verdict.message
        assert str(installed) in verdict.message and str(target) in verdict.message

    @given(RELEASES, RELEASES)
    def test_a_downgrade_is_an_error(self, a: Version, b: Version) -> None:
        """A target lower than the installed version is bad input: error, naming both."""
        assume(a != b)
        low, high = sorted([a, b])
        verdict = version_path(high, low)
        assert verdict.outcome is Outcome.ERROR
        assert f"target version {low} is lower than the installed version {high}" in verdict.message

    def test_same_version_is_not_applicable(self) -> None:
        """Nothing to upgrade is said, not passed silently."""
        assert version_path(Version(2), Version(2)).outcome is Outcome.NOT_APPLICABLE

    def test_minimum_installed_before_a_major(self) -> None:
        """The runbook's "upgrade to 5.x from 4.8 or later" rule names the required version."""
        policy = VersionPolicy(minimum_installed={5: Version(4, 8, 0)})
        verdict = version_path(Version(4, 7, 3), Version(5, 0, 0), policy)
        assert verdict.outcome is Outcome.FAILED
        assert "requires at least 4.8.0 installed" in verdict.message
        assert version_path(Version(4, 8, 0), Version(5, 1, 0), policy).outcome is Outcome.PASSED
        # The rule is about reaching 5.x: a minor upgrade inside 4.x is not affected.
        assert version_path(Version(4, 1, 0), Version(4, 7, 0), policy).outcome is Outcome.PASSED

    def test_pre_release_target_needs_the_policy(self) -> None:
        """A release candidate as the target fails unless the plan allows pre-releases."""
        target = Version.parse("2.0.0-rc.1")
        assert version_path(Version(1, 9), target).outcome is Outcome.FAILED
        allowed = VersionPolicy(allow_prerelease=True)
        assert version_path(Version(1, 9), target, allowed).outcome is Outcome.PASSED

    def test_wider_jump_when_the_runbook_allows_it(self) -> None:
        """max_major_jump = 2 lets 3.x go to 5.x, not to 6.x."""
        policy = VersionPolicy(max_major_jump=2)
        assert version_path(Version(3), Version(5), policy).outcome is Outcome.PASSED
        assert version_path(Version(3), Version(6), policy).outcome is Outcome.FAILED


@st.composite
def dag_plans(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str]]]:
    """Distinct step names in plan order, and rules that all point forward (a DAG the order obeys)."""
    names = draw(st.lists(NAMES, min_size=2, max_size=12, unique=True))
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    chosen = draw(st.lists(st.sampled_from(pairs), max_size=20, unique=True))
    return names, [(names[i], names[j]) for i, j in chosen]


class TestOrdering:
    @given(dag_plans())
    def test_a_plan_in_rule_order_passes(self, plan: tuple[list[str], list[tuple[str, str]]]) -> None:
        """Rules that all point forward in the plan hold."""
        names, rules = plan
        verdict = ordering(_plan(names, rules))
        assert verdict.outcome is Outcome.PASSED, verdict.message

    @given(dag_plans(), st.data())
    def test_swapping_a_ruled_pair_fails_naming_both_and_the_rule(
            self, plan: tuple[list[str], list[tuple[str, str]]], data: st.DataObject) -> None:
        """Move a rule's `after` step before its `before` step: failed, both steps and the rule named."""
        names, rules = plan
        assume(rules)
        before, after = data.draw(st.sampled_from(rules))
        order = [n for n in names if n != after]
        order.insert(order.index(before), after)
        verdict = ordering(_plan(order, rules))
        assert verdict.outcome is Outcome.FAILED
        assert f"`{after}` comes before" in verdict.message
        assert f"`{before}`" in verdict.message
        assert f"the rule says `{before}` before `{after}` (why)" in verdict.message

    def test_backup_after_migrate_names_both_steps(self) -> None:
        """The runbook's own example: migrating before the backup is verified."""
        verdict = ordering(_plan(["migrate", "verify backup"], [("verify backup", "migrate")]))
        assert verdict.message == ("step 1 `migrate` comes before step 2 `verify backup`, but the rule "
                                   "says `verify backup` before `migrate` (why)")

    @given(st.lists(NAMES, min_size=2, max_size=8, unique=True))
    def test_a_cycle_is_an_error_naming_its_steps(self, names: list[str]) -> None:
        """Rules a → b → … → a: no order satisfies them; error, the cycle spelled out."""
        rules = [*itertools.pairwise(names), (names[-1], names[0])]
        verdict = ordering(_plan(names, rules))
        assert verdict.outcome is Outcome.ERROR
        assert "contain a cycle" in verdict.message
        cycle = verdict.evidence["cycle"]
        assert cycle[0] == cycle[-1] and set(cycle) == set(names)

    @given(dag_plans())
    def test_find_cycle_finds_none_in_a_dag(self, plan: tuple[list[str], list[tuple[str, str]]]) -> None:
        """Forward-only rules have no cycle."""
        assert find_cycle([OrderRule(a, b) for a, b in plan[1]]) is None

    def test_rule_naming_an_unknown_step_is_an_error(self) -> None:
        """A rule about a step the plan does not have cannot be checked: error naming the rule."""
        verdict = ordering(_plan(["a", "b"], [("a", "backup")]))
        assert verdict.outcome is Outcome.ERROR
        assert "names `backup`, which is no step of the plan" in verdict.message


class TestStructure:
    def test_unknown_component_names_the_step(self) -> None:
        """A step touching a component the product does not have is an error naming it."""
        plan = UpgradePlan(name="p", steps=(_step(1, "a"), _step(2, "b", component="mongo")),
                           components=frozenset({"postgres"}))
        verdict = plan_structure(plan)
        assert verdict.outcome is Outcome.ERROR
        assert "step 2 `b` names unknown component `mongo` (known: postgres)" in verdict.message

    def test_duplicate_step_names(self) -> None:
        """Two steps of one name make every rule about it ambiguous."""
        verdict = plan_structure(_plan(["a", "a"]))
        assert "step 2 `a` repeats the name of step 1 `a`" in verdict.message

    def test_empty_plan_is_an_error(self) -> None:
        """An empty set of steps is never a pass."""
        assert plan_structure(_plan([])).outcome is Outcome.ERROR


class TestRollbacksAndWindow:
    def test_destructive_step_without_rollback(self) -> None:
        """Named, with why it matters."""
        plan = UpgradePlan(name="p", steps=(_step(1, "migrate", destructive=True, rollback="-"),
                                            _step(2, "upgrade", destructive=True, rollback="helm rollback")))
        verdict = rollbacks(plan)
        assert verdict.outcome is Outcome.FAILED
        assert "destructive step 1 `migrate` has no rollback step" in verdict.message

    def test_downtime_span_counts_everything_between(self) -> None:
        """A non-downtime step between two downtime steps still runs while the service is down."""
        m = timedelta(minutes=1)
        steps = (_step(1, "backup", estimate=60 * m), _step(2, "down", downtime=True, estimate=10 * m),
                 _step(3, "slow", estimate=30 * m), _step(4, "up", downtime=True, estimate=m))
        verdict = downtime_window(UpgradePlan(name="p", steps=steps, window=40 * m))
        assert verdict.outcome is Outcome.FAILED
        assert verdict.measured == 41 * m
        assert "from step 2 `down` to step 4 `up`" in verdict.message and "over by 1m 00s" in verdict.message
        assert downtime_window(UpgradePlan(name="p", steps=steps, window=41 * m)).outcome is Outcome.PASSED

    @given(st.lists(st.tuples(st.booleans(), st.integers(0, 600)), min_size=1, max_size=15),
           st.integers(0, 6000))
    def test_window_verdict_matches_the_span_sum(self, spec: list[tuple[bool, int]], window_s: int) -> None:
        """Passed exactly when the span's estimates sum to at most the window."""
        steps = tuple(_step(i, f"s{i}", downtime=d, estimate=timedelta(seconds=e))
                      for i, (d, e) in enumerate(spec, start=1))
        verdict = downtime_window(UpgradePlan(name="p", steps=steps), timedelta(seconds=window_s))
        down = [i for i, (d, _) in enumerate(spec) if d]
        total = sum(e for _, e in spec[down[0]:down[-1] + 1]) if down else 0
        assert (verdict.outcome is Outcome.PASSED) == (total <= window_s)

    def test_missing_estimate_inside_the_window(self) -> None:
        """Cannot be summed: error naming the step."""
        steps = (_step(1, "down", downtime=True, estimate=timedelta(minutes=1)),
                 _step(2, "up", downtime=True))
        verdict = downtime_window(UpgradePlan(name="p", steps=steps, window=timedelta(hours=1)))
        assert verdict.outcome is Outcome.ERROR and "step 2 `up`" in verdict.message

    def test_rehearsed_downtime_adds_estimates_of_the_rest(self) -> None:
        """Measured database part + estimates of the application's steps against the window."""
        steps = [RehearsedStep("migrate", "migrate", True, 2.0, True, "ok"),
                 RehearsedStep("verify", "restore", False, 100.0, True, "ok")]
        ok = rehearsed_downtime(steps, timedelta(minutes=5), estimated={"app": timedelta(minutes=4)})
        assert ok.outcome is Outcome.PASSED
        assert ok.measured == timedelta(minutes=4, seconds=2)
        late = rehearsed_downtime(steps, timedelta(minutes=4), estimated={"app": timedelta(minutes=4)})
        assert late.outcome is Outcome.FAILED and "over by 2.0s" in late.message
        failed = rehearsed_downtime([RehearsedStep("migrate", "migrate", True, 1, False, "boom")],
                                    timedelta(minutes=5))
        assert failed.outcome is Outcome.FAILED and "stopped at step `migrate`" in failed.message


_STEP = '[[steps]]\nname = "a"\ncomponent = "pg"\n'


def _toml(names: list[str], rules: list[tuple[str, str]], flags: list[tuple[bool, bool, int]]) -> str:
    lines = ['name = "generated"', 'installed = "1.2.3"', 'window = "2h"', "components = [\"postgres\"]", ""]
    for name, (destructive, downtime, minutes) in zip(names, flags, strict=True):
        lines += ["[[steps]]", f'name = "{name}"', 'component = "postgres"',
                  f"destructive = {str(destructive).lower()}", f"downtime = {str(downtime).lower()}",
                  f'estimate = "{minutes}m"', 'rollback = "undo"' if destructive else "", ""]
    for before, after in rules:
        lines += ["[[rules]]", f'before = "{before}"', f'after = "{after}"', 'because = "why"', ""]
    return "\n".join(lines)


class TestPlanFile:
    @given(dag_plans(), st.data())
    @settings(max_examples=60)
    def test_generated_plan_files_read_back(self, plan: tuple[list[str], list[tuple[str, str]]],
                                            data: st.DataObject) -> None:
        """Every step, flag, estimate and rule written to TOML is read back in order."""
        names, rules = plan
        flags = data.draw(st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 500)),
                                   min_size=len(names), max_size=len(names)))
        parsed = parse_plan(_toml(names, rules, flags), source="gen.toml")
        assert [s.name for s in parsed.steps] == names
        assert [s.position for s in parsed.steps] == list(range(1, len(names) + 1))
        assert [(s.destructive, s.downtime, s.estimate) for s in parsed.steps] == [
            (d, w, timedelta(minutes=m)) for d, w, m in flags]
        assert [(r.before, r.after) for r in parsed.rules] == rules
        assert parsed.installed == Version(1, 2, 3) and parsed.window == timedelta(hours=2)
        assert ordering(parsed).outcome is Outcome.PASSED

    def test_the_sandbox_plan_file_is_valid(self) -> None:
        """The plan the sandbox features use reads and passes its own checks."""
        plan = load_plan_file(Path(__file__).resolve().parents[2] / "features/upgrades/sandbox-upgrade.toml")
        assert plan.installed == Version(1, 4, 0)
        assert plan.target == Version(2, 0, 0)
        assert plan.source_sha256 is not None and len(plan.source_sha256) == 64
        assert plan_structure(plan).evidence["as_checked"]["source_sha256"] == plan.source_sha256
        assert [s.rehearse for s in plan.steps if s.rehearse] == ["restore", "migrate", "health"]
        verdicts = (ordering(plan), rollbacks(plan), downtime_window(plan))
        assert all(v.outcome is Outcome.PASSED for v in verdicts)

    @pytest.mark.parametrize(("text", "named"), [
        (_STEP + 'destrutive = true\n', "step 1 `a`: unknown key `destrutive`"),
        (_STEP + 'downtime = "yes"\n', "step 1 `a`: `downtime` must be true"),
        (_STEP + 'estimate = "soon"\n', "step 1 `a`: `estimate`: not a duration"),
        ('[[steps]]\nname = "a"\n', "step 1 `a`: `component` must be a non-empty string"),
        (_STEP + 'rehearse = "deploy"\n', "rehearse 'deploy' is not one of"),
        ('installed = "four"\n' + _STEP, "`installed`: not a version: 'four'"),
        ('target = "2.0"\ntarget_version = "x"\n' + _STEP, "unknown key `target_version`"),
        ('[versions]\nmax_major_jump = 0\n' + _STEP, "`max_major_jump`"),
        ('colour = "red"\n' + _STEP, "unknown key `colour`"),
        ('name = "x"\n', "at least one [[steps]]"),
        ("[[steps]\n", "not valid TOML"),
    ])
    def test_bad_plan_files_name_the_step_and_key(self, text: str, named: str) -> None:
        """Strict validation: the error names the file, the step and the key."""
        with pytest.raises(PlanError) as caught:
            parse_plan(text, source="plan.toml")
        assert named in str(caught.value)
        assert "plan.toml" in str(caught.value)


class TestPlanTable:
    def test_reads_a_feature_table(self) -> None:
        """Columns beyond step and component are optional; yes/no flags, estimates as durations."""
        steps = steps_from_table([["step", "component", "destructive", "rollback", "downtime", "estimate"],
                                  ["backup", "postgres", "no", "-", "no", "10m"],
                                  ["migrate", "postgres", "yes", "restore", "yes", "1h30m"]])
        assert steps[1] == PlanStep(2, "migrate", "postgres", True, "restore", True, timedelta(minutes=90))
        assert steps[0].rollback == "-" and steps[0].estimate == timedelta(minutes=10)

    @given(st.lists(st.tuples(NAMES, st.sampled_from(["yes", "no", "x", "-", ""]),
                              st.integers(1, 999)), min_size=1, max_size=10))
    def test_table_rows_read_back(self, rows: list[tuple[str, str, int]]) -> None:
        """Any well-formed table reads back step by step, in order."""
        table = [["step", "component", "downtime", "estimate"]] + [
            [name, "db", flag, f"{minutes}m"] for name, flag, minutes in rows]
        steps = steps_from_table(table)
        assert [(s.name, s.downtime, s.estimate) for s in steps] == [
            (n, f in ("yes", "x"), timedelta(minutes=m)) for n, f, m in rows]

    @pytest.mark.parametrize(("table", "named"), [
        ([["step", "component", "downtime"], ["migrate", "pg", "maybe"]],
         "step 1 `migrate`, downtime: 'maybe'"),
        ([["step", "component", "colour"], ["a", "pg", "red"]], "unknown plan column(s) colour"),
        ([["step", "destructive"], ["a", "no"]], "needs a `component` column"),
        ([["step", "component", "estimate"], ["a", "pg", "later"]], "step 1 `a`, estimate: not a duration"),
        ([["step", "component"], ["a", ""]], "step 1 `a`: no component"),
    ])
    def test_bad_tables_name_the_step(self, table: list[list[str]], named: str) -> None:
        """A bad cell is named by step number and name."""
        with pytest.raises(PlanError) as caught:
            steps_from_table(table)
        assert named in str(caught.value)

    def test_rules_table(self) -> None:
        """| before | after | because |, the reason optional."""
        rules = rules_from_table([["before", "after"], ["backup", "migrate"]])
        assert rules == (OrderRule("backup", "migrate", ""),)
        with pytest.raises(PlanError, match="use \\| before \\| after \\| because \\|"):
            rules_from_table([["first", "then"], ["a", "b"]])


class TestHealthQuery:
    @pytest.mark.parametrize(("expect", "comparison", "value"), [
        ("> 0", "more than", 0), ("= 1", "exactly", 1), (">= 10", "at least", 10),
        ("more than 0", "more than", 0), ("exactly 2", "exactly", 2), ("<5", "less than", 5)])
    def test_expectations(self, expect: str, comparison: str, value: float) -> None:
        """Symbols and the words the query step already uses."""
        assert HealthQuery.parse("SELECT 1", expect) == HealthQuery("SELECT 1", comparison, value)

    def test_bad_expectation(self) -> None:
        """Named with the query."""
        with pytest.raises(PlanError, match="'SELECT 1'"):
            HealthQuery.parse("SELECT 1", "lots")
