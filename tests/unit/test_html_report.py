"""The HTML compliance report and the JUnit helpers: what an auditor and CI get to read."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from checks import redact
from checks.verdict import Outcome, Verdict
from reports.html import render_html_report, write_html_report
from reports.junit import junit_properties, junit_testcase_key, rename_testcases
from reports.results import RunResult, ScenarioResult, StepResult

pytest_plugins = ["pytester"]

SECRET = "s3cr3t-Pa55w0rd"
T0 = datetime(2025, 1, 14, 3, 0, tzinfo=UTC)
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "wbr", "source", "area", "base"}


# --- a small DOM built with html.parser --------------------------------------------------------------

@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find_all(self, tag: str | None = None, *, cls: str | None = None) -> list[Node]:
        return [n for n in self.iter()
                if (tag is None or n.tag == tag) and (cls is None or cls in n.attrs.get("class", "").split())]

    def by_id(self, ident: str) -> Node:
        found = [n for n in self.iter() if n.attrs.get("id") == ident]
        assert len(found) == 1, f"expected one element with id {ident!r}, found {len(found)}"
        return found[0]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def xml_of(data: bytes) -> ET.Element:
    """Parse a JUnit file this test wrote itself."""
    return ET.fromstring(data)  # noqa: S314 - our own pytester output, not untrusted input


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements"
    return builder.root


# --- runs built by hand ------------------------------------------------------------------------------

def verdict(id: str, outcome: Outcome, message: str, **kw: object) -> Verdict:
    return Verdict(id, outcome, message, started_at=T0, **kw)  # type: ignore[arg-type]


def scenario(name: str, path: str, tags: list[str], verdicts: list[Verdict], **kw: object) -> ScenarioResult:
    return ScenarioResult(nodeid=f"test_features.py::test_{len(name)}", feature="Backups", feature_path=path,
                          scenario=name, tags=tags, verdicts=verdicts,
                          steps=[StepResult("Given", "a step", "passed"),
                                 StepResult("Then", "it holds", "passed")],
                          **kw)  # type: ignore[arg-type]


def run_of(*scenarios: ScenarioResult, strict: bool = False) -> RunResult:
    return RunResult(run_id="20250114T030000Z-ab12", started_at=T0.isoformat(),
                     finished_at=(T0 + timedelta(minutes=3, seconds=7)).isoformat(),
                     drillbook_version="0.1.0", user="auditée", host="runner-1", environment="local",
                     environment_details={"postgres": "127.0.0.1:54321"}, config_path="drillbook.toml",
                     command="drillbook run --cadence monthly", strict=strict, scenarios=list(scenarios))


def passing_run() -> RunResult:
    return run_of(scenario("Backups are fresh", "features/backup/fresh.feature", ["id:BKP-02", "daily"],
                           [verdict("backup.freshness", Outcome.PASSED, "7h old",
                                    measured=timedelta(hours=7), expected="<= 26h")]))


def every_outcome_run() -> RunResult:
    """One scenario per outcome, across cadences, areas and a pack; a secret and markup inside."""
    return run_of(
        scenario("Yesterday's backup restores", "features/backup/restore.feature",
                 ["id:BKP-01", "monthly", "ref:ISO27001-A.8.13"],
                 [verdict("restore.rto", Outcome.FAILED, "restore took 41m <script>alert('x')</script>",
                          measured=timedelta(seconds=12.3), expected="<= 10s",
                          evidence={"dsn": f"postgresql://drill:{SECRET}@db/scratch"}),
                  verdict("restore.rows", Outcome.PASSED, "rows match", measured=212, expected=212)],
                 description="An unrestorable backup is no backup."),
        scenario("Replication lag", "features/health/lag.feature", ["id:HLT-01", "continuous"],
                 [verdict("pg.lag", Outcome.WARNING, "lag 4s in the warning band", measured=4.0)]),
        scenario("Redis snapshot loads", "features/backup/redis.feature", ["id:BKP-04", "weekly", "monthly"],
                 [verdict("redis.load", Outcome.ERROR, f"could not reach redis with password {SECRET}")]),
        scenario("Retention is 35 days", "features/backup/retention.feature", ["id:BKP-03", "quarterly"],
                 [verdict("backup.retention", Outcome.WAIVED, "21 days, expected 35; waiver WVR-7",
                          evidence={"waiver": "WVR-7", "approved_by": "Zoë Ångström",
                                    "expires": "2025-06-30"})]),
        scenario("SBOM has no critical CVE", "features/packs/acme/sbom.feature", ["id:ACME-01", "annually"],
                 [verdict("sbom.cves", Outcome.NOT_APPLICABLE, "no SBOM is published for 3.x")]),
        scenario("Exports reconcile — naïve café ✓", "features/packs/acme/export.feature", ["id:ACME-02"],
                 [verdict("acme.export", Outcome.PASSED, "ok", evidence={"rows": list(range(400))})]),
    )


@pytest.fixture
def secret() -> Iterator[str]:
    redact.register(SECRET)
    yield SECRET
    redact.clear()


@pytest.fixture
def page(secret: str) -> str:
    return render_html_report(every_outcome_run())


# --- the HTML report ---------------------------------------------------------------------------------

class TestOverallVerdict:
    def test_failing_run_says_fail_in_words_and_class(self, page: str) -> None:
        """A run with a failed or errored scenario shows FAIL, not just a red colour."""
        banner = parse(page).find_all("div", cls="banner")[0]
        assert "fail" in banner.attrs["class"].split()
        assert "FAIL" in banner.text()
        assert "2 of 6 scenarios did not pass" in banner.text()

    def test_passing_run_says_pass(self) -> None:
        """A run where every scenario counts as passed shows PASS."""
        banner = parse(render_html_report(passing_run())).find_all("div", cls="banner")[0]
        assert "pass" in banner.attrs["class"].split()
        assert "PASS" in banner.text() and "FAIL" not in banner.text()

    def test_empty_run_fails(self) -> None:
        """A run that ran nothing proved nothing."""
        banner = parse(render_html_report(run_of())).find_all("div", cls="banner")[0]
        assert "FAIL" in banner.text() and "No scenario ran" in banner.text()

    def test_strict_run_fails_on_a_warning(self) -> None:
        """With --strict a warning counts as a fail, and the page says why."""
        warned = run_of(scenario("Lag", "features/health/lag.feature", ["id:HLT-01"],
                                 [verdict("pg.lag", Outcome.WARNING, "lag 4s")]), strict=True)
        banner = parse(render_html_report(warned)).find_all("div", cls="banner")[0]
        assert "FAIL" in banner.text() and "warnings count as failures" in banner.text()


class TestHeader:
    def test_names_who_when_where_and_how(self, page: str) -> None:
        """Run id, UTC times, user@host, version, environment, config, command and strict mode."""
        header = parse(page).find_all("header")[0].text()
        for fact in ("20250114T030000Z-ab12", "2025-01-14 03:00:00 UTC", "2025-01-14 03:03:07 UTC",
                     "auditée@runner-1", "0.1.0", "local", "127.0.0.1:54321", "drillbook.toml",
                     "drillbook run --cadence monthly", "Strict mode"):
            assert fact in header, fact


class TestSummary:
    def test_counts_scenarios_per_outcome(self, page: str) -> None:
        """Each outcome row carries the number of scenarios and of checks with that outcome."""
        rows = parse(page).by_id("summary").find_all("tr")
        cells = {r.find_all("td")[0].text().strip(): [td.text() for td in r.find_all("td")[2:]]
                 for r in rows if r.find_all("td")}
        assert cells["\u2717 FAILED"] == ["1", "1"]
        assert cells["\u2713 PASSED"] == ["1", "2"]
        assert cells["\u2691 WAIVED"] == ["1", "1"]
        assert cells["Total"] == ["6", "7"]


class TestGrouping:
    def test_cards_are_grouped_by_cadence_in_cadence_order(self, page: str) -> None:
        """Continuous first, annually last, then the scenarios with no cadence."""
        section = parse(page).by_id("by-cadence")
        groups = [n.attrs["id"] for n in section.find_all("section") if n is not section]
        assert groups == ["cadence-continuous", "cadence-weekly", "cadence-monthly", "cadence-quarterly",
                          "cadence-annually", "cadence-none"]
        monthly = parse(page).by_id("cadence-monthly")
        assert [h.text() for h in monthly.find_all("h4")] == ["Yesterday's backup restores"]

    def test_a_scenario_with_two_cadences_is_listed_under_both(self, page: str) -> None:
        """The card sits under its most frequent cadence; the other group links to it."""
        dom = parse(page)
        assert [h.text() for h in dom.by_id("cadence-weekly").find_all("h4")] == ["Redis snapshot loads"]
        also = dom.by_id("cadence-monthly").find_all("div", cls="also")[0]
        assert "Redis snapshot loads" in also.text()

    def test_scenarios_are_indexed_by_area_and_pack(self, page: str) -> None:
        """The second grouping: areas of the suite, then product packs."""
        section = parse(page).by_id("by-pack")
        titles = [h.text() for h in section.find_all("h3")]
        assert [t.split(" ", 2)[:2] if t.startswith("Area") else t.split(" ", 3)[:3] for t in titles] == [
            ["Area:", "backup"], ["Area:", "health"], ["Product", "pack:", "acme"]]
        assert "1 failed, 1 error, 1 waived" in titles[0]
        acme = section.find_all("section")[3]
        assert "SBOM has no critical CVE" in acme.text() and "naïve café ✓" in acme.text()

    def test_card_shows_id_references_rationale_checks_and_steps(self, page: str) -> None:
        """Everything an auditor needs about one scenario is on its card."""
        card = next(c for c in parse(page).find_all("article") if "BKP-01" in c.text())
        text = card.text()
        for part in ("Yesterday's backup restores", "features/backup/restore.feature", "ISO27001-A.8.13",
                     "An unrestorable backup is no backup.", "restore.rto", "12.3s", "<= 10s",
                     "Given", "a step"):
            assert part in text, part
        badge = card.find_all("span", cls="badge")[0]
        assert "o-failed" in badge.attrs["class"] and "FAILED" in badge.text()


class TestEscapingAndRedaction:
    def test_markup_in_messages_is_text_not_elements(self, page: str) -> None:
        """A <script> inside a message is shown as text and never becomes an element."""
        dom = parse(page)
        assert dom.find_all("script") == []
        assert "<script>alert('x')</script>" in dom.text()
        assert "&lt;script&gt;" in page

    def test_secret_never_appears(self, page: str, secret: str) -> None:
        """A registered secret in a message or in evidence is masked everywhere."""
        assert secret not in page
        assert "could not reach redis with password ***" in parse(page).text()
        assert "postgresql://drill:***@db/scratch" in parse(page).text()

    def test_non_ascii_text_survives(self, page: str) -> None:
        """Names and evidence in any language render as themselves, in UTF-8."""
        assert '<meta charset="utf-8">' in page
        assert "Zoë Ångström" in parse(page).text()


class TestSelfContained:
    def test_fetches_nothing_and_needs_no_script(self, page: str) -> None:
        """No scripts, external stylesheets, fonts, images or remote links."""
        dom = parse(page)
        assert dom.find_all("script") == [] and dom.find_all("link") == [] and dom.find_all("img") == []
        for node in dom.iter():
            assert not node.attrs.get("src")
            assert node.attrs.get("href", "#").startswith("#"), node.attrs
        assert "@import" not in page and "url(" not in page

    def test_has_print_styles(self, page: str) -> None:
        """The report prints as a document."""
        assert "@media print" in page


class TestDeterminism:
    def test_same_run_renders_to_same_bytes(self, tmp_path: Path, secret: str) -> None:
        """Nothing time- or environment-dependent goes into the page."""
        first = write_html_report(every_outcome_run(), tmp_path / "a" / "report.html")
        second = write_html_report(every_outcome_run(), tmp_path / "b" / "report.html")
        assert first.read_bytes() == second.read_bytes()


class TestListedVerdicts:
    def test_waived_section_lists_the_waiver(self, page: str) -> None:
        """Waived checks are listed on their own with the waiver's details."""
        waived = parse(page).by_id("waived").text()
        assert "backup.retention" in waived and "WVR-7" in waived and "2025-06-30" in waived
        assert "Retention is 35 days" in waived

    def test_not_applicable_section_gives_the_reason(self, page: str) -> None:
        """Not-applicable checks are listed with the reason they do not apply."""
        listed = parse(page).by_id("not-applicable").text()
        assert "sbom.cves" in listed and "no SBOM is published for 3.x" in listed

    def test_long_evidence_is_folded(self, page: str) -> None:
        """Long evidence sits in a <details> element (printed in full); short evidence is shown inline."""
        dom = parse(page)
        folded = [d for d in dom.find_all("details") if "rows" in d.text()]
        assert len(folded) == 1
        printed = [d for d in dom.find_all("div", cls="print-only") if "rows" in d.text()]
        assert len(printed) == 1, "folded evidence has a copy for print"
        assert not any("WVR-7" in d.text() for d in dom.find_all("details"))


# --- the JUnit helpers -------------------------------------------------------------------------------

class TestJunitProperties:
    def test_gives_gherkin_names_and_measured_values(self, secret: str) -> None:
        """Feature, scenario, id, cadence and tags, then each verdict's outcome, measured and expected."""
        props = dict(junit_properties(every_outcome_run().scenarios[0]))
        assert props["feature"] == "Backups"
        assert props["scenario"] == "Yesterday's backup restores"
        assert props["id"] == "BKP-01"
        assert props["cadence"] == "monthly"
        assert props["tags"] == "@id:BKP-01 @monthly @ref:ISO27001-A.8.13"
        assert props["restore.rto.measured"] == "12.3"
        assert props["restore.rto.expected"] == "<= 10s"
        assert props["restore.rto.outcome"] == "failed"
        assert props["restore.rows.measured"] == "212"

    def test_redacts_every_value(self, secret: str) -> None:
        """A secret in a measured value never reaches the JUnit file."""
        leaky = scenario("Leak", "features/x/y.feature", [],
                         [verdict("conn", Outcome.PASSED, "ok", measured=f"pw={SECRET}")])
        assert dict(junit_properties(leaky))["conn.measured"] == "pw=***"

    def test_repeated_verdict_ids_stay_distinct(self) -> None:
        """The same check twice in a scenario yields two sets of properties."""
        twice = scenario("Twice", "features/x/y.feature", [],
                         [verdict("c", Outcome.PASSED, "a"), verdict("c", Outcome.FAILED, "b")])
        props = dict(junit_properties(twice))
        assert props["c.outcome"] == "passed" and props["c#2.outcome"] == "failed"


class TestRenameTestcases:
    def test_key_mirrors_pytest(self) -> None:
        """Node ids map to the classname/name pair pytest's junitxml writes."""
        assert junit_testcase_key("dir/test_x.py::TestA::test_b[p-1]") == ("dir.test_x.TestA", "test_b[p-1]")
        assert junit_testcase_key("test_x.py::test_y") == ("test_x", "test_y")

    def test_renames_pytest_testcases_and_redacts(self, pytester: pytest.Pytester, secret: str) -> None:
        """Testcases get feature and scenario names; the secret disappears from every attribute and text."""
        pytester.makepyfile(test_drill=f"""
            import pytest

            def test_restore(record_property):
                record_property("dsn", "postgresql://u:{SECRET}@db/x")

            @pytest.mark.parametrize("n", [1])
            def test_fresh(n):
                assert n == 2, "password {SECRET} leaked"

            def test_unrelated():
                pass
        """)
        junit = pytester.path / "junit.xml"
        result = pytester.runpytest("-p", "no:cacheprovider", "-o", "junit_family=xunit1",
                                    f"--junitxml={junit}")
        result.assert_outcomes(passed=2, failed=1)
        assert SECRET in junit.read_text(encoding="utf-8")

        rename_testcases(junit, {
            "test_drill.py::test_restore": ("Backups", "Yesterday's backup restores"),
            "test_drill.py::test_fresh[1]": ("Backups", "Backups are fresh <ünïcode>"),
        })

        data = junit.read_bytes()
        assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
        assert SECRET.encode() not in data
        tree = xml_of(data)
        cases = {(c.get("classname"), c.get("name")) for c in tree.iter("testcase")}
        assert cases == {("Backups", "Yesterday's backup restores"),
                         ("Backups", "Backups are fresh <ünïcode>"),
                         ("test_drill", "test_unrelated")}
        failure = next(tree.iter("failure"))
        assert "password *** leaked" in (failure.get("message") or "")
