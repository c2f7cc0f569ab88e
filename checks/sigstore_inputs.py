"""Sigstore inputs: trusted roots, bundles, signing policies, and the evidence they yield.

What every sigstore check shares, kept apart from the checks themselves
(``checks.signatures`` for message signatures, ``checks.attestations`` for DSSE
envelopes). Hermetic: a trusted root is a file passed in (or one of the roots
embedded in the sigstore wheel, read as a file), never a TUF refresh and never
``~/.cache``, unless :func:`online_root` is called explicitly. The root's path
and SHA-256 go into the evidence, so an auditor can tell which authority a
verdict trusted. Failures are classified by exception class, never by message.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pydantic
from cryptography import x509
from sigstore.errors import Error as SigstoreError
from sigstore.errors import MetadataError
from sigstore.models import Bundle, InvalidBundle, TrustedRoot
from sigstore.verify import Verifier, policy
from sigstore_models.trustroot import v1 as trustroot_v1

from .errors import DrillbookError
from .strict_json import reject_duplicate_keys
from .verdict import Verdict

_OID_ISSUER = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_OID_OTHERNAME = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")
_EMBEDDED = {
    "production": "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev",
    "staging": "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev",
}


class BundleContent(enum.StrEnum):
    """What a sigstore bundle signs: a file's digest, or a DSSE envelope (an attestation)."""

    MESSAGE_SIGNATURE = "message signature"
    DSSE = "DSSE envelope"


def bundle_content(bundle: Bundle) -> BundleContent:
    """Which of the two a loaded bundle carries (its loader refuses a bundle with neither)."""
    return BundleContent.DSSE if bundle._inner.dsse_envelope is not None else BundleContent.MESSAGE_SIGNATURE


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
            f"trusted root {path} is not a sigstore trusted root: {first_line(exc)}",
            hint="pass a trustedroot v0.1 JSON file (sigstore's trusted_root.json)", path=str(path),
        ) from exc
    except SigstoreError as exc:
        raise SignatureInputError(f"trusted root {path} is unusable: {first_line(exc)}",
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
        raise SignatureInputError(f"TUF refresh of the {instance} trusted root failed: {first_line(exc)}",
                                  hint="check network access to the sigstore TUF repository") from exc
    raw = json.dumps(root._inner.to_dict(), sort_keys=True).encode()
    return LoadedRoot(f"tuf:{instance}", None, hashlib.sha256(raw).hexdigest(), Verifier(trusted_root=root))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_root(trusted_root: Path | LoadedRoot) -> LoadedRoot:
    return trusted_root if isinstance(trusted_root, LoadedRoot) else load_trusted_root(trusted_root)


def start_verification(check_id: str, evidence: dict[str, Any], artifacts: list[Path], *,
                       trusted_root: Path | LoadedRoot, identity: str, issuer: str,
                       github: GitHubWorkflow | None) -> tuple[LoadedRoot, dict[str, str]] | Verdict:
    """What every verification does first: record the policy, load the trust root, hash the
    artifacts (path → SHA-256). A Verdict (error) when the root or an artifact is unusable."""
    evidence.update({"expected_identity": identity, "expected_issuer": issuer})
    if github:
        evidence["expected_github"] = github.evidence()
    try:
        root = resolve_root(trusted_root)
    except SignatureInputError as exc:
        return Verdict.error(check_id, str(exc), evidence=evidence)
    evidence.update(root.evidence())
    digests: dict[str, str] = {}
    for artifact in artifacts:
        try:
            digests[str(artifact)] = hash_file(artifact)
        except OSError as exc:
            return Verdict.error(check_id, f"artifact {artifact} is unreadable: {exc.strerror or exc}",
                                 evidence=evidence)
    return root, digests


def signing_policy(identity: str, issuer: str, github: GitHubWorkflow | None) -> Any:
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


def load_bundle(check_id: str, bundle: Path, evidence: dict[str, Any]) -> Bundle | Verdict:
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
                              f"{first_line(exc)}", evidence=evidence)
    except (ValueError, TypeError, pydantic.ValidationError) as exc:
        evidence["error"] = type(exc).__name__
        return Verdict.failed(check_id, f"bundle {bundle} is not a valid sigstore bundle: "
                              f"{first_line(exc)}", evidence=evidence)


def verification_failure(check_id: str, what: str, exc: Exception, evidence: dict[str, Any]) -> Verdict:
    evidence["error"] = type(exc).__name__
    if isinstance(exc, MetadataError):
        # The root has no key or CA valid now: nothing was checked against it.
        return Verdict.error(check_id, f"{what}: the trusted root has no usable keys: {first_line(exc)}",
                             evidence={**evidence, "hint": "the trusted root's validFor windows start "
                                       "in the future, or it lacks CT/log keys"})
    return Verdict.failed(check_id, f"{what} does not verify: {first_line(exc)}", evidence=evidence)
