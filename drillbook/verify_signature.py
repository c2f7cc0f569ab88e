"""``drillbook verify signature``: verify one artifact's sigstore bundle from a shell or a script.

The bundle may sign the file (``messageSignature``) or carry a DSSE attestation about it
(``dsseEnvelope``, e.g. SLSA provenance): both are recognised as they come, as sigstore's own CLI
does. ``--attestation`` *requires* the second kind.

Exit codes: 0 verified; 1 not verified (the reason is printed: a bad signature, another signer, an
attestation whose subjects do not include FILE or whose payload is not in-toto, a plain signature
where an attestation was required); 2 usage error or unreadable input (the artifact, the bundle or
the trusted root cannot be read, or the trusted root is not one).

Hermetic by default: the trusted root is ``--trusted-root FILE``, or the
production (default) or ``--staging`` root embedded in the installed sigstore
package, read as a file. ``--online`` alone refreshes the root over TUF.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from checks import redact
from checks.errors import ConfigError
from checks.signatures import (
    BundleContent,
    GitHubWorkflow,
    LoadedRoot,
    SignatureInputError,
    embedded_root_path,
    find_bundle,
    load_trusted_root,
    online_root,
    verify_bundle,
)
from checks.verdict import Outcome, Verdict, timed

from .runner import EXIT_FAILED, EXIT_PASSED, EXIT_USAGE


def _root(args: argparse.Namespace) -> LoadedRoot:
    instance = "staging" if args.staging else "production"
    if args.online and args.trusted_root is not None:
        raise ConfigError("--online and --trusted-root exclude each other",
                          hint="a pinned root file is never refreshed; drop one of the two")
    try:
        if args.trusted_root is not None:
            return load_trusted_root(args.trusted_root)
        if args.online:
            return online_root(instance)
        return load_trusted_root(embedded_root_path(instance), label=f"embedded:{instance}")
    except SignatureInputError as exc:
        raise ConfigError(exc.message, hint=exc.hint) from exc


def verify_signature(args: argparse.Namespace) -> int:
    """Exit 0 verified, 1 not verified, 2 usage or unreadable input."""
    artifact: Path = args.file
    if not artifact.is_file():
        raise ConfigError(f"artifact {artifact} does not exist or is not a file",
                          hint="give the path of the signed file")
    bundle: Path | None = args.bundle or find_bundle(artifact)
    if bundle is None:
        raise ConfigError(f"no --bundle given and no {artifact.name}.sigstore.json or "
                          f"{artifact.name}.sigstore next to {artifact}",
                          hint="pass --bundle with the sigstore bundle's path")
    if not bundle.is_file():
        raise ConfigError(f"bundle {bundle} does not exist or is not a file", hint="check --bundle")
    root = _root(args)
    github = GitHubWorkflow(args.repository, args.ref, args.trigger)
    # One check id per question asked: "is FILE signed?" unless an attestation was required.
    wants_attestation = args.attestation or args.predicate_type is not None
    require, check_id = ((BundleContent.DSSE, "attestation.verified") if wants_attestation
                         else (None, "signature.verified"))
    verdict = timed(lambda: verify_bundle(
        artifact, bundle, trusted_root=root, identity=args.identity, issuer=args.issuer, github=github,
        require=require, predicate_type=args.predicate_type, check_id=check_id))
    code = _exit_code(verdict)
    _print(verdict, as_json=args.json, code=code)
    return code


def _exit_code(verdict: Verdict) -> int:
    if verdict.outcome is Outcome.PASSED:
        return EXIT_PASSED
    # "error" means an input could not be read: a usage problem, not a verdict on the signature.
    return EXIT_USAGE if verdict.outcome is Outcome.ERROR else EXIT_FAILED


def _print(verdict: Verdict, *, as_json: bool, code: int) -> None:
    if as_json:
        from .cli import print_json

        print_json({"exit_code": code, "verdicts": [verdict.to_dict()]})
        return
    print(redact.redact(f"{verdict.outcome.value.upper():<8} {verdict.id}: {verdict.message}"))
    evidence = verdict.evidence
    for key in ("artifact_sha256", "bundle_content", "predicate", "statement_error_path", "cert_identity",
                "cert_oidc_issuer", "tlog_index", "tlog_integrated_time", "tsa_times", "trusted_root",
                "trusted_root_sha256", "hint"):
        if evidence.get(key) is not None:
            print(redact.redact(f"         {key}: {evidence[key]}"))


def add_parser(verify_sub: Any) -> None:
    """Register ``verify signature`` under the ``verify`` subcommands."""
    p = verify_sub.add_parser(
        "signature", help="verify a file's sigstore bundle offline (identity and OIDC issuer required)",
        description="Verify FILE against its sigstore bundle: signed by --identity, as asserted by "
                    "--issuer, with a certificate chaining to the trusted root. A bundle carrying a DSSE "
                    "in-toto attestation is verified as one: a subject's SHA-256 must be FILE's. "
                    "Offline by default. "
                    "Exit 0 verified, 1 not verified, 2 usage or unreadable input.",
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--bundle", type=Path, metavar="B",
                   help="the bundle (default: FILE.sigstore.json or FILE.sigstore next to FILE)")
    p.add_argument("--identity", required=True, metavar="I",
                   help="expected signer: e-mail or URI (e.g. a GitHub workflow URL) in the certificate")
    p.add_argument("--issuer", required=True, metavar="ISS",
                   help="expected OIDC issuer, e.g. https://token.actions.githubusercontent.com")
    roots = p.add_mutually_exclusive_group()
    roots.add_argument("--trusted-root", type=Path, metavar="ROOT.json",
                       help="a pinned trusted root file (e.g. the sandbox's)")
    roots.add_argument("--staging", action="store_true",
                       help="the sigstore staging root embedded in the sigstore package (offline)")
    p.add_argument("--online", action="store_true",
                   help="refresh the production (or --staging) root over TUF: network and ~/.cache")
    p.add_argument("--repository", metavar="OWNER/NAME", help="GitHub workflow repository to require")
    p.add_argument("--ref", metavar="REF", help="GitHub workflow ref to require, e.g. refs/tags/v1.2.0")
    p.add_argument("--trigger", metavar="EVENT", help="GitHub workflow trigger to require, e.g. push")
    p.add_argument("--attestation", action="store_true",
                   help="require an attestation: fail on a bundle that signs FILE directly. Without it, "
                        "a DSSE (in-toto) bundle is still recognised and verified as one")
    p.add_argument("--predicate-type", metavar="URI",
                   help="require this in-toto predicate type, e.g. https://slsa.dev/provenance/v1")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
