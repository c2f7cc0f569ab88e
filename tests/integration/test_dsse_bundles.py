"""DSSE bundles without a flag (issue 13, item 2): ``verify signature`` and the release steps.

The real bundle is sigstore-conformance's Rekor v2 DSSE case from the shared fixtures (an in-toto
v1 statement, SLSA provenance v1 over ``a.txt``, staging instance), verified offline with the
staging root embedded in sigstore. Hostile variants are derived from it here, at run time: a byte
of the signed payload flipped, the subject swapped for another file's, the payloadType changed.
None of those can keep a valid signature, so payloads that are *genuinely signed* and still wrong
(not in-toto, a statement that does not parse, subjects about other files) come from the sandbox
signing authority, verified with the same unmodified sigstore verifier against its own root.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.signatures import BundleContent, verify_artifacts, verify_bundle
from checks.verdict import Outcome
from drillbook.cli import main
from drills.signing_authority import DEFAULT_IDENTITY, DEFAULT_ISSUER, SigningAuthority

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("DRILLBOOK_FIXTURES") or REPO.parent / "shared" / "fixtures")
SIGSTORE = FIXTURES / "supply_chain" / "sigstore"
CASE = SIGSTORE / "staging-dsse-rekor-v2"
ARTIFACT = CASE / "a.txt"
BUNDLE = CASE / "a.txt.intoto.sigstore.json"
BEACON = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/"
          "workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
GHA = "https://token.actions.githubusercontent.com"
A_SHA = "a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf"
SLSA = "SLSA provenance v1 (https://slsa.dev/provenance/v1)"

needs_fixtures = pytest.mark.skipif(
    not BUNDLE.is_file(), reason=f"shared sigstore fixtures not found at {SIGSTORE} (set DRILLBOOK_FIXTURES)")


def verify(artifact: Path, bundle: Path, capsys: pytest.CaptureFixture[str], *extra: str,
           identity: str = BEACON, issuer: str = GHA) -> tuple[int, dict[str, Any]]:
    """``drillbook verify signature … --staging --json``: the exit code and the one verdict."""
    capsys.readouterr()
    code = main(["verify", "signature", str(artifact), "--bundle", str(bundle), "--identity", identity,
                 "--issuer", issuer, "--staging", "--json", *extra])
    out = json.loads(capsys.readouterr().out)
    assert out["exit_code"] == code
    return code, out["verdicts"][0]


def derive(tmp_path: Path, change: Callable[[dict[str, Any]], None], *, name: str = "derived") -> Path:
    """The real DSSE bundle with ``change`` applied to its JSON, written under ``tmp_path``."""
    document = json.loads(BUNDLE.read_text())
    change(document)
    path = tmp_path / f"{name}.sigstore.json"
    path.write_text(json.dumps(document))
    return path


def with_statement(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """A bundle change that edits the signed in-toto statement (and so breaks the signature)."""
    def apply(document: dict[str, Any]) -> None:
        envelope = document["dsseEnvelope"]
        statement = json.loads(base64.b64decode(envelope["payload"]))
        change(statement)
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return apply


def flip_first_bit(b64: str) -> str:
    raw = base64.b64decode(b64)
    return base64.b64encode(bytes([raw[0] ^ 1]) + raw[1:]).decode()


# ---- the real bundle, as it comes -----------------------------------------------------------------


@needs_fixtures
class TestRealDsseBundle:
    def test_verifies_without_a_flag_and_names_the_predicate_type(
            self, capsys: pytest.CaptureFixture[str]) -> None:
        """Before issue 13 this said "does not verify: Missing bundle message signature"."""
        code, verdict = verify(ARTIFACT, BUNDLE, capsys)
        assert code == 0, verdict["message"]
        assert verdict["id"] == "signature.verified"
        assert verdict["message"] == f"{SLSA} for a.txt, signed by {BEACON} ({GHA})"
        ev = verdict["evidence"]
        assert ev["bundle_content"] == "DSSE envelope"
        assert ev["payload_type"] == "application/vnd.in-toto+json"
        assert ev["predicate_type"] == "https://slsa.dev/provenance/v1"
        assert ev["subjects"] == [{"name": "a.txt", "digest": {"sha256": A_SHA}}]
        assert ev["cert_identity"] == BEACON and ev["tlog_kind"] == "hashedrekord/0.0.2" and ev["tsa_times"]

    def test_the_text_output_names_it_too(self, capsys: pytest.CaptureFixture[str]) -> None:
        capsys.readouterr()
        assert main(["verify", "signature", str(ARTIFACT), "--bundle", str(BUNDLE), "--identity", BEACON,
                     "--issuer", GHA, "--staging"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"PASSED   signature.verified: {SLSA} for a.txt")
        assert "bundle_content: DSSE envelope" in out and f"predicate: {SLSA}" in out

    def test_attestation_flag_still_accepts_it(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, verdict = verify(ARTIFACT, BUNDLE, capsys, "--attestation")
        assert code == 0 and verdict["id"] == "attestation.verified"

    def test_attestation_flag_requires_an_attestation(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A genuine message-signature bundle passes alone, and fails when an attestation is required."""
        case = SIGSTORE / "staging-email-bundle-v0.3"
        artifact, bundle = case / "bundle_v3.txt", case / "bundle_v3.txt.sigstore"
        who, issuer = "william@yossarian.net", "https://github.com/login/oauth"
        assert verify(artifact, bundle, capsys, identity=who, issuer=issuer)[0] == 0
        code, verdict = verify(artifact, bundle, capsys, "--attestation", identity=who, issuer=issuer)
        assert code == 1
        assert verdict["message"] == (
            f"an attestation was required, but bundle {case / 'bundle_v3.txt.sigstore'} carries a plain "
            "message signature (messageSignature, no dsseEnvelope)")
        assert "drop --attestation" in verdict["evidence"]["hint"]

    def test_predicate_type_can_be_pinned(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert verify(ARTIFACT, BUNDLE, capsys, "--predicate-type", "https://slsa.dev/provenance/v1")[0] == 0
        code, verdict = verify(ARTIFACT, BUNDLE, capsys, "--predicate-type", "https://spdx.dev/Document")
        assert code == 1
        assert verdict["message"] == f"attestation {BUNDLE} is {SLSA}, expected predicate type " \
                                     "https://spdx.dev/Document"

    def test_the_subject_name_is_not_compared_only_the_digest(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """As in sigstore's own CLI: a renamed download is still the attested file."""
        renamed = tmp_path / "a-1.0.txt"
        renamed.write_bytes(ARTIFACT.read_bytes())
        code, verdict = verify(renamed, BUNDLE, capsys)
        assert code == 0 and verdict["message"].startswith(f"{SLSA} for a-1.0.txt, signed by")


# ---- bad input: each a verdict naming what and where -------------------------------------------------


@needs_fixtures
class TestRealBundleBadInput:
    def test_subjects_that_do_not_include_file(self, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
        """Signed by the right workflow, but about another file: FILE's digest and the subjects' names."""
        other = tmp_path / "a.txt"
        other.write_bytes(ARTIFACT.read_bytes() + b"x")
        sha = hashlib.sha256(other.read_bytes()).hexdigest()
        code, verdict = verify(other, BUNDLE, capsys)
        assert code == 1
        assert verdict["message"] == (
            f"{SLSA} in {BUNDLE} is signed by {BEACON}, but its subjects do not include {other} "
            f"(sha256 {sha}): it attests to a.txt (sha256 {A_SHA[:12]}…)")
        assert verdict["measured"] == [A_SHA] and verdict["expected"] == [sha]

    @pytest.mark.parametrize(("option", "value", "error"), [
        ("identity", "release-bot@example.com", "VerificationError"),
        ("issuer", "https://accounts.google.com", "VerificationError"),
    ])
    def test_wrong_identity_or_issuer(self, option: str, value: str, error: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
        code, verdict = verify(ARTIFACT, BUNDLE, capsys, **{option: value})
        assert code == 1 and verdict["evidence"]["error"] == error
        assert verdict["message"].startswith(f"attestation {BUNDLE} does not verify: ")
        assert value in verdict["message"]

    def test_production_root_does_not_trust_a_staging_attestation(
            self, capsys: pytest.CaptureFixture[str]) -> None:
        capsys.readouterr()
        assert main(["verify", "signature", str(ARTIFACT), "--bundle", str(BUNDLE), "--identity", BEACON,
                     "--issuer", GHA]) == 1
        assert "does not verify" in capsys.readouterr().out

    @pytest.mark.parametrize("name, change", [
        ("payload edited", with_statement(lambda s: s["predicate"].update(note="added"))),
        ("subjects swapped", with_statement(lambda s: s.update(subject=[
            {"name": "evil.txt", "digest": {"sha256": hashlib.sha256(b"evil").hexdigest()}}]))),
        ("payloadType changed", lambda d: d["dsseEnvelope"].update(payloadType="application/json")),
        ("signature bit flipped", lambda d: d["dsseEnvelope"]["signatures"][0].update(
            sig=flip_first_bit(d["dsseEnvelope"]["signatures"][0]["sig"]))),
    ])
    def test_a_tampered_envelope_never_verifies_and_is_never_read(
            self, name: str, change: Callable[[dict[str, Any]], None], tmp_path: Path,
            capsys: pytest.CaptureFixture[str]) -> None:
        """Whatever was changed, the verdict is the signature's: unsigned content is not interpreted."""
        bundle = derive(tmp_path, change)
        evil = tmp_path / "evil.txt"
        evil.write_bytes(b"evil")
        for artifact in (ARTIFACT, evil):
            code, verdict = verify(artifact, bundle, capsys)
            assert code == 1, (name, verdict["message"])
            assert verdict["message"].startswith(f"attestation {bundle} does not verify: "), name
            assert verdict["evidence"]["error"] == "VerificationError"
            assert "subjects" not in verdict["evidence"]  # the payload was not read

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(position=st.integers(min_value=0), bit=st.integers(0, 7))
    def test_any_flipped_payload_bit_fails(self, tmp_path: Path, position: int, bit: int) -> None:
        document = json.loads(BUNDLE.read_text())
        payload = bytearray(base64.b64decode(document["dsseEnvelope"]["payload"]))
        payload[position % len(payload)] ^= 1 << bit
        document["dsseEnvelope"]["payload"] = base64.b64encode(bytes(payload)).decode()
        bundle = tmp_path / "flipped.sigstore.json"
        bundle.write_text(json.dumps(document))
        verdict = verify_bundle(ARTIFACT, bundle, trusted_root=SIGSTORE / "trusted_root" /
                                "staging.trusted_root.json", identity=BEACON, issuer=GHA)
        assert verdict.outcome is Outcome.FAILED and verdict.evidence["error"] == "VerificationError"

    def test_an_unreadable_bundle_is_still_a_usage_error(self, tmp_path: Path) -> None:
        bundle = tmp_path / "gone.sigstore.json"
        assert main(["verify", "signature", str(ARTIFACT), "--bundle", str(bundle), "--identity", BEACON,
                     "--issuer", GHA, "--staging"]) == 2


# ---- genuinely signed, still wrong: the sandbox authority ---------------------------------------------


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> tuple[SigningAuthority, Path]:
    directory = tmp_path_factory.mktemp("dsse-authority")
    auth = SigningAuthority.create("dsse")
    return auth, auth.write_trusted_root(directory / "root.json")


def sandbox_verify(artifact: Path, bundle: dict[str, Any], root: Path, capsys: pytest.CaptureFixture[str],
                   *extra: str) -> tuple[int, dict[str, Any], Path]:
    path = artifact.with_name(artifact.name + ".sigstore.json")
    path.write_text(json.dumps(bundle))
    capsys.readouterr()
    code = main(["verify", "signature", str(artifact), "--identity", DEFAULT_IDENTITY, "--issuer",
                 DEFAULT_ISSUER, "--trusted-root", str(root), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)["verdicts"][0], path


class TestSignedButNotAnAttestationOfFile:
    def test_a_payload_that_is_not_in_toto(self, tmp_path: Path, authority: tuple[SigningAuthority, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
        auth, root = authority
        artifact = tmp_path / "app.whl"
        artifact.write_bytes(b"wheel")
        bundle = auth.envelope(b'{"hello": "world"}', payload_type="application/json")
        code, verdict, path = sandbox_verify(artifact, bundle, root, capsys)
        assert code == 1
        assert verdict["message"] == (
            f"attestation {path} is signed by {DEFAULT_IDENTITY}, but its payload is not an in-toto "
            "statement: dsseEnvelope.payloadType is 'application/json', expected "
            "'application/vnd.in-toto+json'")
        assert "in-toto" in verdict["evidence"]["hint"]

    @pytest.mark.parametrize(("payload", "where"), [
        (b"not json", "$: the payload is not JSON"),
        (json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "app.whl"}],
                     "predicateType": "https://slsa.dev/provenance/v1"}).encode(),
         "$.subject[0].digest: missing: every subject needs a digest"),
        (json.dumps({"_type": "https://in-toto.io/Statement/v1",
                     "subject": [{"name": "app.whl", "digest": {"sha256": "abc"}}],
                     "predicateType": "https://slsa.dev/provenance/v1"}).encode(),
         "$.subject[0].digest.sha256: 'abc' is not a sha256 digest (64 hex digits)"),
        (json.dumps({"_type": "https://example.com/Statement", "subject": []}).encode(),
         "$._type: 'https://example.com/Statement' is not an in-toto Statement type"),
    ])
    def test_a_statement_that_does_not_parse_names_the_json_path(
            self, payload: bytes, where: str, tmp_path: Path, authority: tuple[SigningAuthority, Path],
            capsys: pytest.CaptureFixture[str]) -> None:
        auth, root = authority
        artifact = tmp_path / "app.whl"
        artifact.write_bytes(b"wheel")
        code, verdict, path = sandbox_verify(artifact, auth.envelope(payload), root, capsys)
        assert code == 1
        assert verdict["message"].startswith(
            f"attestation {path} is signed by {DEFAULT_IDENTITY}, but its payload is not a valid in-toto "
            f"statement: {where}")
        assert verdict["message"].endswith("(in the base64 dsseEnvelope.payload)")
        assert verdict["evidence"]["statement_error_path"] == where.split(":")[0]

    def test_many_subjects_none_of_them_file(self, tmp_path: Path, authority: tuple[SigningAuthority, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
        auth, root = authority
        artifact = tmp_path / "app.whl"
        artifact.write_bytes(b"wheel")
        bundle = auth.attest({f"lib{i}.so": b"%d" % i for i in range(10)})
        code, verdict, _ = sandbox_verify(artifact, bundle, root, capsys)
        assert code == 1
        message = verdict["message"]
        assert f"do not include {artifact} (sha256 {hashlib.sha256(b'wheel').hexdigest()})" in message
        assert "lib0.so (sha256 " in message and "and 2 more (all in the evidence)" in message
        assert len(verdict["evidence"]["subjects"]) == 10

    def test_other_predicate_types_are_named(self, tmp_path: Path, authority: tuple[SigningAuthority, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
        auth, root = authority
        artifact = tmp_path / "app.whl"
        artifact.write_bytes(b"wheel")
        for uri, said in (("https://spdx.dev/Document", "SPDX SBOM (https://spdx.dev/Document)"),
                          ("https://example.com/scan/v9", "in-toto attestation (predicate type "
                                                          "https://example.com/scan/v9)")):
            bundle = auth.attest({"app.whl": b"wheel"}, predicate_type=uri)
            code, verdict, _ = sandbox_verify(artifact, bundle, root, capsys)
            assert code == 0 and verdict["message"].startswith(f"{said} for app.whl, signed by")

    def test_a_signature_can_still_be_required_where_drillbook_writes_one(
            self, tmp_path: Path, authority: tuple[SigningAuthority, Path]) -> None:
        """Evidence manifests are signed by drillbook itself: an attestation there is refused."""
        auth, root = authority
        artifact = tmp_path / "manifest.json"
        artifact.write_bytes(b"{}")
        bundle = tmp_path / "manifest.json.sigstore.json"
        bundle.write_text(json.dumps(auth.attest({"manifest.json": b"{}"})))
        verdict = verify_bundle(artifact, bundle, trusted_root=root, identity=DEFAULT_IDENTITY,
                                issuer=DEFAULT_ISSUER, require=BundleContent.MESSAGE_SIGNATURE)
        assert verdict.outcome is Outcome.FAILED and "carries a DSSE attestation" in verdict.message
        assert verify_bundle(artifact, bundle, trusted_root=root, identity=DEFAULT_IDENTITY,
                             issuer=DEFAULT_ISSUER).outcome is Outcome.PASSED

    def test_a_release_may_mix_signatures_and_attestations(
            self, tmp_path: Path, authority: tuple[SigningAuthority, Path]) -> None:
        auth, root = authority
        signed, attested = tmp_path / "app.tar.gz", tmp_path / "app.whl"
        signed.write_bytes(b"sdist")
        attested.write_bytes(b"wheel")
        auth.sign_file(signed)
        (tmp_path / "app.whl.sigstore.json").write_text(json.dumps(auth.attest({"app.whl": b"wheel"})))
        verdict = verify_artifacts([signed, attested], trusted_root=root, identity=DEFAULT_IDENTITY,
                                   issuer=DEFAULT_ISSUER)
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert verdict.message == ("2 artifact signature(s) verified (1 by attestation: SLSA provenance v1 "
                                   "(https://slsa.dev/provenance/v1))")


# ---- the release steps, through drillbook run ---------------------------------------------------------


FEATURE = f"""@sigstore
Feature: Releases whose artifacts carry attestations
  Scenario: The attested release
    Given the release "attested"
    And the trusted root "staging"
    And signatures are expected from identity "{BEACON}" and issuer "{GHA}"
    Then every artifact has a valid signature from the expected identity

  Scenario: The altered release
    Given the release "altered"
    And the trusted root "staging"
    And signatures are expected from identity "{BEACON}" and issuer "{GHA}"
    Then every artifact has a valid signature from the expected identity
"""


@needs_fixtures
def test_release_steps_verify_dsse_bundles_as_attestations(tmp_path: Path) -> None:
    """A release whose ``a.txt.sigstore.json`` is the real DSSE bundle passes; altered, it fails.

    The altered one fails on its subject: signed by the right workflow, about other bytes.
    """
    for name, data in (("attested", ARTIFACT.read_bytes()), ("altered", ARTIFACT.read_bytes() + b"x")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "a.txt").write_bytes(data)
        (folder / "a.txt.sigstore.json").write_bytes(BUNDLE.read_bytes())
    config = tmp_path / "drillbook.toml"
    config.write_text("".join(f'[targets.{n}]\nkind = "directory"\npath = "{tmp_path / n}"\n\n'
                              for n in ("attested", "altered")))
    feature = tmp_path / "dsse.feature"
    feature.write_text(FEATURE)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "drillbook.cli", "run", "--config", str(config), "--features",
                          str(feature), "--out", str(out)], capture_output=True, text=True, timeout=300,
                         cwd=REPO, check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    run_dir = next(p for p in out.iterdir() if p.is_dir() and not p.is_symlink())
    scenarios = {s["scenario"]: s for s in json.loads((run_dir / "results.json").read_text())["scenarios"]}
    assert {name: s["outcome"] for name, s in scenarios.items()} == {
        "The attested release": "passed", "The altered release": "failed"}
    passed = next(v for v in scenarios["The attested release"]["verdicts"] if v["id"] == "release.signatures")
    assert passed["message"] == f"1 artifact signature(s) verified (1 by attestation: {SLSA})"
    failed = next(v for v in scenarios["The altered release"]["verdicts"] if v["id"] == "release.signatures")
    assert "its subjects do not include" in failed["message"] and f"a.txt (sha256 {A_SHA[:12]}…)" in \
        failed["message"]
