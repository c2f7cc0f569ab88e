"""The pre-upgrade gate's plugin options and its "what blocks" summary."""

from __future__ import annotations

import pytest

from checks.upgrades import Version
from checks.verdict import Outcome, Verdict
from drillbook.upgrade_gate import blocking, upgrade_request
from reports.results import RunResult, ScenarioResult

pytest_plugins = ["pytester"]

_USES_FIXTURE = """
def test_versions(drillbook_upgrade):
    print("TARGET", drillbook_upgrade.target, "INSTALLED", drillbook_upgrade.installed)
"""


class TestPluginOptions:
    def test_versions_reach_the_fixture(self, pytester: pytest.Pytester) -> None:
        """--drillbook-upgrade-to/-from arrive parsed (v2.1 is 2.1.0) in the `drillbook_upgrade` fixture."""
        pytester.makepyfile(_USES_FIXTURE)
        result = pytester.runpytest_subprocess("-p", "drillbook.plugin", "-s", "--drillbook-upgrade-to=v2.1",
                                               "--drillbook-upgrade-from=1.4.0")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*TARGET 2.1.0 INSTALLED 1.4.0*"])

    def test_outside_the_gate_both_are_none(self, pytester: pytest.Pytester) -> None:
        """A plain run has no target: steps then use the plan's own."""
        pytester.makepyfile(_USES_FIXTURE)
        result = pytester.runpytest_subprocess("-p", "drillbook.plugin", "-s")
        result.stdout.fnmatch_lines(["*TARGET None INSTALLED None*"])

    def test_a_malformed_version_is_a_usage_error(self, pytester: pytest.Pytester) -> None:
        """Before anything runs, naming the option and the text."""
        pytester.makepyfile(_USES_FIXTURE)
        result = pytester.runpytest_subprocess("-p", "drillbook.plugin", "--drillbook-upgrade-to=4.x")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*--to '4.x': not a version*"])


class TestUpgradeRequest:
    def test_parses_both(self) -> None:
        """What the gate hands the plugin."""
        request = upgrade_request("5.0.0-rc.1", None)
        assert request.target == Version(5, 0, 0, ("rc", "1")) and request.installed is None


def _scenario(ident: str, *verdicts: Verdict, failure: str | None = None) -> ScenarioResult:
    return ScenarioResult(nodeid=ident, feature="f", feature_path="features/upgrades/x.feature",
                          scenario=f"scenario {ident}", tags=[f"id:{ident}"], verdicts=list(verdicts),
                          failure=failure)


class TestBlocking:
    def test_names_each_failing_scenario_and_check(self) -> None:
        """Failing and erroring checks are listed under their scenario; passes and warnings are not."""
        run = RunResult(run_id="r", started_at="", scenarios=[
            _scenario("UPG-01", Verdict("upgrade.order", Outcome.PASSED, "fine")),
            _scenario("UPG-03", Verdict("upgrade.order", Outcome.PASSED, "fine"),
                      Verdict("upgrade.version_path", Outcome.FAILED,
                              "1.4.0 → 3.0.0 skips major version(s) 2")),
            _scenario("SUP-01", Verdict("release.signatures", Outcome.WARNING, "soon expiring")),
            _scenario("UPG-04", failure="LookupError: name the backups first\nmore"),
        ])
        assert blocking(run, strict=False) == [
            ["  UPG-03   scenario UPG-03",
             "      failed: upgrade.version_path: 1.4.0 → 3.0.0 skips major version(s) 2"],
            ["  UPG-04   scenario UPG-04", "      LookupError: name the backups first"],
        ]
        assert [lines[0].split()[0] for lines in blocking(run, strict=True)] == ["UPG-03", "SUP-01", "UPG-04"]
