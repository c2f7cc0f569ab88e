"""The evidence bundle: deterministic export, and verify naming every modified, missing or extra file."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks import redact
from checks.verdict import Outcome, Verdict
from reports.evidence import (
    MANIFEST,
    EvidenceError,
    Member,
    build_manifest,
    canonical_zip,
    export_bundle,
    verify_bundle,
)
from reports.html import write_html_report
from reports.results import RunResult, ScenarioResult, StepResult

FEATURE = """@s3
Feature: Backup freshness
  @id:BKP-10 @daily @impact:high
  Scenario: Last night's backup exists
    Given the backups in "nightly"
    Then the newest backup is at most 26h old
"""


def make_run(root: Path, run_id: str = "20261122T090000Z-abc123", *, secret: str | None = None) -> Path:
    """A run directory as `drillbook run` leaves it, written by the real report writers."""
    # The redactor is process-wide: secrets other tests registered (hypothesis draws short
    # ones) would mask parts of this run, e.g. the key "measured". Start from none.
    redact.clear()
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    started = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    verdict = Verdict.compare("backup.freshness", measured=3600.0, expected="<= 26h", ok=True,
                              evidence={"store": f"s3://backups/?token={secret or 'none'}"})
    failing = Verdict.failed("restore.rto", "restore took 40m, limit 30m", measured=2400.0,
                             expected="<= 1800")
    scenarios = [
        ScenarioResult(nodeid="t.py::test_a", feature="Backup freshness",
                       feature_path="features/backup/fresh.feature", scenario="Last night's backup exists",
                       tags=["daily", "id:BKP-10"], verdicts=[verdict.with_timing(started, 0.1)],
                       steps=[StepResult("Given", 'the backups in "nightly"', "passed")],
                       started_at=started.isoformat()),
        ScenarioResult(nodeid="t.py::test_b", feature="Restore", feature_path="features/backup/fresh.feature",
                       scenario="Restore within RTO", tags=["monthly", "id:BKP-01"],
                       verdicts=[failing.with_timing(started, 0.2)], started_at=started.isoformat()),
    ]
    run = RunResult(run_id=run_id, started_at=started.isoformat(), finished_at=started.isoformat(),
                    drillbook_version="0.1.0", user="ops", host="vm", environment="local",
                    scenarios=scenarios)
    data = redact.redact_obj(run.to_dict())
    (run_dir / "results.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    write_html_report(RunResult.from_dict(data), run_dir / "report.html")
    (run_dir / "junit.xml").write_text('<?xml version="1.0"?><testsuites><testsuite name="drillbook"/>'
                                       "</testsuites>\n", encoding="utf-8")
    (run_dir / "config.json").write_text('{"effective": null}\n', encoding="utf-8")
    (run_dir / "environment.json").write_text('{"drillbook_version": "0.1.0"}\n', encoding="utf-8")
    features = run_dir / "features" / "backup"
    features.mkdir(parents=True)
    (features / "fresh.feature").write_text(FEATURE, encoding="utf-8")
    (run_dir / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # not evidence: left out
    return run_dir


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """One real bundle exported from a run directory, shared by the tamper tests."""
    return export_bundle([make_run(tmp_path_factory.mktemp("runs"))])


def members_of(data: bytes) -> list[Member]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [Member(i.filename, archive.read(i)) for i in archive.infolist()]


def rebuilt(members: list[Member]) -> bytes:
    """Re-pack as a careful forger would: a canonical archive around the altered contents."""
    return canonical_zip(members)


class TestExport:
    def test_bundle_holds_every_part_of_the_run(self, bundle: bytes) -> None:
        """results, one JSON per scenario, junit, html, features, config and environment; manifest first."""
        names = [m.path for m in members_of(bundle)]
        base = "runs/20261122T090000Z-abc123"
        assert names[0] == MANIFEST
        assert set(names[1:]) == {
            f"{base}/results.json", f"{base}/junit.xml", f"{base}/report.html", f"{base}/config.json",
            f"{base}/environment.json", f"{base}/features/backup/fresh.feature",
            f"{base}/scenarios/001-BKP-10.json", f"{base}/scenarios/002-BKP-01.json",
        }
        assert names[1:] == sorted(names[1:])

    def test_manifest_lists_the_sha256_of_every_other_file(self, bundle: bytes) -> None:
        """Every member but the manifest is listed with its SHA-256 and size."""
        members = members_of(bundle)
        manifest = json.loads(members[0].data)
        listed = {f["path"]: (f["sha256"], f["size"]) for f in manifest["files"]}
        assert listed == {m.path: (m.sha256, len(m.data)) for m in members[1:]}
        assert manifest["runs"][0]["run_id"] == "20261122T090000Z-abc123"
        assert manifest["runs"][0]["counts"]["failed"] == 1

    def test_scenario_file_carries_measured_expected_and_evidence(self, bundle: bytes) -> None:
        """The per-scenario JSON is the scenario as recorded: verdicts with measured vs expected."""
        member = next(m for m in members_of(bundle) if m.path.endswith("002-BKP-01.json"))
        scenario = json.loads(member.data)
        assert scenario["outcome"] == "failed"
        assert scenario["verdicts"][0]["measured"] == 2400.0
        assert scenario["verdicts"][0]["expected"] == "<= 1800"

    def test_same_inputs_give_the_same_bytes(self, tmp_path: Path) -> None:
        """Exported twice (with file times changed in between): byte-identical archives."""
        run_dir = make_run(tmp_path)
        first = export_bundle([run_dir])
        for path in run_dir.rglob("*"):
            if path.is_file():
                path.touch()
        assert export_bundle([run_dir]) == first

    def test_several_runs_in_one_bundle(self, tmp_path: Path) -> None:
        """Runs are listed in id order whatever order they are given in."""
        a = make_run(tmp_path, "20261101T000000Z-aaaaaa")
        b = make_run(tmp_path, "20261102T000000Z-bbbbbb")
        data = export_bundle([b, a])
        assert data == export_bundle([a, b])
        report = verify_bundle(data)
        assert report.ok, report.problems
        assert report.runs == ["20261101T000000Z-aaaaaa", "20261102T000000Z-bbbbbb"]

    def test_registered_secret_never_reaches_the_bundle(self, tmp_path: Path) -> None:
        """A secret registered with the redactor is masked in every member."""
        secret = "s3cr3t-Token-9f8e"
        run_dir = make_run(tmp_path, secret=secret)
        redact.register(secret)
        try:
            data = export_bundle([run_dir])
        finally:
            redact.clear()
        assert secret.encode() not in data
        assert b"token=***" in data

    def test_not_a_run_directory_is_named(self, tmp_path: Path) -> None:
        """A directory without results.json is an error naming the file, with a hint."""
        with pytest.raises(EvidenceError) as caught:
            export_bundle([tmp_path])
        assert "results.json" in str(caught.value)
        assert caught.value.hint

    def test_no_run_at_all_is_an_error(self) -> None:
        with pytest.raises(EvidenceError, match="no run to export"):
            export_bundle([])


class TestVerify:
    def test_untouched_bundle_verifies(self, bundle: bytes) -> None:
        report = verify_bundle(bundle)
        assert report.ok, report.problems
        assert report.files_checked == 8
        assert report.manifest_sha256 is not None

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_any_single_byte_change_of_any_file_is_named(self, bundle: bytes, data: st.DataObject) -> None:
        """Change one byte of one member, re-pack canonically: verify names that member as modified."""
        members = members_of(bundle)
        index = data.draw(st.integers(1, len(members) - 1), label="member")
        target = members[index]
        position = data.draw(st.integers(0, len(target.data) - 1), label="position")
        new = data.draw(st.integers(0, 255).filter(lambda b: b != target.data[position]), label="byte")
        changed = target.data[:position] + bytes([new]) + target.data[position + 1:]
        members[index] = Member(target.path, changed)
        report = verify_bundle(rebuilt(members))
        assert [(p.kind, p.path) for p in report.problems] == [("modified", target.path)]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_any_truncated_file_is_named(self, bundle: bytes, data: st.DataObject) -> None:
        members = members_of(bundle)
        index = data.draw(st.integers(1, len(members) - 1), label="member")
        target = members[index]
        keep = data.draw(st.integers(0, len(target.data) - 1), label="keep")
        members[index] = Member(target.path, target.data[:keep])
        report = verify_bundle(rebuilt(members))
        assert [(p.kind, p.path) for p in report.problems] == [("modified", target.path)]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(name=st.from_regex(r"[a-z]{1,8}(/[a-z0-9_.-]{1,12}){0,3}", fullmatch=True),
           body=st.binary(max_size=64))
    def test_any_added_file_is_named(self, bundle: bytes, name: str, body: bytes) -> None:
        members = members_of(bundle)
        if name in {m.path for m in members}:
            return
        report = verify_bundle(rebuilt([*members, Member(name, body)]))
        assert [(p.kind, p.path) for p in report.problems] == [("extra", name)]

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_any_byte_of_the_archive_itself_changed_fails(self, bundle: bytes, data: st.DataObject) -> None:
        """Headers, CRCs, the directory, the trailer: a flipped byte anywhere never verifies."""
        position = data.draw(st.integers(0, len(bundle) - 1), label="position")
        new = data.draw(st.integers(0, 255).filter(lambda b: b != bundle[position]), label="byte")
        report = verify_bundle(bundle[:position] + bytes([new]) + bundle[position + 1:])
        assert not report.ok

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(keep=st.integers(0, 10_000_000))
    def test_truncated_archive_fails(self, bundle: bytes, keep: int) -> None:
        report = verify_bundle(bundle[: keep % len(bundle)])
        assert not report.ok

    def test_appended_bytes_fail(self, bundle: bytes) -> None:
        """Trailing data after the zip's end record is not the canonical export."""
        report = verify_bundle(bundle + b"\x00")
        assert [p.kind for p in report.problems] == ["archive"]

    def test_missing_file_is_named(self, bundle: bytes) -> None:
        members = members_of(bundle)
        gone = members.pop(3)
        report = verify_bundle(rebuilt(members))
        assert [(p.kind, p.path) for p in report.problems] == [("missing", gone.path)]

    def test_manifest_that_lies_is_caught(self, bundle: bytes) -> None:
        """A manifest rewritten with another hash names the file whose hash it misstates."""
        members = members_of(bundle)
        manifest = json.loads(members[0].data)
        manifest["files"][0]["sha256"] = "0" * 64
        members[0] = Member(MANIFEST, json.dumps(manifest).encode())
        report = verify_bundle(rebuilt(members))
        assert [(p.kind, p.path) for p in report.problems] == [("modified", manifest["files"][0]["path"])]

    def test_manifest_not_json_is_named(self, bundle: bytes) -> None:
        members = members_of(bundle)
        members[0] = Member(MANIFEST, b"{not json")
        report = verify_bundle(rebuilt(members))
        assert [(p.kind, p.path) for p in report.problems] == [("manifest", MANIFEST)]

    def test_missing_manifest_is_named(self, bundle: bytes) -> None:
        report = verify_bundle(rebuilt(members_of(bundle)[1:]))
        assert [(p.kind, p.path) for p in report.problems] == [("missing", MANIFEST)]

    def test_duplicate_member_is_named(self, bundle: bytes) -> None:
        """A second member with an existing name (zip allows it) is extra."""
        members = members_of(bundle)
        dup = members[2]
        with pytest.warns(UserWarning, match="Duplicate name"):
            data = rebuilt([*members, Member(dup.path, b"forged")])
        report = verify_bundle(data)
        assert ("extra", dup.path) in [(p.kind, p.path) for p in report.problems]

    def test_reordered_members_fail(self, bundle: bytes) -> None:
        """Same contents in another order: every hash matches, the archive is still not the export."""
        members = members_of(bundle)
        report = verify_bundle(rebuilt([members[0], *reversed(members[1:])]))
        assert [p.kind for p in report.problems] == ["archive"]

    @settings(max_examples=100, deadline=None)
    @given(st.binary(max_size=2048))
    def test_arbitrary_bytes_never_crash(self, data: bytes) -> None:
        """Not a zip, a damaged zip: a named problem, never an exception."""
        report = verify_bundle(data)
        assert not report.ok
        assert all(str(p) for p in report.problems)

    def test_corrupt_zip_message_names_the_file(self) -> None:
        report = verify_bundle(b"PK\x03\x04garbage", name="audit/evidence.zip")
        assert "audit/evidence.zip is not a readable zip archive" in str(report.problems[0])


class TestOscal:
    """OSCAL assessment results, built with compliance-trestle's schema-generated models."""

    @staticmethod
    def run_with(outcome_tags: list[tuple[str, list[str]]]) -> RunResult:
        started = "2026-11-22T09:00:00+00:00"
        scenarios = []
        for index, (outcome, tags) in enumerate(outcome_tags):
            evidence = {"waiver": {"id": "BKP-01"}} if outcome == "waived" else {}
            verdict = Verdict("restore.rto", Outcome(outcome), f"measured {index}", measured=index,
                              expected="<= 1800", evidence=evidence)
            scenarios.append(ScenarioResult(nodeid=f"t.py::test_{index}", feature="F",
                                            feature_path="features/f.feature", scenario=f"scenario {index}",
                                            tags=tags, verdicts=[verdict], started_at=started))
        return RunResult(run_id="20261122T090000Z-abc123", started_at=started, finished_at=started,
                         drillbook_version="0.1.0", scenarios=scenarios)

    def parse(self, text: str) -> Any:
        from trestle.oscal.assessment_results import AssessmentResults

        return AssessmentResults.model_validate(json.loads(text)["assessment-results"])

    def test_document_validates_against_the_trestle_models(self) -> None:
        from reports.oscal import assessment_results

        run = self.run_with([("passed", ["id:BKP-01", "control:CP-9", "ref:ISO27001-A.8.13"]),
                             ("failed", ["id:BKP-02", "control:CP-4"])])
        document = self.parse(assessment_results([run]))
        [result] = document.results
        selected = [c.control_id for c in result.reviewed_controls.control_selections[0].include_controls]
        assert selected == ["cp-4", "cp-9", "iso27001-a.8.13"]
        states = {f.target.target_id: f.target.status.state.value for f in result.findings}
        assert states == {"cp-9_obj": "satisfied", "iso27001-a.8.13_obj": "satisfied",
                          "cp-4_obj": "not-satisfied"}
        assert len(result.observations) == 2
        assert result.observations[0].methods == ["TEST"]

    def test_same_runs_give_the_same_document(self) -> None:
        """UUIDv5 ids and fixed order: byte-identical output."""
        from reports.oscal import assessment_results

        tags = ["id:BKP-01", "control:CP-9"]
        assert assessment_results([self.run_with([("passed", tags)])]) == \
            assessment_results([self.run_with([("passed", list(tags))])])

    def test_waived_is_not_satisfied_and_names_the_waiver(self) -> None:
        """A waiver accepts the risk; it does not make the control hold."""
        from reports.oscal import assessment_results

        run = self.run_with([("waived", ["id:BKP-01", "control:CP-9"])])
        document = self.parse(assessment_results([run]))
        [finding] = document.results[0].findings
        assert finding.target.status.state.value == "not-satisfied"
        assert "waiver" in finding.remarks

    def test_evidence_links_point_into_the_bundle(self) -> None:
        from reports.evidence import scenario_member
        from reports.oscal import assessment_results

        run = self.run_with([("passed", ["id:BKP-01"])])
        hrefs = {(run.run_id, "t.py::test_0"): scenario_member(run.run_id, 1, "BKP-01")}
        document = self.parse(assessment_results([run], evidence_paths=hrefs))
        evidence = document.results[0].observations[0].relevant_evidence[0]
        assert evidence.href == "runs/20261122T090000Z-abc123/scenarios/001-BKP-01.json"

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.text(min_size=1, max_size=20), max_size=5))
    def test_any_tag_text_becomes_a_valid_control_id_or_nothing(self, values: list[str]) -> None:
        """Outside input (tags): whatever they hold, the document still validates."""
        from reports.oscal import assessment_results, control_ids

        tags = [f"control:{v}" for v in values]
        for control in control_ids(tags):
            assert control[0].isalpha()
        self.parse(assessment_results([self.run_with([("passed", tags)])]))


class TestBundledLedger:
    """`--ledger`: the bundle carries the ledger; a consistent forgery of results no longer verifies."""

    @staticmethod
    def bundle_with_ledger(tmp_path: Path) -> bytes:
        from reports.ledger import LocalLedger
        from reports.ledger_runs import entries_for_run

        run_dir = make_run(tmp_path)
        ledger = LocalLedger(tmp_path / "ledger.jsonl")
        ledger.append(entries_for_run(RunResult.read(run_dir / "results.json")))
        return export_bundle([run_dir], ledger=ledger.path)

    @staticmethod
    def forge(data: bytes, path_suffix: str, old: bytes, new: bytes) -> bytes:
        """Edit one member and rewrite the manifest to match: every hash agrees again."""
        members = members_of(data)
        for index, member in enumerate(members):
            if member.path.endswith(path_suffix):
                members[index] = Member(member.path, member.data.replace(old, new))
        manifest = json.loads(members[0].data)
        runs = manifest["runs"]
        return canonical_zip([build_manifest(members[1:], runs), *members[1:]])

    def test_bundle_with_its_ledger_verifies(self, tmp_path: Path) -> None:
        data = self.bundle_with_ledger(tmp_path)
        report = verify_bundle(data)
        assert report.ok, report.problems
        assert "ledger/ledger.jsonl" in [m.path for m in members_of(data)]

    def test_rewritten_scenario_with_a_matching_manifest_is_caught(self, tmp_path: Path) -> None:
        """The forger turns a failure into a pass and re-hashes the manifest: the ledger disagrees."""
        forged = self.forge(self.bundle_with_ledger(tmp_path), "002-BKP-01.json",
                            b'"outcome": "failed"', b'"outcome": "passed"')
        problems = [(p.kind, p.path) for p in verify_bundle(forged).problems]
        assert problems == [("ledger", "runs/20261122T090000Z-abc123/scenarios/002-BKP-01.json")]

    def test_edited_ledger_in_the_bundle_is_named(self, tmp_path: Path) -> None:
        forged = self.forge(self.bundle_with_ledger(tmp_path), "ledger/ledger.jsonl",
                            b'"outcome":"failed"', b'"outcome":"passed"')
        problems = [str(p) for p in verify_bundle(forged).problems]
        assert "ledger: ledger/ledger.jsonl — line 2: entry seq 2 was edited: its content does not match " \
               "its hash" in problems

    def test_missing_ledger_file_is_an_export_error(self, tmp_path: Path) -> None:
        with pytest.raises(EvidenceError, match="cannot read the ledger"):
            export_bundle([make_run(tmp_path)], ledger=tmp_path / "none.jsonl")


def test_compressed_member_is_not_inflated() -> None:
    """A deflated member (drillbook stores them) is named without being decompressed: no zip bomb."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", b"{}")
        archive.writestr("bomb.bin", b"\0" * 10_000_000)
    report = verify_bundle(buffer.getvalue())
    assert ("modified", "bomb.bin") in [(p.kind, p.path) for p in report.problems]
