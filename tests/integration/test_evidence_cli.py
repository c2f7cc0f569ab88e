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


def _members(bundle: Path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    source = zipfile.ZipFile(io.BytesIO(bundle.read_bytes()))
    return [(info, source.read(info)) for info in source.infolist()]


@pytest.fixture(scope="module")
def stripped(runs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A sandbox-signed bundle with its signature member removed (every hash still matches), and its root."""
    from reports.evidence import SIGNATURE, Member, canonical_zip

    tmp = tmp_path_factory.mktemp("stripped")
    signed = tmp / "e.zip"
    proc = drillbook("evidence", "export", "--out", str(runs["out"]), "-o", str(signed), "--sign-sandbox")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bundle = tmp / "stripped.zip"
    bundle.write_bytes(canonical_zip([Member(i.filename, d) for i, d in _members(signed)
                                      if i.filename != SIGNATURE]))
    return bundle, tmp / "e.trusted_root.json"


class TestTrustRequiresASignature:
    """A signed bundle whose signature member was removed must not verify as "unsigned" under trust."""

    def test_without_trust_options_it_reads_as_unsigned(self, stripped: tuple[Path, Path]) -> None:
        proc = drillbook("evidence", "verify", str(stripped[0]))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "unsigned" in proc.stdout

    def test_with_the_trusted_root_it_fails_saying_the_signature_is_missing(
            self, stripped: tuple[Path, Path]) -> None:
        bundle, root = stripped
        proc = drillbook("evidence", "verify", str(bundle), "--trusted-root", str(root))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert ("signature: signature missing: the bundle is not signed (no manifest.json.sigstore.json), "
                "but --trusted-root asked for a trusted signature") in proc.stdout
        assert "NOT VERIFIED" in proc.stdout

    @pytest.mark.parametrize(("option", "value"), [
        ("--staging", None), ("--identity", "release-bot@drillbook-local.invalid"),
        ("--issuer", "https://oidc.drillbook-local.invalid")])
    def test_each_trust_option_alone_requires_a_signature(self, stripped: tuple[Path, Path], option: str,
                                                          value: str | None) -> None:
        extra = [value] if value else []
        proc = drillbook("evidence", "verify", str(stripped[0]), "--json", option, *extra)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        report = json.loads(proc.stdout)
        assert report["ok"] is False and report["signed"] is False
        [problem] = report["problems"]
        assert problem["kind"] == "signature"
        assert problem["detail"].startswith("signature missing") and option in problem["detail"]


LEDGER_CONFIG = '[ledger]\nurl = "ledgers/signed.jsonl"\n'


def _rewrite(ledger: Path, seq: int) -> None:
    """The forgery: entry ``seq`` failed -> passed, every later hash and the .head recomputed."""
    from dataclasses import replace

    from checks.verdict import Outcome
    from reports.ledger import GENESIS, LocalLedger, _with_hash, parse_entry

    entries = [parse_entry(line) for line in ledger.read_text().splitlines()]
    prev, lines = GENESIS, []
    for item in entries:
        changed = replace(item, outcome=Outcome.PASSED) if item.seq == seq else item
        forged = _with_hash(replace(changed, prev=prev))
        prev = forged.hash
        lines.append(forged.line())
    ledger.write_text("".join(lines))
    LocalLedger(ledger)._write_head(entries[-1].seq, prev)


@pytest.fixture(scope="module")
def signed_runs(runs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two `drillbook run --sign-sandbox` of the failing drill TST-01: two signed heads, seq 1 and 2."""
    root = tmp_path_factory.mktemp("signed")
    config = root / "drillbook.toml"
    config.write_text(LEDGER_CONFIG)
    out = root / "out"
    for _ in range(2):
        proc = drillbook("run", "--features", str(runs["features"] / "audit"), "--out", str(out),
                         "--config", str(config), "--sign-sandbox")
        assert proc.returncode == 1, proc.stdout + proc.stderr  # TST-01 fails on purpose
        assert "signed:   " in proc.stdout and "--trusted-root" in proc.stdout
    return {"root": root, "out": out, "config": config, "ledger": root / "ledgers" / "signed.jsonl",
            "trusted_root": out / "sandbox-authority" / "trusted_root.json", "features": runs["features"]}


def _forged_copy(signed: dict[str, Path], target: Path, *, seq: int, keep_heads: list[str] | None) -> Path:
    """A copy of the signed ledger (head, signed heads) with entry ``seq`` rewritten consistently."""
    source = signed["ledger"]
    target.mkdir(parents=True, exist_ok=True)
    ledger = target / "ledger.jsonl"
    shutil.copy(source, ledger)
    shutil.copy(source.with_name(source.name + ".head"), target / "ledger.jsonl.head")
    heads = target / "ledger.jsonl.heads"
    heads.mkdir()
    for path in sorted(source.with_name(source.name + ".heads").iterdir()):
        if keep_heads is None or path.name in keep_heads:
            shutil.copy(path, heads / path.name)
    _rewrite(ledger, seq)
    return ledger


class TestSignedLedgerHeads:
    def test_a_signing_run_stores_one_head_per_run_beside_the_ledger(self,
                                                                      signed_runs: dict[str, Path]) -> None:
        heads = signed_runs["ledger"].with_name("signed.jsonl.heads")
        assert sorted(p.name for p in heads.iterdir()) == ["000000000001.json", "000000000002.json"]
        assert (signed_runs["out"] / "sandbox-authority" / "authority-keys.json").stat().st_mode & 0o077 == 0

    def test_the_untouched_signed_ledger_verifies_in_status(self, signed_runs: dict[str, Path]) -> None:
        proc = drillbook("status", "--config", str(signed_runs["config"]), "--features",
                         str(signed_runs["features"] / "audit"), "--trusted-root",
                         str(signed_runs["trusted_root"]), "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        data = json.loads(proc.stdout)
        assert data["ledger_ok"] is True
        assert data["ledger_signed_heads"] == {
            "verified": 2, "covered_to_seq": 2,
            "signers": ["release-bot@drillbook-local.invalid (https://oidc.drillbook-local.invalid)"]}

    def test_a_consistent_rewrite_passes_the_unsigned_check_but_not_the_trusted_one(
            self, signed_runs: dict[str, Path], tmp_path: Path) -> None:
        """Heads deleted with the rewrite: status without trust shows the drill ok; with it, exit 1."""
        ledger = _forged_copy(signed_runs, tmp_path, seq=2, keep_heads=[])
        features = str(signed_runs["features"] / "audit")
        plain = drillbook("status", "--ledger", str(ledger), "--features", features, "--json")
        assert plain.returncode == 0, plain.stdout + plain.stderr
        assert [d["state"] for d in json.loads(plain.stdout)["drills"]] == ["ok"]  # the forgery "works"
        trusted = drillbook("status", "--ledger", str(ledger), "--features", features,
                            "--trusted-root", str(signed_runs["trusted_root"]))
        assert trusted.returncode == 1, trusted.stdout + trusted.stderr
        assert f"the ledger {ledger} is damaged" in trusted.stderr
        assert f"{ledger}: entries seq 1..2" in trusted.stderr and "vouched for by no verified signed head" \
            in trusted.stderr
        gate = drillbook("gate", "cadence", "--ledger", str(ledger), "--features", features,
                         "--trusted-root", str(signed_runs["trusted_root"]))
        assert gate.returncode == 1, gate.stdout + gate.stderr

    def test_a_rewrite_under_its_signed_head_names_ledger_and_seq(self, signed_runs: dict[str, Path],
                                                                   tmp_path: Path) -> None:
        ledger = _forged_copy(signed_runs, tmp_path, seq=2, keep_heads=None)
        proc = drillbook("status", "--ledger", str(ledger), "--features",
                         str(signed_runs["features"] / "audit"),
                         "--trusted-root", str(signed_runs["trusted_root"]))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"{ledger}: entry seq 2 (TST-01, run " in proc.stderr
        assert "now passed) was rewritten after run" in proc.stderr
        assert "signed head ledger.jsonl.heads/000000000002.json" in proc.stderr

    def test_a_rewrite_of_an_older_entry_is_caught_by_the_earlier_head(self, signed_runs: dict[str, Path],
                                                                        tmp_path: Path) -> None:
        """Entry 1 rewritten; the later head (which would mismatch too) deleted; head 1 still tells."""
        ledger = _forged_copy(signed_runs, tmp_path, seq=1, keep_heads=["000000000001.json"])
        proc = drillbook("status", "--ledger", str(ledger), "--features",
                         str(signed_runs["features"] / "audit"),
                         "--trusted-root", str(signed_runs["trusted_root"]))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"{ledger}: entry seq 1 (TST-01, run " in proc.stderr
        assert "signed head ledger.jsonl.heads/000000000001.json" in proc.stderr

    def test_the_bundle_carries_the_signed_heads_and_verifies_offline(self, signed_runs: dict[str, Path],
                                                                      tmp_path: Path) -> None:
        bundle = tmp_path / "e.zip"
        proc = drillbook("evidence", "export", "--out", str(signed_runs["out"]), "--since", "1d",
                         "--ledger", str(signed_runs["ledger"]), "--sign-sandbox", "-o", str(bundle))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        names = zipfile.ZipFile(bundle).namelist()
        assert {f"ledger/ledger.jsonl.heads/00000000000{n}.json" for n in (1, 2)} <= set(names)
        ok = drillbook("evidence", "verify", str(bundle), "--trusted-root",
                       str(tmp_path / "e.trusted_root.json"))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "ledger: 2 signed head(s) verified, entries up to seq 2 vouched for" in ok.stdout

    def test_a_bundle_of_a_rewritten_ledger_fails_with_the_trusted_root(self, signed_runs: dict[str, Path],
                                                                        tmp_path: Path) -> None:
        """Heads deleted before the export: the bundle's own checks pass, the trusted check does not."""
        ledger = _forged_copy(signed_runs, tmp_path / "forged", seq=2, keep_heads=["000000000001.json"])
        bundle = tmp_path / "e.zip"
        proc = drillbook("evidence", "export", "--out", str(signed_runs["out"]), "--since", "1d",
                         "--ledger", str(ledger), "--sign-sandbox", "-o", str(bundle))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        # Without a trust option the ledger checks pass: the only problem is that sigstore
        # production's default root does not know the sandbox signature.
        plain = json.loads(drillbook("evidence", "verify", str(bundle), "--json").stdout)
        assert [p["kind"] for p in plain["problems"]] == ["signature"]
        trusted = drillbook("evidence", "verify", str(bundle), "--trusted-root",
                            str(tmp_path / "e.trusted_root.json"), "--json")
        assert trusted.returncode == 1, trusted.stdout + trusted.stderr
        report = json.loads(trusted.stdout)
        assert report["signed"] and report["signer"] == "release-bot@drillbook-local.invalid"
        [problem] = report["problems"]
        assert (problem["kind"], problem["path"]) == ("ledger", "ledger/ledger.jsonl")
        assert problem["detail"].startswith("ledger/ledger.jsonl: entries seq 2 (run ")
        assert report["ledger_signed_heads"]["verified"] == 1

    def test_sign_without_an_ambient_identity_stops_before_anything_runs(self, signed_runs: dict[str, Path],
                                                                         tmp_path: Path) -> None:
        env = dict.fromkeys(("SIGSTORE_ID_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL"), "")
        out = tmp_path / "out"
        proc = drillbook("run", "--features", str(signed_runs["features"] / "audit"), "--out", str(out),
                         "--config", str(signed_runs["config"]), "--sign", env=env)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "--sign: no ambient OIDC identity" in proc.stderr
        assert not out.exists()
