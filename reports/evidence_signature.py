"""Signing an evidence bundle's manifest with sigstore, and checking that signature.

The manifest lists the SHA-256 of every other file, so one signature over it
covers the whole bundle. Checking is hermetic (a pinned trusted root, as for
release artifacts); signing keyless needs the ambient OIDC identity of a CI
job and the network to reach Fulcio and Rekor.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checks.errors import ConfigError, DrillbookError
from checks.signatures import BundleContent, LoadedRoot, bundle_evidence, verify_bundle
from checks.verdict import Outcome

from .evidence import MANIFEST, SIGNATURE, VerifyReport

Signer = Callable[[bytes], bytes]

# Where an ambient identity comes from: an explicit token, or GitHub Actions' id-token endpoint.
IDENTITY_VARIABLES = ("SIGSTORE_ID_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL")


class SigningError(DrillbookError):
    """The manifest could not be signed (bad token, sigstore unreachable)."""

    default_hint = ("keyless signing needs an OIDC token (SIGSTORE_ID_TOKEN, or `permissions: id-token: "
                    "write` in GitHub Actions) and network access to the sigstore instance")


@dataclass(frozen=True)
class SignatureCheck:
    """What the bundle's signature proved; ``problem`` is None when nothing is wrong."""

    signed: bool
    problem: str | None = None
    signer: str | None = None
    issuer: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


def ambient_identity_token() -> str | None:
    """The CI job's OIDC token (sigstore's detection: SIGSTORE_ID_TOKEN, GitHub Actions, GCP), or None."""
    if os.environ.get("SIGSTORE_ID_TOKEN"):
        return os.environ["SIGSTORE_ID_TOKEN"]
    if not any(os.environ.get(v) for v in IDENTITY_VARIABLES):
        return None
    from sigstore.oidc import IdentityError, detect_credential

    try:
        return detect_credential()
    except IdentityError as exc:
        raise SigningError(f"the ambient OIDC identity could not be read: {exc}") from exc


def keyless_signer(token: str, *, staging: bool = False) -> Signer:
    """Sign with a short-lived certificate for ``token``'s identity (public-good sigstore)."""
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import IdentityError, IdentityToken
    from sigstore.sign import SigningContext

    try:
        identity = IdentityToken(token)
    except IdentityError as exc:
        # Bad input (exit 2), unlike a signing service that fails (exit 1).
        raise ConfigError(f"the OIDC token is not usable for signing: {exc}",
                          hint=SigningError.default_hint) from exc

    def sign(data: bytes) -> bytes:
        try:
            config = ClientTrustConfig.staging() if staging else ClientTrustConfig.production()
            with SigningContext.from_trust_config(config).signer(identity) as signer:
                return signer.sign_artifact(data).to_json().encode("utf-8")
        except Exception as exc:
            raise SigningError(f"sigstore signing failed: {type(exc).__name__}: {exc}") from exc

    return sign


@dataclass(frozen=True)
class Trust:
    """What the verifier was asked to trust: a pinned root, and optionally the one signer it accepts.

    ``options`` names the command-line options that asked for it (``--trusted-root``,
    ``--identity/--issuer``, ...), so that a missing signature can say what asked for one.
    """

    root: LoadedRoot
    identity: str | None = None
    issuer: str | None = None
    options: str = "a trust option"


def verify_signed_bytes(data: bytes, bundle: bytes, *, trusted_root: Path | LoadedRoot,
                        identity: str | None = None, issuer: str | None = None,
                        name: str = MANIFEST, check_id: str = "evidence.signature") -> SignatureCheck:
    """Verify the sigstore ``bundle`` over ``data`` (offline, pinned root); with identity/issuer, that signer.

    Without an expected identity the signature is still checked against the
    root, and the signer it names is reported: the auditor decides whether
    that is the right one.
    """
    if (identity is None) != (issuer is None):
        return SignatureCheck(True, "pass both --identity and --issuer (an identity from any issuer "
                                    "proves nothing)")
    with tempfile.TemporaryDirectory(prefix="drillbook-evidence-sig-") as tmp:
        artifact, bundle_path = Path(tmp) / name, Path(tmp) / f"{name}.sigstore.json"
        artifact.write_bytes(data)
        bundle_path.write_bytes(bundle)
        if identity is None or issuer is None:
            claimed = _claimed_signer(bundle_path)
            if claimed is None:
                return SignatureCheck(True, f"{bundle_path.name} is not a sigstore bundle with a signing "
                                            "certificate")
            identity, issuer = claimed
        # The manifest's signature is one drillbook writes (a message signature); an attestation
        # about the manifest is not what `evidence export --sign` produced, so it is refused.
        verdict = verify_bundle(artifact, bundle_path, trusted_root=trusted_root, identity=identity,
                                issuer=issuer, require=BundleContent.MESSAGE_SIGNATURE, check_id=check_id)
    evidence = {k: v for k, v in verdict.evidence.items() if k not in ("artifact", "bundle")}
    if verdict.outcome is not Outcome.PASSED:
        # Temporary paths mean nothing to the reader: name the member instead.
        message = verdict.message.replace(f"{tmp}/", "")
        return SignatureCheck(True, message, evidence=evidence)
    return SignatureCheck(True, None, signer=identity, issuer=issuer, evidence=evidence)


def check_signature(report: VerifyReport, *, trusted_root: Path | LoadedRoot,
                    identity: str | None = None, issuer: str | None = None,
                    trust_asked: str | None = None) -> SignatureCheck:
    """Verify the manifest's bundle against ``trusted_root``; with identity/issuer, require that signer.

    ``trust_asked`` names the trust options the verifier was given (``--trusted-root``,
    ``--staging``, ``--identity/--issuer``). With any of them an unsigned bundle fails:
    removing the signature member must never turn "signed by X" into a quiet "unsigned".
    """
    asked = trust_asked or ("--identity/--issuer" if identity is not None or issuer is not None else None)
    if report.signature is None:
        if asked:
            return SignatureCheck(False, f"signature missing: the bundle is not signed (no {SIGNATURE}), "
                                         f"but {asked} asked for a trusted signature: treat it as "
                                         "unverified")
        return SignatureCheck(False)
    if report.manifest is None:
        return SignatureCheck(True, f"{SIGNATURE} is present but {MANIFEST} is not: nothing it could sign")
    return verify_signed_bytes(report.manifest, report.signature, trusted_root=trusted_root,
                               identity=identity, issuer=issuer)


def _claimed_signer(bundle: Path) -> tuple[str, str] | None:
    """The (identity, issuer) the bundle's certificate names, before anything is trusted."""
    from sigstore.models import Bundle

    try:
        claims = bundle_evidence(Bundle.from_json(bundle.read_bytes()))
    except Exception:  # noqa: BLE001 - a hostile bundle fails here or in verification, never crashes
        return None
    who, where = claims.get("cert_identity"), claims.get("cert_oidc_issuer")
    if isinstance(who, str) and isinstance(where, str):
        return who, where
    return None
