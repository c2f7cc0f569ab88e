"""Evidence, ledger, status, cadence gate and waivers end to end: real `drillbook` subprocesses.

One module-scoped sequence of runs into one runs directory, with a drillbook.toml that names
the waiver file (`[run] waivers`) and the ledger (`[ledger] url`) and no targets: the scenarios
use the cadence step only, so the live environment opens without starting any server:

1. a failing scenario (TST-01) under an active waiver  -> exit 0, outcome waived
2. the cadence step for TST-01                         -> exit 0 (the waived run keeps it in cadence)
3. TST-01 again under an expired waiver                 -> exit 1, the failure counts again
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

FAILING = """Feature: Audit trail
  @id:TST-01 @daily @impact:low @control:CP-9
  Scenario: A drill nobody runs is in cadence
    GHOST-9 never runs: this scenario fails on purpose.

    Then the drill `GHOST-9` passed within its cadence
"""
CADENCE = """Feature: Cadence gate
  @id:TST-02 @monthly
  Scenario: The freshness drill passed within its cadence
    Given nothing
    Then the drill `TST-01` passed within its cadence
"""
NEVER = """Feature: Never run
  @id:TST-03 @quarterly
  Scenario: A drill nobody ran
    Then the drill `TST-01` passed within its cadence
"""


def waiver(*, start: str, expiry: str, approver: str = "bob@example.com", ident: str = "TST-01") -> str:
    return (f'[[waiver]]\nid = "{ident}"\njustification = "Known: GHOST-9 is retired"\n'
            f'author = "alice@example.com"\napprover = "{approver}"\nrisk = "low"\n'
            f"start = {start}\nexpiry = {expiry}\n")


def drillbook(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "drillbook.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env={**os.environ, **(env or {})}, check=False)


def results_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    line = next(line for line in proc.stdout.splitlines() if line.startswith("evidence:"))
    path = Path(line.split(":", 1)[1].strip())
    return dict(json.loads((path if path.is_absolute() else REPO / path).read_text()))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("audit")
    features = root / "features"
    (features / "audit").mkdir(parents=True)
    (features / "audit" / "failing.feature").write_text(FAILING)
    (features / "gate").mkdir()
    (features / "gate" / "cadence.feature").write_text(CADENCE.replace("    Given nothing\n", ""))
    (features / "later").mkdir()
    (features / "later" / "never.feature").write_text(NEVER)
    today = datetime.now(UTC).date()
    active = root / "active.toml"
    active.write_text(waiver(start=str(today - timedelta(days=1)), expiry=str(today + timedelta(days=30))))
    expired = root / "expired.toml"
    expired.write_text(waiver(start=str(today - timedelta(days=30)), expiry=str(today - timedelta(days=1))))
    config = root / "drillbook.toml"
    config.write_text('[run]\nwaivers = "active.toml"\n\n[ledger]\nurl = "ledgers/audit.jsonl"\n')
    out = root / "out"
    failing = str(features / "audit")
    common = ("--out", str(out), "--config", str(config))
    first = drillbook("run", "--features", failing, *common)
    second = drillbook("run", "--features", str(features / "gate"), *common)
    third = drillbook("run", "--features", failing, *common, "--waivers", str(expired))
    yield {"root": root, "features": features, "out": out, "first": first, "second": second,
           "third": third, "config": config, "ledger": root / "ledgers" / "audit.jsonl"}


class TestWaiversInARun:
    def test_active_waiver_turns_the_failure_into_waived(self, runs: dict[str, Any]) -> None:
        proc = runs["first"]
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "WAIVED" in proc.stdout
        [scenario] = results_of(proc)["scenarios"]
        assert scenario["outcome"] == "waived"
        verdict = scenario["verdicts"][0]
        assert verdict["evidence"]["waiver"]["approver"] == "bob@example.com"
        assert verdict["evidence"]["waived_outcome"] == "failed"

    def test_waived_check_is_listed_with_its_waiver_in_the_report(self, runs: dict[str, Any]) -> None:
        run_dir = runs["out"] / results_of(runs["first"])["run_id"]
        html = (run_dir / "report.html").read_text()
        assert "Known: GHOST-9 is retired" in html
        assert "WAIVED until" in html
        assert (run_dir / "waivers.toml").read_text() == (runs["root"] / "active.toml").read_text()

    def test_expired_waiver_lets_the_failure_count(self, runs: dict[str, Any]) -> None:
        proc = runs["third"]
        assert proc.returncode == 1, proc.stdout + proc.stderr
        [scenario] = results_of(proc)["scenarios"]
        assert scenario["outcome"] == "failed"
        assert scenario["verdicts"][0]["evidence"]["waiver_not_applied"]["state"] == "expired"

    @pytest.mark.parametrize(("text", "expected"), [
        (waiver(start="2026-01-01", expiry="2026-02-01", approver="alice@example.com"),
         ":5: waiver: the approver must differ from the author"),
        (waiver(start="2026-01-01", expiry="2026-02-01", ident="NOPE-1"),
         ":1: waiver for unknown scenario id 'NOPE-1'"),
        ("[[waiver]]\nid = TST-01\n", ":2: not valid TOML"),
    ])
    def test_bad_waiver_file_stops_the_run_before_anything_runs(
            self, runs: dict[str, Any], tmp_path: Path, text: str, expected: str) -> None:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        out = tmp_path / "out"
        proc = drillbook("run", "--features", str(runs["features"] / "audit"), "--out", str(out),
                         "--waivers", str(bad))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"{bad}{expected}" in proc.stderr
        assert not out.exists()  # nothing ran: no run directory, no ledger


class TestCadenceStepAndLedger:
    def test_cadence_step_passes_on_the_waived_run(self, runs: dict[str, Any]) -> None:
        proc = runs["second"]
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [scenario] = results_of(proc)["scenarios"]
        assert scenario["verdicts"][0]["id"] == "cadence.within"
        assert scenario["verdicts"][0]["evidence"]["last_outcome"] == "waived"

    def test_every_run_appended_to_the_ledger(self, runs: dict[str, Any]) -> None:
        lines = runs["ledger"].read_text().splitlines()
        entries = [json.loads(line) for line in lines]
        assert [(e["id"], e["outcome"]) for e in entries] == [
            ("TST-01", "waived"), ("TST-02", "passed"), ("TST-01", "failed")]
        assert entries[0]["waiver"].startswith("TST-01 approved by bob@example.com")

    def test_status_json_shows_every_drill(self, runs: dict[str, Any]) -> None:
        proc = drillbook("status", "--config", str(runs["config"]), "--features", str(runs["features"]),
                         "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        data = json.loads(proc.stdout)
        states = {d["id"]: (d["cadence"], d["state"]) for d in data["drills"]}
        assert states == {"TST-01": ("daily", "failing"), "TST-02": ("monthly", "ok"),
                          "TST-03": ("quarterly", "never run")}
        assert data["ledger_ok"] is True

    def test_status_table_and_prometheus_textfile(self, runs: dict[str, Any], tmp_path: Path) -> None:
        prom = tmp_path / "drillbook.prom"
        proc = drillbook("status", "--config", str(runs["config"]), "--features", str(runs["features"]),
                         "--prometheus", str(prom))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "TST-03" in proc.stdout and "never run" in proc.stdout
        assert 'drillbook_scenario_outcome{id="TST-01",cadence="daily",pack="audit",outcome="failed"} 1' \
            in prom.read_text()
        # Each run also refreshes the textfile beside the ledger.
        assert runs["ledger"].with_name("drillbook.prom").is_file()

    def test_gate_cadence_exits_3_naming_the_never_run_drill(self, runs: dict[str, Any]) -> None:
        proc = drillbook("gate", "cadence", "--config", str(runs["config"]),
                         "--features", str(runs["features"]))
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert "TST-03" in proc.stdout and "TST-01" not in proc.stdout

    def test_gate_cadence_passes_when_every_drill_is_in_cadence(self, runs: dict[str, Any]) -> None:
        proc = drillbook("gate", "cadence", "--config", str(runs["config"]),
                         "--features", str(runs["features"] / "audit"),
                         "--features", str(runs["features"] / "gate"))
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def test_edited_ledger_is_named_and_blocks_the_gate(self, runs: dict[str, Any], tmp_path: Path) -> None:
        """A copy of the ledger with one outcome rewritten: status names the line, gate exits 1."""
        ledger = tmp_path / "ledger.jsonl"
        text = runs["ledger"].read_text().replace('"outcome":"failed"', '"outcome":"passed"')
        ledger.write_text(text)
        head = runs["ledger"].with_name("audit.jsonl.head")
        (tmp_path / "ledger.jsonl.head").write_text(head.read_text())
        proc = drillbook("status", "--ledger", str(ledger), "--features", str(runs["features"]))
        assert proc.returncode == 1
        assert "line 3: entry seq 3 was edited" in proc.stderr
        gate = drillbook("gate", "cadence", "--ledger", str(ledger),
                         "--features", str(runs["features"] / "gate"))
        assert gate.returncode == 1


class TestEvidenceCommands:
    def test_export_is_deterministic_and_verifies(self, runs: dict[str, Any], tmp_path: Path) -> None:
        first, second = tmp_path / "a.zip", tmp_path / "b.zip"
        for target in (first, second):
            proc = drillbook("evidence", "export", "--out", str(runs["out"]), "--since", "1d",
                             "--ledger", str(runs["ledger"]), "-o", str(target))
            assert proc.returncode == 0, proc.stdout + proc.stderr
        assert first.read_bytes() == second.read_bytes()
        proc = drillbook("evidence", "verify", str(first), "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        report = json.loads(proc.stdout)
        assert len(report["runs"]) == 3
        names = zipfile.ZipFile(first).namelist()
        assert any(n.endswith("features/audit/failing.feature") for n in names)
        assert any(n.endswith("/environment.json") for n in names)
        assert any(n.endswith("/scenarios/001-TST-01.json") for n in names)
        assert "ledger/ledger.jsonl" in names  # and verify checked every scenario against it

    def test_verify_names_a_modified_file(self, runs: dict[str, Any], tmp_path: Path) -> None:
        bundle = tmp_path / "e.zip"
        assert drillbook("evidence", "export", "--out", str(runs["out"]), "-o", str(bundle)).returncode == 0
        source = zipfile.ZipFile(io.BytesIO(bundle.read_bytes()))
        forged = tmp_path / "forged.zip"
        with zipfile.ZipFile(forged, "w") as out:
            for info in source.infolist():
                data = source.read(info)
                if info.filename.endswith("results.json"):
                    data = data.replace(b'"failed"', b'"passed"')
                    target = info.filename
                out.writestr(info, data)
        proc = drillbook("evidence", "verify", str(forged))
        assert proc.returncode == 1
        assert f"modified: {target}" in proc.stdout
        assert "NOT VERIFIED" in proc.stdout

    def test_sign_without_identity_says_so_and_exports_unsigned(self, runs: dict[str, Any],
                                                                tmp_path: Path) -> None:
        env = dict.fromkeys(("SIGSTORE_ID_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL"), "")
        proc = drillbook("evidence", "export", "--out", str(runs["out"]), "-o", str(tmp_path / "s.zip"),
                         "--sign", env=env)
        assert proc.returncode == 0
        assert "no ambient OIDC identity" in proc.stderr and "exported unsigned" in proc.stderr

    def test_sandbox_signed_export_verifies_with_its_root_only(self, runs: dict[str, Any],
                                                               tmp_path: Path) -> None:
        bundle = tmp_path / "signed.zip"
        proc = drillbook("evidence", "export", "--out", str(runs["out"]), "-o", str(bundle),
                         "--sign-sandbox")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        root = tmp_path / "signed.trusted_root.json"
        assert f"--trusted-root {root}" in proc.stdout
        ok = drillbook("evidence", "verify", str(bundle), "--trusted-root", str(root), "--json",
                       "--identity", "release-bot@drillbook-local.invalid",
                       "--issuer", "https://oidc.drillbook-local.invalid")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        report = json.loads(ok.stdout)
        assert report["signed"] and report["signer"] == "release-bot@drillbook-local.invalid"
        assert report["signature_evidence"]["trusted_root_sha256"]
        wrong = drillbook("evidence", "verify", str(bundle), "--trusted-root", str(root),
                          "--identity", "mallory@example.com", "--issuer", "https://oidc.drillbook-local.invalid")
        assert wrong.returncode == 1 and "signature:" in wrong.stdout
        # The default root is sigstore production's: a sandbox signature is not trusted there.
        default = drillbook("evidence", "verify", str(bundle))
        assert default.returncode == 1 and "signature:" in default.stdout

    def test_malformed_trusted_root_is_a_usage_error(self, runs: dict[str, Any], tmp_path: Path) -> None:
        bundle, root = tmp_path / "e.zip", tmp_path / "root.json"
        assert drillbook("evidence", "export", "--out", str(runs["out"]), "-o", str(bundle)).returncode == 0
        root.write_text("{not json", encoding="utf-8")
        proc = drillbook("evidence", "verify", str(bundle), "--trusted-root", str(root))
        assert proc.returncode == 2 and str(root) in proc.stderr

    def test_sign_with_a_malformed_token_stops_before_writing(self, runs: dict[str, Any],
                                                              tmp_path: Path) -> None:
        target = tmp_path / "t.zip"
        proc = drillbook("evidence", "export", "--out", str(runs["out"]), "-o", str(target), "--sign",
                         env={"SIGSTORE_ID_TOKEN": "not-a-jwt"})
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "OIDC token" in proc.stderr and "not-a-jwt" not in proc.stderr + proc.stdout
        assert not target.exists()

    def test_oscal_export_validates_and_names_the_control(self, runs: dict[str, Any],
                                                          tmp_path: Path) -> None:
        from trestle.oscal.assessment_results import AssessmentResults

        target = tmp_path / "ar.json"
        proc = drillbook("evidence", "export", "--out", str(runs["out"]), "--since", "1d",
                         "--format", "oscal", "-o", str(target))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        document = AssessmentResults.model_validate(json.loads(target.read_text())["assessment-results"])
        assert len(document.results) == 3
        states = [f.target.status.state.value for r in document.results for f in (r.findings or [])]
        assert states == ["not-satisfied", "not-satisfied"]  # waived, then failed: cp-9 does not hold

    @pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
    def test_pdf_prints_the_latest_report(self, runs: dict[str, Any], tmp_path: Path) -> None:
        target = tmp_path / "report.pdf"
        proc = drillbook("evidence", "export", "--out", str(runs["out"]), "--format", "pdf",
                         "-o", str(target))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        data = target.read_bytes()
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")

    def test_pdf_without_chromium_says_what_to_install(self, runs: dict[str, Any], tmp_path: Path) -> None:
        proc = drillbook("evidence", "export", "--out", str(runs["out"]), "--format", "pdf",
                         "-o", str(tmp_path / "r.pdf"), env={"PATH": str(tmp_path)})
        assert proc.returncode == 1
        assert "no Chromium found" in proc.stderr and "apt-get install chromium" in proc.stderr
        assert not (tmp_path / "r.pdf").exists()

    def test_unknown_run_is_a_usage_error(self, runs: dict[str, Any], tmp_path: Path) -> None:
        proc = drillbook("evidence", "export", "--out", str(runs["out"]), "--run", "nope", "-o",
                         str(tmp_path / "x.zip"))
        assert proc.returncode == 2
        assert "no run 'nope'" in proc.stderr

    def test_corrupt_zip_is_named(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad.zip"
        bad.write_bytes(b"PK\x03\x04 not really")
        proc = drillbook("evidence", "verify", str(bad))
        assert proc.returncode == 1
        assert "is not a readable zip archive" in proc.stdout


class TestDamagedLedgerInARun:
    def test_run_against_a_damaged_ledger_fails_and_leaves_it_untouched(self, runs: dict[str, Any],
                                                                        tmp_path: Path) -> None:
        """Run last: truncate the ledger, run again: exit 1 naming the damage; not a byte rewritten."""
        out = tmp_path / "out"
        out.mkdir()
        raw = runs["ledger"].read_bytes()[:-30]
        (out / "ledger.jsonl").write_bytes(raw)
        (out / "ledger.jsonl.head").write_bytes(runs["ledger"].with_name("audit.jsonl.head").read_bytes())
        config = tmp_path / "drillbook.toml"
        config.write_text('[ledger]\nurl = "out/ledger.jsonl"\n')
        proc = drillbook("run", "--features", str(runs["features"] / "gate"), "--out", str(out),
                         "--config", str(config))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "ledger not updated" in proc.stderr and "truncated" in proc.stderr
        assert (out / "ledger.jsonl").read_bytes() == raw
