"""checks/signatures against real public bundles (shared fixtures) and the sandbox authority.

Nothing here touches the network or ``~/.cache``: every trusted root is a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.signatures import (
    GitHubWorkflow,
    embedded_root_path,
    find_bundle,
    load_trusted_root,
    verify_artifacts,
    verify_attestation,
    verify_bundle,
)
from checks.verdict import Outcome
from drillbook.cli import main
from drills.signing_authority import DEFAULT_IDENTITY, DEFAULT_ISSUER, GitHubClaims, SigningAuthority

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("DRILLBOOK_FIXTURES") or REPO.parent / "shared" / "fixtures")
SIGSTORE = FIXTURES / "supply_chain" / "sigstore"
needs_fixtures = pytest.mark.skipif(
    not (SIGSTORE / "cases.json").is_file(),
    reason=f"shared sigstore fixtures not found at {SIGSTORE} (set DRILLBOOK_FIXTURES)",
)


def _cases() -> list[dict[str, Any]]:
    if not (SIGSTORE / "cases.json").is_file():
        return []
    return list(json.loads((SIGSTORE / "cases.json").read_text())["cases"])


def _run_case(case: dict[str, Any], **override: Any) -> Any:
    kw: dict[str, Any] = {"trusted_root": SIGSTORE / case["trusted_root"], "identity": case["identity"],
                          "issuer": case["issuer"]}
    kw.update(override)
    artifact = override.pop("artifact", None) or SIGSTORE / case["artifact"]
    kw.pop("artifact", None)
    if case["kind"] == "dsse":
        return verify_attestation(SIGSTORE / case["bundle"], [artifact], **kw)
    return verify_bundle(artifact, SIGSTORE / case["bundle"], **kw)


# ---- the real fixture cases -------------------------------------------------------------


@needs_fixtures
@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["id"])
def test_fixture_case_gives_exactly_the_expected_outcome(case: dict[str, Any]) -> None:
    verdict = _run_case(case)
    expected = Outcome.PASSED if case["expected"] == "pass" else Outcome.FAILED
    assert verdict.outcome is expected, verdict.message
    assert verdict.evidence["trusted_root_sha256"] == json.loads(
        (SIGSTORE / "cases.json").read_text())["trusted_roots"][case["trusted_root"]]["sha256"]
    if expected is Outcome.PASSED:
        assert verdict.evidence["cert_identity"] == case["identity"]
        assert verdict.evidence["cert_oidc_issuer"] == case["issuer"]
        assert verdict.evidence["tlog_index"] >= 0
        # Rekor v1 gives an integrated time; Rekor v2 only a TSA time.
        assert verdict.evidence.get("tlog_integrated_time") or verdict.evidence.get("tsa_times")


@needs_fixtures
def test_fixture_failures_are_classified_by_exception_class() -> None:
    by_id = {c["id"]: c for c in _cases()}
    assert _run_case(by_id["staging-cve-2022-36056_fail"]).evidence["error"] == "VerificationError"
    assert _run_case(by_id["unsupported-media-type_fail"]).evidence["error"] == "InvalidBundle"


@needs_fixtures
@pytest.mark.parametrize("case", [c for c in _cases() if c["expected"] == "pass"], ids=lambda c: c["id"])
def test_fixture_negative_variants_fail(case: dict[str, Any], tmp_path: Path) -> None:
    tampered = tmp_path / "artifact"
    tampered.write_bytes((SIGSTORE / case["artifact"]).read_bytes() + b"x")
    other = "staging" if "production" in case["trusted_root"] else "production"
    variants: dict[str, dict[str, Any]] = {
        "tampered": {"artifact": tampered},
        "identity": {"identity": "someone-else@example.com"},
        "issuer": {"issuer": "https://accounts.google.com"},
        "other root": {"trusted_root": SIGSTORE / "trusted_root" / f"{other}.trusted_root.json"},
    }
    for name, override in variants.items():
        verdict = _run_case(case, **override)
        assert verdict.outcome is Outcome.FAILED, (name, verdict.message)


@needs_fixtures
def test_embedded_roots_are_the_fixture_roots() -> None:
    meta = json.loads((SIGSTORE / "cases.json").read_text())["trusted_roots"]
    for instance in ("production", "staging"):
        loaded = load_trusted_root(embedded_root_path(instance))
        assert loaded.sha256 == meta[f"trusted_root/{instance}.trusted_root.json"]["sha256"]


@needs_fixtures
def test_github_workflow_policy_on_a_real_bundle() -> None:
    case = next(c for c in _cases() if c["id"] == "prod-hashedrekord-v0.3")
    repo = "sigstore-conformance/extremely-dangerous-public-oidc-beacon"
    good = _run_case(case, github=GitHubWorkflow(repository=repo, ref="refs/heads/main"))
    assert good.outcome is Outcome.PASSED, good.message
    for wrong in (GitHubWorkflow(repository="evil/fork"), GitHubWorkflow(ref="refs/heads/other")):
        assert _run_case(case, github=wrong).outcome is Outcome.FAILED


# ---- the sandbox authority ---------------------------------------------------------------


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> tuple[SigningAuthority, Path, Path]:
    """One authority, its root, and another instance's root."""
    directory = tmp_path_factory.mktemp("authority")
    auth = SigningAuthority.create("unit")
    other = SigningAuthority.create("unit-other")
    return auth, auth.write_trusted_root(directory / "root.json"), other.write_trusted_root(
        directory / "other.json")


@pytest.fixture(scope="module")
def signed_once(authority: tuple[SigningAuthority, Path, Path]) -> tuple[bytes, str]:
    """An artifact and its bundle JSON, made once."""
    data = b"artifact bytes\n"
    return data, json.dumps(authority[0].sign(data))


def _signed(tmp_path: Path, auth: SigningAuthority, data: bytes = b"artifact bytes\n",
            **kw: Any) -> tuple[Path, Path]:
    artifact = tmp_path / "app-1.0.tar.gz"
    artifact.write_bytes(data)
    return artifact, auth.sign_file(artifact, **kw)


def test_sandbox_bundle_verifies_and_records_evidence(
    tmp_path: Path, authority: tuple[SigningAuthority, Path, Path]
) -> None:
    auth, root, _ = authority
    artifact, bundle = _signed(tmp_path, auth)
    verdict = verify_bundle(artifact, bundle, trusted_root=root, identity=DEFAULT_IDENTITY,
                            issuer=DEFAULT_ISSUER)
    assert verdict.outcome is Outcome.PASSED, verdict.message
    ev = verdict.evidence
    assert ev["cert_identity"] == DEFAULT_IDENTITY and ev["cert_oidc_issuer"] == DEFAULT_ISSUER
    assert ev["tlog_kind"] == "hashedrekord/0.0.1" and ev["tlog_integrated_time"]
    assert ev["trusted_root"] == str(root) and len(ev["trusted_root_sha256"]) == 64
    assert find_bundle(artifact) == bundle


def test_sandbox_bundle_rejected_with_another_root_and_with_production(
    tmp_path: Path, authority: tuple[SigningAuthority, Path, Path]
) -> None:
    auth, _, other = authority
    artifact, bundle = _signed(tmp_path, auth)
    for root in (other, embedded_root_path("production"), embedded_root_path("staging")):
        verdict = verify_bundle(artifact, bundle, trusted_root=root, identity=DEFAULT_IDENTITY,
                                issuer=DEFAULT_ISSUER)
        assert verdict.outcome is Outcome.FAILED and verdict.evidence["error"] == "CertValidationError"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=256), flip=st.integers(min_value=0), bit=st.integers(0, 7))
def test_any_artifact_byte_flip_fails(
    tmp_path: Path, authority: tuple[SigningAuthority, Path, Path], data: bytes, flip: int, bit: int
) -> None:
    auth, root, _ = authority
    artifact, bundle = _signed(tmp_path, auth, data)
    changed = bytearray(data)
    changed[flip % len(changed)] ^= 1 << bit
    artifact.write_bytes(bytes(changed))
    verdict = verify_bundle(artifact, bundle, trusted_root=root, identity=DEFAULT_IDENTITY,
                            issuer=DEFAULT_ISSUER)
    assert verdict.outcome is Outcome.FAILED


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(identity=st.emails() | st.just("https://github.com/acme/app/.github/workflows/r.yml@refs/tags/v1"),
       issuer=st.sampled_from(["https://token.actions.githubusercontent.com", "https://accounts.google.com",
                               DEFAULT_ISSUER + "/", "https://oidc.drillbook-local.invalid.evil"]))
def test_wrong_identity_or_issuer_fails(
    tmp_path: Path, authority: tuple[SigningAuthority, Path, Path], identity: str, issuer: str
) -> None:
    auth, root, _ = authority
    artifact, bundle = _signed(tmp_path, auth)
    if identity != DEFAULT_IDENTITY:
        wrong_identity = verify_bundle(artifact, bundle, trusted_root=root, identity=identity,
                                       issuer=DEFAULT_ISSUER)
        assert wrong_identity.outcome is Outcome.FAILED
    wrong_issuer = verify_bundle(artifact, bundle, trusted_root=root, identity=DEFAULT_IDENTITY,
                                 issuer=issuer)
    assert wrong_issuer.outcome is Outcome.FAILED


def _leaf_paths(bundle: dict[str, Any]) -> list[tuple[str, ...]]:
    """Every leaf of the bundle a mutation may change, in a fixed order."""
    paths: list[tuple[str, ...]] = []

    def walk(node: Any, prefix: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*prefix, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*prefix, str(i)))
        else:
            paths.append(prefix)

    walk(bundle, ())
    # Fields the verifier documents as unchecked (SANDBOX-SIGSTORE.md): the bundle's logId is
    # only a keyring hint, and inclusionProof.treeSize may change without changing the path length.
    return sorted(p for p in paths if "logId" not in p and p[-1] != "treeSize")


def _set(doc: Any, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[int(key)] if isinstance(doc, list) else doc[key]
    last = path[-1]
    if isinstance(doc, list):
        doc[int(last)] = value
    else:
        doc[last] = value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(min_value=0), bit=st.integers(min_value=0),
       value=st.one_of(st.text(max_size=20), st.integers(), st.none()))
def test_corrupted_bundle_fields_never_pass(
    tmp_path: Path, authority: tuple[SigningAuthority, Path, Path], signed_once: tuple[bytes, str],
    which: int, bit: int, value: Any,
) -> None:
    """Flip one bit of any base64 field, or replace any leaf value: never a pass, never a crash."""
    import base64

    _, root, _ = authority
    data_bytes, pristine = signed_once
    artifact = tmp_path / "app-1.0.tar.gz"
    artifact.write_bytes(data_bytes)
    bundle = tmp_path / "app-1.0.tar.gz.sigstore.json"
    # The same three draws whatever the bundle holds: the data hypothesis generates never
    # depends on the document (a signature's length varies by a byte from one signing to the next).
    document = json.loads(pristine)
    paths = _leaf_paths(document)
    path = paths[which % len(paths)]
    original: Any = document
    for key in path:
        original = original[int(key)] if isinstance(original, list) else original[key]
    replacement: Any
    decoded: bytes | None = None
    if isinstance(original, str):
        try:
            decoded = base64.b64decode(original, validate=True)
        except ValueError:
            decoded = None
    if decoded:
        index = bit % (len(decoded) * 8)
        changed = bytearray(decoded)
        changed[index // 8] ^= 1 << (index % 8)
        replacement = base64.b64encode(bytes(changed)).decode()
    else:
        replacement = value
        if replacement == original:
            return
    _set(document, path, replacement)
    bundle.write_text(json.dumps(document))
    verdict = verify_bundle(artifact, bundle, trusted_root=root, identity=DEFAULT_IDENTITY,
                            issuer=DEFAULT_ISSUER)
    assert verdict.outcome is Outcome.FAILED, (path, verdict.message)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_garbage_bundle_json_fails_naming_the_bundle(
    tmp_path: Path, authority: tuple[SigningAuthority, Path, Path], text: str
) -> None:
    _, root, _ = authority
    artifact = tmp_path / "a.bin"
    artifact.write_bytes(b"x")
    bundle = tmp_path / "a.bin.sigstore.json"
    bundle.write_text(text, encoding="utf-8")
    verdict = verify_bundle(artifact, bundle, trusted_root=root, identity=DEFAULT_IDENTITY,
                            issuer=DEFAULT_ISSUER)
    assert verdict.outcome is Outcome.FAILED and str(bundle) in verdict.message


def test_truncated_bundle_fails(tmp_path: Path, authority: tuple[SigningAuthority, Path, Path]) -> None:
    auth, root, _ = authority
    artifact, bundle = _signed(tmp_path, auth)
    raw = bundle.read_bytes()
    for cut in (0, 1, len(raw) // 2, len(raw) - 2):
        bundle.write_bytes(raw[:cut])
        verdict = verify_bundle(artifact, bundle, trusted_root=root, identity=DEFAULT_IDENTITY,
                                issuer=DEFAULT_ISSUER)
        assert verdict.outcome is Outcome.FAILED and verdict.evidence["error"] == "InvalidBundle"
    bundle.write_text("{}")
    assert verify_bundle(artifact, bundle, trusted_root=root, identity=DEFAULT_IDENTITY,
                         issuer=DEFAULT_ISSUER).outcome is Outcome.FAILED


def test_tlog_entry_from_another_artifact_is_inconsistent(
    tmp_path: Path, authority: tuple[SigningAuthority, Path, Path]
) -> None:
    """The CVE-2022-36056 shape, built from the sandbox."""
    auth, root, _ = authority
    artifact, bundle = _signed(tmp_path, auth, b"one")
    other = json.loads(json.dumps(auth.sign(b"two")))
    document = json.loads(bundle.read_text())
    document["verificationMaterial"]["tlogEntries"] = other["verificationMaterial"]["tlogEntries"]
    bundle.write_text(json.dumps(document))
    verdict = verify_bundle(artifact, bundle, trusted_root=root, identity=DEFAULT_IDENTITY,
                            issuer=DEFAULT_ISSUER)
    assert verdict.outcome is Outcome.FAILED and verdict.evidence["error"] == "VerificationError"


def test_github_claims_from_the_sandbox(
    tmp_path: Path, authority: tuple[SigningAuthority, Path, Path]
) -> None:
    auth, root, _ = authority
    identity = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.0"
    issuer = "https://token.actions.githubusercontent.com"
    artifact, bundle = _signed(tmp_path, auth, identity=identity, issuer=issuer,
                               github=GitHubClaims(repository="acme/app", ref="refs/tags/v1.2.0"))
    ok = GitHubWorkflow(repository="acme/app", ref="refs/tags/v1.2.0", trigger="push")
    assert verify_bundle(artifact, bundle, trusted_root=root, identity=identity, issuer=issuer,
                         github=ok).outcome is Outcome.PASSED
    for wrong in (GitHubWorkflow(repository="acme/fork"), GitHubWorkflow(ref="refs/heads/main"),
                  GitHubWorkflow(trigger="workflow_dispatch")):
        assert verify_bundle(artifact, bundle, trusted_root=root, identity=identity, issuer=issuer,
                             github=wrong).outcome is Outcome.FAILED


def test_attestation_subjects_must_cover_the_artifacts(
    tmp_path: Path, authority: tuple[SigningAuthority, Path, Path]
) -> None:
    auth, root, _ = authority
    a, b = tmp_path / "a.whl", tmp_path / "b.tar.gz"
    a.write_bytes(b"wheel")
    b.write_bytes(b"sdist")
    bundle = tmp_path / "provenance.intoto.sigstore.json"
    bundle.write_text(json.dumps(auth.attest({"a.whl": b"wheel"})))
    kw: dict[str, Any] = {"trusted_root": root, "identity": DEFAULT_IDENTITY, "issuer": DEFAULT_ISSUER}
    assert verify_attestation(bundle, [a], **kw).outcome is Outcome.PASSED
    missing = verify_attestation(bundle, [a, b], **kw)
    assert missing.outcome is Outcome.FAILED and str(b) in missing.message
    assert verify_attestation(bundle, [a], predicate_type="https://example.com/other", **kw).outcome \
        is Outcome.FAILED
    a.write_bytes(b"wheel!")
    assert verify_attestation(bundle, [a], **kw).outcome is Outcome.FAILED
    # A plain message-signature bundle is not an attestation.
    plain = tmp_path / "plain.sigstore.json"
    plain.write_text(json.dumps(auth.sign(b"wheel")))
    refused = verify_attestation(plain, [a], **kw)
    assert refused.outcome is Outcome.FAILED and "an attestation was required" in refused.message


# The statement parser's own properties are in test_intoto.py.



# ---- unreadable and missing inputs ---------------------------------------------------------


def test_missing_bundle_is_failed_not_skipped(
    tmp_path: Path, authority: tuple[SigningAuthority, Path, Path]
) -> None:
    auth, root, _ = authority
    signed, _ = _signed(tmp_path, auth)
    unsigned = tmp_path / "chart-0.1.0.tgz"
    unsigned.write_bytes(b"chart")
    verdict = verify_artifacts([signed, unsigned], trusted_root=root, identity=DEFAULT_IDENTITY,
                               issuer=DEFAULT_ISSUER)
    assert verdict.outcome is Outcome.FAILED and "chart-0.1.0.tgz has no bundle" in verdict.message
    assert verdict.measured == 1
    empty = verify_artifacts([], trusted_root=root, identity=DEFAULT_IDENTITY, issuer=DEFAULT_ISSUER)
    assert empty.outcome is Outcome.FAILED


def test_unreadable_inputs_are_errors_naming_the_file(
    tmp_path: Path, authority: tuple[SigningAuthority, Path, Path]
) -> None:
    auth, root, _ = authority
    artifact, bundle = _signed(tmp_path, auth)
    kw: dict[str, Any] = {"identity": DEFAULT_IDENTITY, "issuer": DEFAULT_ISSUER}
    gone = tmp_path / "gone.json"
    v = verify_bundle(artifact, bundle, trusted_root=gone, **kw)
    assert v.outcome is Outcome.ERROR and str(gone) in v.message
    v = verify_bundle(tmp_path / "nope.tgz", bundle, trusted_root=root, **kw)
    assert v.outcome is Outcome.ERROR and "nope.tgz" in v.message
    v = verify_bundle(artifact, tmp_path / "missing.sigstore.json", trusted_root=root, **kw)
    assert v.outcome is Outcome.FAILED and "missing.sigstore.json" in v.message
    for text in ("", "{", "[]", '{"mediaType": "x"}', json.dumps({**json.loads(root.read_text()),
                                                                  "tlogs": "nope"})):
        bad = tmp_path / "bad-root.json"
        bad.write_text(text)
        v = verify_bundle(artifact, bundle, trusted_root=bad, **kw)
        assert v.outcome is Outcome.ERROR and str(bad) in v.message, text


def test_root_with_future_validity_is_an_error_not_a_pass(
    tmp_path: Path, authority: tuple[SigningAuthority, Path, Path]
) -> None:
    auth, _, _ = authority
    artifact, bundle = _signed(tmp_path, auth)
    document = auth.trusted_root()
    for log in document["tlogs"]:
        log["publicKey"]["validFor"]["start"] = "2099-01-01T00:00:00Z"
    future = tmp_path / "future.json"
    future.write_text(json.dumps(document))
    v = verify_bundle(artifact, bundle, trusted_root=future, identity=DEFAULT_IDENTITY, issuer=DEFAULT_ISSUER)
    assert v.outcome is Outcome.ERROR and v.evidence["error"] == "MetadataError"


# ---- the CLI ------------------------------------------------------------------------------


def test_cli_exit_codes(tmp_path: Path, authority: tuple[SigningAuthority, Path, Path],
                        capsys: pytest.CaptureFixture[str]) -> None:
    auth, root, other = authority
    artifact, bundle = _signed(tmp_path, auth)
    base = ["verify", "signature", str(artifact), "--identity", DEFAULT_IDENTITY, "--issuer", DEFAULT_ISSUER]
    assert main([*base, "--trusted-root", str(root)]) == 0
    assert main([*base, "--trusted-root", str(root), "--bundle", str(bundle)]) == 0
    assert main([*base, "--trusted-root", str(other)]) == 1
    assert main(base) == 1  # the embedded production root does not trust the sandbox
    capsys.readouterr()
    assert main([*base, "--trusted-root", str(other), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["exit_code"] == 1 and out["verdicts"][0]["evidence"]["error"] == "CertValidationError"
    assert main([*base, "--trusted-root", str(tmp_path / "none.json")]) == 2
    assert main([*base, "--trusted-root", str(root), "--online"]) == 2
    assert main(["verify", "signature", str(tmp_path / "none"), "--identity", "x", "--issuer", "y"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["verify", "signature", str(artifact), "--identity", DEFAULT_IDENTITY])
    assert exc.value.code == 2
    bundle.write_text("not json")
    assert main([*base, "--trusted-root", str(root)]) == 1
    bundle.unlink()
    assert main([*base, "--trusted-root", str(root)]) == 2


@needs_fixtures
def test_cli_on_fixture_with_embedded_staging_root(capsys: pytest.CaptureFixture[str]) -> None:
    case = next(c for c in _cases() if c["id"] == "staging-email-bundle-v0.3")
    argv = ["verify", "signature", str(SIGSTORE / case["artifact"]),
            "--bundle", str(SIGSTORE / case["bundle"]),
            "--identity", case["identity"], "--issuer", case["issuer"]]
    assert main([*argv, "--staging"]) == 0
    assert main(argv) == 1
    dsse = next(c for c in _cases() if c["id"] == "staging-dsse-rekor-v2")
    assert main(["verify", "signature", str(SIGSTORE / dsse["artifact"]), "--bundle",
                 str(SIGSTORE / dsse["bundle"]), "--identity", dsse["identity"], "--issuer", dsse["issuer"],
                 "--staging", "--attestation"]) == 0


# ---- releases resolved from drillbook.toml (the live environment) ----------------------------


def test_live_release_from_a_directory_target_never_brings_its_own_root(tmp_path: Path) -> None:
    from checks.errors import ConfigError
    from drills.config import parse_config
    from drills.live import LiveEnvironment
    from drills.releases import build_sandbox_release
    from steps.supply_chain import Releases

    built = build_sandbox_release(tmp_path / "built")
    config = parse_config(
        f'[targets.release]\nkind = "directory"\npath = "{built.directory}"\n',
        path=tmp_path / "drillbook.toml", environ={},
    )
    releases = Releases(LiveEnvironment(config), tmp_path / "work")
    release = releases.get("release")
    assert release.trusted_root is None and release.identity is None
    assert [p.name for p in release.artifacts()] == [p.name for p in built.artifacts()]
    assert release.sbom() is not None and len(release.attestations()) == 1
    # Against sigstore production (the default for a release read from disk) the sandbox's bundles fail.
    verdict = verify_artifacts(release.artifacts(), trusted_root=embedded_root_path("production"),
                               identity=DEFAULT_IDENTITY, issuer=DEFAULT_ISSUER)
    assert verdict.outcome is Outcome.FAILED
    with pytest.raises(ConfigError) as missing:
        releases.get("next-release")
    assert "next-release" in str(missing.value) and "[targets.next-release]" in missing.value.hint
