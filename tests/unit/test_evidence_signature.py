"""Signed evidence bundles: the manifest's sigstore bundle is checked against a pinned root.

Signatures come from the sandbox signing authority (a real private CA, CT and
log keys issuing sigstore bundles), verified by sigstore's own Verifier.
Keyless signing against public-good sigstore needs a CI identity and the
network, neither of which a test here has.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.errors import ConfigError
from checks.signatures import load_trusted_root
from drills.signing_authority import DEFAULT_IDENTITY, DEFAULT_ISSUER, SigningAuthority
from reports.evidence import (
    MANIFEST,
    SIGNATURE,
    Member,
    canonical_json,
    canonical_zip,
    export_bundle,
    verify_bundle,
)
from reports.evidence_signature import check_signature, keyless_signer
from tests.unit.test_evidence import make_run, members_of


@pytest.fixture(scope="module")
def authority() -> SigningAuthority:
    return SigningAuthority.create("evidence-test")


@pytest.fixture(scope="module")
def root(authority: SigningAuthority, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return authority.write_trusted_root(tmp_path_factory.mktemp("root") / "trusted_root.json")


@pytest.fixture(scope="module")
def signed(authority: SigningAuthority, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    def sign(data: bytes) -> bytes:
        return json.dumps(authority.sign(data)).encode()

    return export_bundle([make_run(tmp_path_factory.mktemp("runs"))], sign=sign)


def test_signed_bundle_verifies_with_its_root_and_names_the_signer(signed: bytes, root: Path) -> None:
    report = verify_bundle(signed)
    assert report.ok, report.problems
    check = check_signature(report, trusted_root=root)
    assert check.signed and check.problem is None
    assert (check.signer, check.issuer) == (DEFAULT_IDENTITY, DEFAULT_ISSUER)
    assert check.evidence["trusted_root_sha256"]


def test_expected_identity_and_issuer_pass(signed: bytes, root: Path) -> None:
    check = check_signature(verify_bundle(signed), trusted_root=root,
                            identity=DEFAULT_IDENTITY, issuer=DEFAULT_ISSUER)
    assert check.problem is None


def test_another_identity_is_refused(signed: bytes, root: Path) -> None:
    check = check_signature(verify_bundle(signed), trusted_root=root,
                            identity="someone@else.example", issuer=DEFAULT_ISSUER)
    assert check.problem and "does not verify" in check.problem


def test_identity_without_issuer_is_refused(signed: bytes, root: Path) -> None:
    check = check_signature(verify_bundle(signed), trusted_root=root, identity=DEFAULT_IDENTITY)
    assert check.problem and "--issuer" in check.problem


def test_another_authoritys_root_is_refused(signed: bytes, tmp_path: Path) -> None:
    other = SigningAuthority.create("other").write_trusted_root(tmp_path / "other.json")
    check = check_signature(verify_bundle(signed), trusted_root=other)
    assert check.signed and check.problem


def test_the_production_root_refuses_a_sandbox_signature(signed: bytes) -> None:
    from checks.signatures import embedded_root_path

    check = check_signature(verify_bundle(signed), trusted_root=load_trusted_root(
        embedded_root_path("production")))
    assert check.problem


def test_unsigned_bundle_with_an_expected_identity_is_unverified(tmp_path: Path, root: Path) -> None:
    unsigned = verify_bundle(export_bundle([make_run(tmp_path)]))
    assert check_signature(unsigned, trusted_root=root).problem is None
    check = check_signature(unsigned, trusted_root=root, identity=DEFAULT_IDENTITY, issuer=DEFAULT_ISSUER)
    assert not check.signed and check.problem and "not signed" in check.problem


def test_a_signature_over_another_manifest_is_refused(signed: bytes, root: Path,
                                                      authority: SigningAuthority) -> None:
    """A forger re-signs nothing: swapping in a valid signature of other bytes fails."""
    members = members_of(signed)
    forged = [Member(m.path, canonical_json(json.dumps(authority.sign(b"another manifest")).encode()))
              if m.path == SIGNATURE else m for m in members]
    report = verify_bundle(canonical_zip(forged))
    assert report.ok  # the hashes still match: only the signature can catch it
    assert check_signature(report, trusted_root=root).problem


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_byte_change_of_the_signature_or_manifest_fails(signed: bytes, root: Path,
                                                            data: st.DataObject) -> None:
    members = members_of(signed)
    target = data.draw(st.sampled_from([MANIFEST, SIGNATURE]))
    body = next(m.data for m in members if m.path == target)
    at = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = body[:at] + bytes([body[at] ^ flip]) + body[at + 1:]
    tampered = canonical_zip([Member(m.path, changed) if m.path == target else m for m in members])
    report = verify_bundle(tampered)
    assert not report.ok or check_signature(report, trusted_root=root).problem


def test_a_reformatted_signature_is_named(signed: bytes) -> None:
    """Same JSON, other spelling: the signature member must be byte-for-byte as exported."""
    members = members_of(signed)
    spaced = [Member(m.path, json.dumps(json.loads(m.data), indent=1).encode())
              if m.path == SIGNATURE else m for m in members]
    problems = verify_bundle(canonical_zip(spaced)).problems
    assert [(p.kind, p.path) for p in problems] == [("modified", SIGNATURE)]


def test_signature_member_is_second_and_listed_nowhere_else(signed: bytes) -> None:
    names = [m.path for m in members_of(signed)]
    assert names[:2] == [MANIFEST, SIGNATURE]
    manifest = json.loads(members_of(signed)[0].data)
    assert SIGNATURE not in {f["path"] for f in manifest["files"]}


def test_a_malformed_token_is_a_usage_error() -> None:
    with pytest.raises(ConfigError):
        keyless_signer("not-a-jwt")


def _stripped(signed: bytes) -> bytes:
    """The signed bundle with its signature member removed: every hash still matches."""
    return canonical_zip([m for m in members_of(signed) if m.path != SIGNATURE])


def test_a_removed_signature_verifies_as_unsigned_without_trust_options(signed: bytes, root: Path) -> None:
    report = verify_bundle(_stripped(signed))
    assert report.ok, report.problems
    check = check_signature(report, trusted_root=root)
    assert (check.signed, check.problem) == (False, None)


@pytest.mark.parametrize("asked", ["--trusted-root", "--staging", "--identity", "--issuer",
                                   "--identity/--issuer"])
def test_any_trust_option_makes_a_removed_signature_fail(signed: bytes, root: Path, asked: str) -> None:
    """Asking for trust in any way turns "unsigned" from a remark into a failure naming the option."""
    check = check_signature(verify_bundle(_stripped(signed)), trusted_root=root, trust_asked=asked)
    assert not check.signed
    assert check.problem == (f"signature missing: the bundle is not signed (no {SIGNATURE}), but {asked} "
                             "asked for a trusted signature: treat it as unverified")


def test_an_expected_identity_alone_asks_for_trust(signed: bytes, root: Path) -> None:
    check = check_signature(verify_bundle(_stripped(signed)), trusted_root=root, issuer=DEFAULT_ISSUER)
    assert check.problem and "signature missing" in check.problem and "--identity/--issuer" in check.problem
