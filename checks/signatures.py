"""Sigstore signature checks: bundles and DSSE/in-toto attestations, verified offline.

Every check is hermetic: the trusted root is a file passed in (or one of the
roots embedded in the sigstore wheel, read as a file), never a TUF refresh and
never ``~/.cache``. The root's path and SHA-256 go into the evidence, so an
auditor can tell which authority a verdict trusted.

Outcomes: a signature that was checked and does not hold (tampered artifact,
wrong identity or issuer, another instance's root, a corrupt or unsupported
bundle, a missing bundle) is ``failed``; an input that could not be read at
all (artifact, bundle or trusted root unreadable, malformed trusted root) is
``error``. Classification is by exception class, never by message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pydantic
from cryptography import x509
from sigstore.errors import Error as SigstoreError
from sigstore.errors import MetadataError, VerificationError
from sigstore.hashes import Hashed
from sigstore.models import Bundle, InvalidBundle, TrustedRoot
from sigstore.verify import Verifier, policy
from sigstore_models.common.v1 import HashAlgorithm
from sigstore_models.trustroot import v1 as trustroot_v1

from .errors import DrillbookError
from .strict_json import loads_strict, reject_duplicate_keys
from .verdict import Verdict

BUNDLE_SUFFIXES = (".sigstore.json", ".sigstore")
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
_OID_ISSUER = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_OID_OTHERNAME = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")
_EMBEDDED = {
    "production": "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev",
    "staging": "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev",
}


class SignatureInputError(DrillbookError):
    """A signature input (trusted root, bundle, artifact) could not be read or parsed."""

    default_hint = "check the path and that the file is the sigstore JSON document it should be"


@dataclass(frozen=True)
class GitHubWorkflow:
    """Extra GitHub-Actions claims a certificate must carry (each optional)."""

    repository: str | None = None
    ref: str | None = None
    trigger: str | None = None

    def policies(self) -> list[Any]:
        """sigstore policy objects for the claims that are set."""
        found: list[Any] = []
        if self.repository:
            found.append(policy.GitHubWorkflowRepository(self.repository))
        if self.ref:
            found.append(policy.GitHubWorkflowRef(self.ref))
        if self.trigger:
            found.append(policy.GitHubWorkflowTrigger(self.trigger))
        return found

    def evidence(self) -> dict[str, str]:
        return {k: v for k, v in (("repository", self.repository), ("ref", self.ref),
                                  ("trigger", self.trigger)) if v}


@dataclass(frozen=True)
class LoadedRoot:
    """A trusted root ready to verify with, and what identifies it in evidence."""

    label: str
    path: Path | None
    sha256: str
    verifier: Verifier

    def evidence(self) -> dict[str, str]:
        return {"trusted_root": self.label, "trusted_root_sha256": self.sha256}


_ROOTS: dict[tuple[str, str], LoadedRoot] = {}


def embedded_root_path(instance: str) -> Path:
    """The trusted root of ``production`` or ``staging`` shipped inside the sigstore wheel."""
    if instance not in _EMBEDDED:
        raise SignatureInputError(f"unknown sigstore instance {instance!r}",
                                  hint="use production or staging")
    ref = resources.files("sigstore._store").joinpath(_EMBEDDED[instance], "trusted_root.json")
    return Path(str(ref))


def load_trusted_root(path: Path, *, label: str | None = None) -> LoadedRoot:
    """Read and check a trusted root file; cached by path and content hash."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SignatureInputError(f"trusted root {path} is unreadable: {exc.strerror or exc}",
                                  path=str(path)) from exc
    digest = hashlib.sha256(raw).hexdigest()
    key = (str(path), digest)
    if key in _ROOTS:
        return _ROOTS[key]
    try:
        # Parse the bytes we hashed, so the recorded SHA-256 is of what was trusted; a repeated
        # key is refused first (DuplicateKeyError is a ValueError), as pydantic keeps the last.
        reject_duplicate_keys(raw)
        root = TrustedRoot(trustroot_v1.TrustedRoot.from_json(raw))
        verifier = Verifier(trusted_root=root)
    except (pydantic.ValidationError, ValueError) as exc:
        raise SignatureInputError(
            f"trusted root {path} is not a sigstore trusted root: {_first_line(exc)}",
            hint="pass a trustedroot v0.1 JSON file (sigstore's trusted_root.json)", path=str(path),
        ) from exc
    except SigstoreError as exc:
        raise SignatureInputError(f"trusted root {path} is unusable: {_first_line(exc)}",
                                  path=str(path)) from exc
    loaded = LoadedRoot(label or str(path), path, digest, verifier)
    _ROOTS[key] = loaded
    return loaded


def online_root(instance: str) -> LoadedRoot:
    """Explicitly online: refresh ``instance``'s trusted root over TUF (network, ``~/.cache``)."""
    from sigstore.models import ClientTrustConfig

    try:
        config = (ClientTrustConfig.production() if instance == "production"
                  else ClientTrustConfig.staging())
        root = config.trusted_root
    except SigstoreError as exc:
        raise SignatureInputError(f"TUF refresh of the {instance} trusted root failed: {_first_line(exc)}",
                                  hint="check network access to the sigstore TUF repository") from exc
    raw = json.dumps(root._inner.to_dict(), sort_keys=True).encode()
    return LoadedRoot(f"tuf:{instance}", None, hashlib.sha256(raw).hexdigest(), Verifier(trusted_root=root))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def find_bundle(artifact: Path) -> Path | None:
    """The bundle next to an artifact: ``<file>.sigstore.json`` or ``<file>.sigstore``."""
    for suffix in BUNDLE_SUFFIXES:
        candidate = artifact.with_name(artifact.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _root(trusted_root: Path | LoadedRoot) -> LoadedRoot:
    return trusted_root if isinstance(trusted_root, LoadedRoot) else load_trusted_root(trusted_root)


def _policy(identity: str, issuer: str, github: GitHubWorkflow | None) -> Any:
    # Always with the issuer: policy.Identity(issuer=None) silently skips the issuer check.
    base = policy.Identity(identity=identity, issuer=issuer)
    extra = github.policies() if github else []
    return policy.AllOf([base, *extra]) if extra else base


def certificate_claims(cert: x509.Certificate) -> dict[str, Any]:
    """Identity (SAN), OIDC issuer and validity of a signing certificate, for evidence."""
    claims: dict[str, Any] = {
        "cert_serial": format(cert.serial_number, "x"),
        "cert_not_before": cert.not_valid_before_utc.isoformat(),
        "cert_not_after": cert.not_valid_after_utc.isoformat(),
        "cert_issuer_dn": cert.issuer.rfc4514_string(),
    }
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.RFC822Name)]
        names += [str(n) for n in san.get_values_for_type(x509.UniformResourceIdentifier)]
        names += [o.value.decode(errors="replace") for o in san.get_values_for_type(x509.OtherName)
                  if o.type_id == _OID_OTHERNAME]
        claims["cert_identity"] = names[0] if len(names) == 1 else names
    except x509.ExtensionNotFound:
        claims["cert_identity"] = None
    for oid in (_OID_ISSUER, _OID_ISSUER_V2):
        try:
            value = cert.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        raw = getattr(value, "value", b"")
        # .1.1 holds raw UTF-8; .1.8 a DER UTF8String (tag 0x0c, short length).
        if oid == _OID_ISSUER_V2 and raw[:1] == b"\x0c" and len(raw) >= 2:
            raw = raw[2:]
        claims["cert_oidc_issuer"] = raw.decode(errors="replace")
        break
    return claims


# What reading evidence from a hostile bundle may raise (the verdict never depends on it).
_EVIDENCE_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError, SigstoreError)


def bundle_evidence(bundle: Bundle) -> dict[str, Any]:
    """Certificate claims and transparency-log (or TSA) facts of a loaded bundle."""
    evidence: dict[str, Any] = {"bundle_media_type": bundle._inner.media_type}
    try:
        evidence.update(certificate_claims(bundle.signing_certificate))
    except _EVIDENCE_ERRORS as exc:  # evidence is best effort; the verdict never depends on it
        evidence["cert_error"] = type(exc).__name__
    try:
        entry = bundle.log_entry._inner
        evidence["tlog_index"] = int(entry.log_index)
        evidence["tlog_kind"] = f"{entry.kind_version.kind}/{entry.kind_version.version}"
        if entry.integrated_time:
            evidence["tlog_integrated_time"] = datetime.fromtimestamp(
                int(entry.integrated_time), tz=UTC).isoformat()
    except _EVIDENCE_ERRORS as exc:
        evidence["tlog_error"] = type(exc).__name__
    try:
        tsa = bundle.verification_material.timestamp_verification_data
        if tsa is not None and tsa.rfc3161_timestamps:
            evidence["tsa_times"] = [ts.tst_info.gen_time.isoformat() for ts in tsa.rfc3161_timestamps]
    except _EVIDENCE_ERRORS as exc:
        evidence["tsa_error"] = type(exc).__name__
    return evidence


def _load_bundle(check_id: str, bundle: Path, evidence: dict[str, Any]) -> Bundle | Verdict:
    """The parsed bundle, or the verdict saying why there is none."""
    try:
        raw = bundle.read_bytes()
    except FileNotFoundError:
        return Verdict.failed(check_id, f"no bundle {bundle}: the artifact is unsigned", evidence=evidence)
    except OSError as exc:
        return Verdict.error(check_id, f"bundle {bundle} is unreadable: {exc.strerror or exc}",
                             evidence=evidence)
    evidence["bundle_sha256"] = hashlib.sha256(raw).hexdigest()
    try:
        reject_duplicate_keys(raw)  # refused (ValueError below), never resolved to the last value
        return Bundle.from_json(raw)
    except InvalidBundle as exc:
        evidence["error"] = type(exc).__name__
        return Verdict.failed(check_id, f"bundle {bundle} is not a valid sigstore bundle: "
                              f"{_first_line(exc)}", evidence=evidence)
    except (ValueError, TypeError, pydantic.ValidationError) as exc:
        evidence["error"] = type(exc).__name__
        return Verdict.failed(check_id, f"bundle {bundle} is not a valid sigstore bundle: "
                              f"{_first_line(exc)}", evidence=evidence)


def _verification_failure(check_id: str, what: str, exc: Exception, evidence: dict[str, Any]) -> Verdict:
    evidence["error"] = type(exc).__name__
    if isinstance(exc, MetadataError):
        # The root has no key or CA valid now: nothing was checked against it.
        return Verdict.error(check_id, f"{what}: the trusted root has no usable keys: {_first_line(exc)}",
                             evidence={**evidence, "hint": "the trusted root's validFor windows start "
                                       "in the future, or it lacks CT/log keys"})
    return Verdict.failed(check_id, f"{what} does not verify: {_first_line(exc)}", evidence=evidence)


def verify_bundle(
    artifact: Path,
    bundle: Path,
    *,
    trusted_root: Path | LoadedRoot,
    identity: str,
    issuer: str,
    github: GitHubWorkflow | None = None,
    check_id: str = "signature.verified",
) -> Verdict:
    """Verify ``artifact`` against its sigstore ``bundle``: signed by ``identity`` from ``issuer``."""
    evidence: dict[str, Any] = {"artifact": str(artifact), "bundle": str(bundle),
                                "expected_identity": identity, "expected_issuer": issuer}
    if github:
        evidence["expected_github"] = github.evidence()
    try:
        root = _root(trusted_root)
    except SignatureInputError as exc:
        return Verdict.error(check_id, str(exc), evidence=evidence)
    evidence.update(root.evidence())
    try:
        digest = _hash_file(artifact)
    except OSError as exc:
        return Verdict.error(check_id, f"artifact {artifact} is unreadable: {exc.strerror or exc}",
                             evidence=evidence)
    evidence["artifact_sha256"] = digest
    loaded = _load_bundle(check_id, bundle, evidence)
    if isinstance(loaded, Verdict):
        return loaded
    evidence.update(bundle_evidence(loaded))
    hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(digest))
    try:
        root.verifier.verify_artifact(hashed, loaded, _policy(identity, issuer, github))
    except (VerificationError, MetadataError, x509.ExtensionNotFound) as exc:
        return _verification_failure(check_id, f"{artifact.name} with bundle {bundle}", exc, evidence)
    except (SigstoreError, ValueError, TypeError) as exc:
        # Anything else the verifier raises on hostile input still means "not verified".
        return _verification_failure(check_id, f"{artifact.name} with bundle {bundle}", exc, evidence)
    return Verdict.passed(
        check_id,
        f"{artifact.name}: signature verified, signed by {identity} ({issuer})",
        measured=evidence.get("cert_identity"), expected=identity, evidence=evidence,
    )


def statement_subjects(payload: bytes) -> list[tuple[str, str]]:
    """(name, sha256) pairs of an in-toto statement's subjects; ValueError when malformed."""
    statement = loads_strict(payload)
    if not isinstance(statement, dict) or not isinstance(statement.get("subject"), list):
        raise ValueError("the in-toto statement has no subject list")
    found: list[tuple[str, str]] = []
    for item in statement["subject"]:
        if not isinstance(item, dict) or not isinstance(item.get("digest"), dict):
            raise ValueError("an in-toto subject has no digest")
        sha = item["digest"].get("sha256")
        if isinstance(sha, str):
            found.append((str(item.get("name", "")), sha.lower()))
    return found


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
    """Verify a DSSE in-toto attestation, then that its subjects' SHA-256 cover every artifact."""
    evidence: dict[str, Any] = {"bundle": str(bundle), "artifacts": [str(a) for a in artifacts],
                                "expected_identity": identity, "expected_issuer": issuer}
    try:
        root = _root(trusted_root)
    except SignatureInputError as exc:
        return Verdict.error(check_id, str(exc), evidence=evidence)
    evidence.update(root.evidence())
    digests: dict[str, str] = {}
    for artifact in artifacts:
        try:
            digests[str(artifact)] = _hash_file(artifact)
        except OSError as exc:
            return Verdict.error(check_id, f"artifact {artifact} is unreadable: {exc.strerror or exc}",
                                 evidence=evidence)
    evidence["artifact_sha256"] = digests
    loaded = _load_bundle(check_id, bundle, evidence)
    if isinstance(loaded, Verdict):
        return loaded
    evidence.update(bundle_evidence(loaded))
    try:
        payload_type, payload = root.verifier.verify_dsse(loaded, _policy(identity, issuer, github))
    except (VerificationError, MetadataError, x509.ExtensionNotFound, SigstoreError, ValueError,
            TypeError) as exc:
        return _verification_failure(check_id, f"attestation {bundle}", exc, evidence)
    # verify_dsse checks the envelope only: what it attests to is ours to compare.
    if payload_type != INTOTO_PAYLOAD_TYPE:
        return Verdict.failed(check_id, f"attestation {bundle} carries {payload_type!r}, "
                              f"not an in-toto statement", evidence=evidence)
    try:
        subjects = statement_subjects(payload)
        statement = loads_strict(payload)
    except ValueError as exc:
        return Verdict.failed(check_id, f"attestation {bundle}: {_first_line(exc)}", evidence=evidence)
    evidence["predicate_type"] = statement.get("predicateType")
    evidence["subjects"] = [{"name": n, "sha256": d} for n, d in subjects]
    if predicate_type and statement.get("predicateType") != predicate_type:
        return Verdict.failed(check_id, f"attestation {bundle} has predicate type "
                              f"{statement.get('predicateType')!r}, expected {predicate_type!r}",
                              evidence=evidence)
    attested = {d for _, d in subjects}
    missing = [path for path, d in digests.items() if d not in attested]
    if missing or not digests:
        return Verdict.failed(
            check_id,
            f"attestation {bundle} verifies, but its subjects do not cover "
            + (", ".join(missing) if missing else "any artifact (none given)"),
            measured=sorted(attested), expected=sorted(digests.values()), evidence=evidence,
        )
    return Verdict.passed(
        check_id, f"attestation {bundle.name} verified ({statement.get('predicateType')}), "
        f"subjects cover {len(digests)} artifact(s)", measured=len(digests), expected=len(digests),
        evidence=evidence,
    )


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
        return Verdict.passed(check_id, f"{len(verdicts)} {what}(s) verified",
                              measured=len(verdicts), expected=len(verdicts), evidence={"items": items})
    errors = [v for v in bad if v.outcome.value == "error"]
    text = f"{len(bad)} of {len(verdicts)} {what}(s) not verified: " + "; ".join(v.message for v in bad)
    maker = Verdict.error if errors and len(errors) == len(bad) else Verdict.failed
    return maker(check_id, text, measured=len(verdicts) - len(bad), expected=len(verdicts),
                 evidence={"items": items})


