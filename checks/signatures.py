"""Sigstore signature checks: a file against its bundle, verified offline, whatever the bundle signs.

A bundle signs either the file's digest (``messageSignature``) or a DSSE envelope holding an in-toto
statement about the file (``dsseEnvelope``: an attestation, e.g. SLSA provenance). sigstore's own
CLI verifies both as they come, and so does :func:`verify_bundle`: a DSSE bundle is verified as an
attestation (:mod:`checks.attestations`: envelope, identity and issuer, then a subject whose SHA-256
is the file's) and its verdict names the predicate type. A caller may *require* one kind
(``require=BundleContent.DSSE`` for ``--attestation``; a message signature for evidence manifests).

Every check is hermetic: the trusted root is a file passed in (or one of the roots embedded in the
sigstore wheel, read as a file), never a TUF refresh and never ``~/.cache``. Trusted roots, bundle
loading and evidence live in :mod:`checks.sigstore_inputs` and are re-exported here.

Outcomes: a signature that was checked and does not hold (tampered artifact, wrong identity or
issuer, another instance's root, a corrupt or unsupported bundle, a missing bundle, an attestation
about other files or over a payload that is not in-toto) is ``failed``; an input that could not be
read at all (artifact, bundle or trusted root unreadable, malformed trusted root) is ``error``.
Classification is by exception class, never by message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from sigstore.errors import Error as SigstoreError
from sigstore.errors import MetadataError, VerificationError
from sigstore.hashes import Hashed
from sigstore_models.common.v1 import HashAlgorithm

from .attestations import attestation_required, verify_attestation, verify_dsse
from .intoto import INTOTO_PAYLOAD_TYPE
from .sigstore_inputs import (
    BundleContent,
    GitHubWorkflow,
    LoadedRoot,
    SignatureInputError,
    bundle_content,
    bundle_evidence,
    certificate_claims,
    embedded_root_path,
    load_bundle,
    load_trusted_root,
    online_root,
    signing_policy,
    start_verification,
    verification_failure,
)
from .verdict import Verdict

__all__ = [
    "BUNDLE_SUFFIXES", "INTOTO_PAYLOAD_TYPE", "BundleContent", "GitHubWorkflow", "LoadedRoot",
    "SignatureInputError", "bundle_evidence", "certificate_claims", "embedded_root_path", "find_bundle",
    "load_trusted_root", "online_root", "summarise", "verify_artifacts", "verify_attestation",
    "verify_bundle",
]

BUNDLE_SUFFIXES = (".sigstore.json", ".sigstore")


def find_bundle(artifact: Path) -> Path | None:
    """The bundle next to an artifact: ``<file>.sigstore.json`` or ``<file>.sigstore``."""
    for suffix in BUNDLE_SUFFIXES:
        candidate = artifact.with_name(artifact.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def verify_bundle(
    artifact: Path,
    bundle: Path,
    *,
    trusted_root: Path | LoadedRoot,
    identity: str,
    issuer: str,
    github: GitHubWorkflow | None = None,
    require: BundleContent | None = None,
    predicate_type: str | None = None,
    check_id: str = "signature.verified",
) -> Verdict:
    """Verify ``artifact`` against its sigstore ``bundle``: signed by ``identity`` from ``issuer``.

    A message-signature bundle must sign the artifact's digest; a DSSE bundle must be an in-toto
    attestation one of whose subjects is the artifact (``predicate_type`` pins what it attests).
    ``require`` refuses the other kind, saying which was required; so does a ``predicate_type``
    given for a message-signature bundle.
    """
    evidence: dict[str, Any] = {"artifact": str(artifact), "bundle": str(bundle)}
    started = start_verification(check_id, evidence, [artifact], trusted_root=trusted_root,
                                 identity=identity, issuer=issuer, github=github)
    if isinstance(started, Verdict):
        return started
    root, digests = started
    digest = digests[str(artifact)]
    evidence["artifact_sha256"] = digest
    loaded = load_bundle(check_id, bundle, evidence)
    if isinstance(loaded, Verdict):
        return loaded
    evidence.update(bundle_evidence(loaded))
    content = bundle_content(loaded)
    # A predicate type can only be met by an attestation: asking for one requires one.
    if (require is BundleContent.DSSE or predicate_type) and content is not BundleContent.DSSE:
        return attestation_required(check_id, bundle, evidence)
    if content is BundleContent.DSSE:
        if require is BundleContent.MESSAGE_SIGNATURE:
            return _signature_required(check_id, bundle, evidence)
        return verify_dsse(loaded, bundle, {str(artifact): digest}, root=root, identity=identity,
                           issuer=issuer, github=github, predicate_type=predicate_type,
                           evidence=evidence, check_id=check_id)
    evidence["bundle_content"] = content.value
    hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(digest))
    try:
        root.verifier.verify_artifact(hashed, loaded, signing_policy(identity, issuer, github))
    except (VerificationError, MetadataError, x509.ExtensionNotFound) as exc:
        return verification_failure(check_id, f"{artifact.name} with bundle {bundle}", exc, evidence)
    except (SigstoreError, ValueError, TypeError) as exc:
        # Anything else the verifier raises on hostile input still means "not verified".
        return verification_failure(check_id, f"{artifact.name} with bundle {bundle}", exc, evidence)
    return Verdict.passed(
        check_id,
        f"{artifact.name}: signature verified, signed by {identity} ({issuer})",
        measured=evidence.get("cert_identity"), expected=identity, evidence=evidence,
    )


def _signature_required(check_id: str, bundle: Path, evidence: dict[str, Any]) -> Verdict:
    evidence["bundle_content"] = BundleContent.DSSE.value
    evidence["hint"] = "sign the file itself (cosign sign-blob, sigstore sign), not an attestation about it"
    return Verdict.failed(
        check_id, f"a signature over the file was required, but bundle {bundle} carries a DSSE "
        "attestation (dsseEnvelope, no messageSignature)",
        measured=BundleContent.DSSE.value, expected=BundleContent.MESSAGE_SIGNATURE.value, evidence=evidence)


def verify_artifacts(
    artifacts: Sequence[Path],
    *,
    trusted_root: Path | LoadedRoot,
    identity: str,
    issuer: str,
    github: GitHubWorkflow | None = None,
    check_id: str = "signatures.all_verified",
) -> Verdict:
    """Every artifact has a bundle next to it that verifies; a missing bundle is a failure."""
    if not artifacts:
        return Verdict.failed(check_id, "no artifacts to verify: the release is empty",
                              measured=0, expected=">= 1 signed artifact")
    per: list[Verdict] = []
    for artifact in artifacts:
        bundle = find_bundle(artifact)
        if bundle is None:
            expected = " or ".join(artifact.name + s for s in BUNDLE_SUFFIXES)
            per.append(Verdict.failed(
                check_id, f"{artifact} has no bundle ({expected}): the artifact is unsigned",
                evidence={"artifact": str(artifact)}))
            continue
        per.append(verify_bundle(artifact, bundle, trusted_root=trusted_root, identity=identity,
                                 issuer=issuer, github=github, check_id=check_id))
    return summarise(check_id, per, what="artifact signature")


def summarise(check_id: str, verdicts: Sequence[Verdict], *, what: str) -> Verdict:
    """One verdict for several: the worst outcome, every failing message, each one's evidence."""
    bad = [v for v in verdicts if v.counts_as_fail()]
    items: list[Mapping[str, Any]] = [{"outcome": v.outcome.value, "message": v.message, **v.evidence}
                                      for v in verdicts]
    if not bad:
        # Bundles that were attestations say so, by predicate: provenance is not a plain signature.
        predicates = sorted({str(v.evidence["predicate"]) for v in verdicts if v.evidence.get("predicate")})
        attested = sum(1 for v in verdicts if v.evidence.get("predicate"))
        note = f" ({attested} by attestation: {', '.join(predicates)})" if attested else ""
        return Verdict.passed(check_id, f"{len(verdicts)} {what}(s) verified{note}",
                              measured=len(verdicts), expected=len(verdicts), evidence={"items": items})
    errors = [v for v in bad if v.outcome.value == "error"]
    text = f"{len(bad)} of {len(verdicts)} {what}(s) not verified: " + "; ".join(v.message for v in bad)
    maker = Verdict.error if errors and len(errors) == len(bad) else Verdict.failed
    return maker(check_id, text, measured=len(verdicts) - len(bad), expected=len(verdicts),
                 evidence={"items": items})


