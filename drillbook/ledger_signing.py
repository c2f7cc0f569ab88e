"""How a run signs its ledger head: ``drillbook run --sign`` or ``--sign-sandbox``.

What is signed and how it is checked lives in reports/ledger_heads.py; this module only
chooses the signer, before anything runs (a missing CI identity is a usage error, exit 2),
and makes it when the run ends (a CI token is short-lived).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from checks.errors import ConfigError

if TYPE_CHECKING:
    from drills.signing_authority import SigningAuthority
    from reports.evidence_signature import Signer

SANDBOX_AUTHORITY = "sandbox-authority"  # <out>/sandbox-authority/: keys and trusted_root.json


@dataclass(frozen=True)
class HeadSigning:
    """How a run signs its ledger head. The signer is made when the run ends: a CI token is short-lived."""

    make: Callable[[], Signer]
    description: str


def head_signing(*, sign: bool, sign_sandbox: bool, out: Path) -> HeadSigning | None:
    """``--sign`` (keyless, the CI job's ambient identity) or ``--sign-sandbox`` (offline, not for audits).

    ``--sign`` without an ambient identity is a usage error before anything runs: the run's
    entries could never be vouched for afterwards.
    """
    if sign_sandbox:
        authority = sandbox_authority(out, create=True)
        assert authority is not None  # created when missing
        root = out / SANDBOX_AUTHORITY / "trusted_root.json"

        def sandbox_signer() -> Signer:
            return lambda data: json.dumps(authority.sign(data)).encode("utf-8")

        return HeadSigning(sandbox_signer, f"sandbox authority: verify with --trusted-root {root}")
    if not sign:
        return None
    from reports.evidence_signature import (
        IDENTITY_VARIABLES,
        SigningError,
        ambient_identity_token,
        keyless_signer,
    )

    if not any(os.environ.get(v) for v in IDENTITY_VARIABLES):
        raise ConfigError("--sign: no ambient OIDC identity (SIGSTORE_ID_TOKEN or a GitHub Actions "
                          "id-token) is available here: the run's ledger head could not be signed",
                          hint=SigningError.default_hint)

    def keyless() -> Signer:
        token = ambient_identity_token()
        if token is None:
            raise SigningError("the ambient OIDC identity disappeared during the run")
        return keyless_signer(token)

    return HeadSigning(keyless, "keyless, sigstore production")


def sandbox_authority(out: Path, *, create: bool) -> SigningAuthority | None:
    """The runs directory's own sandbox signing authority, kept so every run's head verifies
    against one root. Its keys sit beside the runs: it shows the mechanism, it proves nothing."""
    from drills.signing_authority import SigningAuthority

    directory = out / SANDBOX_AUTHORITY
    keys = directory / "authority-keys.json"
    if keys.is_file():
        authority = SigningAuthority.load_keys(keys)
    elif create:
        authority = SigningAuthority.create("sandbox-ledger")
        authority.save_keys(directory)
    else:
        return None
    # Rebuilt from the keys each time (the CA certificates are deterministic): never missing.
    authority.write_trusted_root(directory / "trusted_root.json")
    return authority
