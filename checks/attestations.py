"""DSSE attestations: a sigstore bundle whose envelope signs an in-toto statement about files.

Three things must hold, in this order, and the verdict says which one did not:

1. the envelope verifies (``Verifier.verify_dsse``: certificate chain, transparency log or TSA
   time, signature over the DSSE pre-authentication encoding) for the expected identity *and*
   issuer;
2. the signed payload is an in-toto statement (``payloadType`` ``application/vnd.in-toto+json``
   and a statement that parses, :mod:`checks.intoto`); nothing unsigned is ever interpreted;
3. a subject's SHA-256 equals each file's. ``verify_dsse`` does not look inside the payload
   (FIELD-NOTES: "compare the in-toto subject digest with the artifact yourself"), so without this
   step any attestation by the right signer would "verify" any file.

The passing message names the predicate type ("SLSA provenance v1 (https://slsa.dev/provenance/v1)
for app.tar.gz, signed by ..."), because an attestation's meaning is its predicate: a vulnerability
scan by the release workflow is not build provenance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from sigstore.errors import Error as SigstoreError
from sigstore.errors import MetadataError, VerificationError
from sigstore.models import Bundle

from .intoto import INTOTO_PAYLOAD_TYPE, InTotoStatementError, Statement, describe_predicate, parse_statement
from .sigstore_inputs import (
    BundleContent,
    GitHubWorkflow,
    LoadedRoot,
    bundle_content,
    bundle_evidence,
    load_bundle,
    signing_policy,
    start_verification,
    verification_failure,
)
from .verdict import Verdict

# How many subjects a message lists before "and N more" (the evidence keeps all of them).
_SUBJECTS_SHOWN = 8


def verify_dsse(
    loaded: Bundle,
    bundle: Path,
    digests: Mapping[str, str],
    *,
    root: LoadedRoot,
    identity: str,
    issuer: str,
    github: GitHubWorkflow | None,
    predicate_type: str | None,
    evidence: dict[str, Any],
    check_id: str,
) -> Verdict:
    """Verify a loaded DSSE bundle and that its statement's subjects cover ``digests`` (name → sha256).

    ``evidence`` already holds the root's and the bundle's facts; this adds the statement's.
    """
    evidence["bundle_content"] = BundleContent.DSSE.value
    try:
        payload_type, payload = root.verifier.verify_dsse(loaded, signing_policy(identity, issuer, github))
    except (VerificationError, MetadataError, x509.ExtensionNotFound, SigstoreError, ValueError,
            TypeError) as exc:
        # Anything the verifier raises on hostile input means "not verified", classified by class.
        return verification_failure(check_id, f"attestation {bundle}", exc, evidence)
    evidence["payload_type"] = payload_type
    # From here on the payload is signed by the expected signer, but still not trusted to be well formed.
    if payload_type != INTOTO_PAYLOAD_TYPE:
        evidence["hint"] = ("drillbook reads in-toto attestations only; ask the producer for an in-toto "
                            "statement (cosign attest, actions/attest-build-provenance)")
        return Verdict.failed(
            check_id, f"attestation {bundle} is signed by {identity}, but its payload is not an in-toto "
            f"statement: dsseEnvelope.payloadType is {payload_type!r}, expected {INTOTO_PAYLOAD_TYPE!r}",
            measured=payload_type, expected=INTOTO_PAYLOAD_TYPE, evidence=evidence)
    try:
        statement = parse_statement(payload)
    except InTotoStatementError as exc:
        evidence.update(statement_error_path=exc.path, hint=exc.hint)
        return Verdict.failed(
            check_id, f"attestation {bundle} is signed by {identity}, but its payload is not a valid "
            f"in-toto statement: {exc.message} (in the base64 dsseEnvelope.payload)", evidence=evidence)
    evidence.update(statement_evidence(statement))
    described = statement.predicate_name()
    if predicate_type and statement.predicate_type != predicate_type:
        return Verdict.failed(
            check_id, f"attestation {bundle} is {described}, expected predicate type {predicate_type}",
            measured=statement.predicate_type, expected=predicate_type, evidence=evidence)
    if not digests:
        return Verdict.failed(check_id, f"attestation {bundle}: no artifact given to compare its subjects "
                              "with", measured=0, expected=">= 1 artifact", evidence=evidence)
    missing = {name: d for name, d in digests.items() if not statement.subjects_with_sha256(d)}
    if missing:
        return Verdict.failed(
            check_id,
            f"{described} in {bundle} is signed by {identity}, but its subjects do not include "
            + ", ".join(f"{name} (sha256 {d})" for name, d in missing.items())
            + f": it attests to {_subject_list(statement)}",
            measured=sorted(s.sha256 or "" for s in statement.subjects),
            expected=sorted(digests.values()), evidence=evidence,
        )
    names = [Path(name).name for name in digests]
    what = names[0] if len(names) == 1 else f"{len(names)} artifacts ({', '.join(names)})"
    return Verdict.passed(check_id, f"{described} for {what}, signed by {identity} ({issuer})",
                          measured=len(digests), expected=len(digests), evidence=evidence)


def statement_evidence(statement: Statement) -> dict[str, Any]:
    """What an auditor needs of the statement: its type, predicate type and every subject."""
    return {"statement_type": statement.statement_type, "predicate_type": statement.predicate_type,
            "predicate": describe_predicate(statement.predicate_type),
            "subjects": [s.evidence() for s in statement.subjects]}


def _subject_list(statement: Statement) -> str:
    shown = [s.label() for s in statement.subjects[:_SUBJECTS_SHOWN]]
    more = len(statement.subjects) - len(shown)
    return ", ".join(shown) + (f" and {more} more (all in the evidence)" if more > 0 else "")


def verify_attestation(
    bundle: Path,
    artifacts: Sequence[Path],
    *,
    trusted_root: Path | LoadedRoot,
    identity: str,
    issuer: str,
    github: GitHubWorkflow | None = None,
    predicate_type: str | None = None,
    check_id: str = "attestation.verified",
) -> Verdict:
    """Verify a DSSE in-toto attestation, then that its subjects' SHA-256 cover every artifact.

    A bundle with a plain message signature fails here: an attestation was required.
    """
    evidence: dict[str, Any] = {"bundle": str(bundle), "artifacts": [str(a) for a in artifacts]}
    started = start_verification(check_id, evidence, list(artifacts), trusted_root=trusted_root,
                                 identity=identity, issuer=issuer, github=github)
    if isinstance(started, Verdict):
        return started
    root, digests = started
    evidence["artifact_sha256"] = digests
    loaded = load_bundle(check_id, bundle, evidence)
    if isinstance(loaded, Verdict):
        return loaded
    evidence.update(bundle_evidence(loaded))
    if bundle_content(loaded) is not BundleContent.DSSE:
        return attestation_required(check_id, bundle, evidence)
    return verify_dsse(loaded, bundle, digests, root=root, identity=identity, issuer=issuer, github=github,
                       predicate_type=predicate_type, evidence=evidence, check_id=check_id)


def attestation_required(check_id: str, bundle: Path, evidence: dict[str, Any]) -> Verdict:
    """The verdict for a message-signature bundle where an attestation (DSSE) was required."""
    evidence["bundle_content"] = BundleContent.MESSAGE_SIGNATURE.value
    evidence["hint"] = ("give the attestation's bundle (a DSSE envelope, e.g. *.intoto.sigstore.json); "
                        "drop --attestation to verify a plain signature")
    return Verdict.failed(
        check_id, f"an attestation was required, but bundle {bundle} carries a plain message signature "
        "(messageSignature, no dsseEnvelope)",
        measured=BundleContent.MESSAGE_SIGNATURE.value, expected=BundleContent.DSSE.value, evidence=evidence)
