"""``drillbook evidence export|verify``: the auditor's bundle."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from checks import redact
from checks.durations import parse_duration
from checks.errors import ConfigError
from reports.evidence import LEDGER, SIGNATURE, Problem, VerifyReport, export_bundle, verify_bundle
from reports.evidence_signature import (
    SignatureCheck,
    Signer,
    Trust,
    ambient_identity_token,
    check_signature,
    keyless_signer,
)
from reports.ledger_heads import HeadsVerdict, verify_heads

from .runner import EXIT_FAILED, EXIT_PASSED, EXIT_USAGE


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                parser_class: type[argparse.ArgumentParser]) -> None:
    """``evidence export`` and ``evidence verify`` (called from cli.build_parser)."""
    p_evidence = sub.add_parser("evidence", help="export or verify an auditor's evidence bundle")
    ev_sub = p_evidence.add_subparsers(dest="action", required=True, parser_class=parser_class)
    p_export = ev_sub.add_parser("export", help="one deterministic zip of runs, with a SHA-256 manifest")
    p_export.add_argument("--out", type=Path, default=Path("out"),
                          help="where runs were written (default out/)")
    which = p_export.add_mutually_exclusive_group()
    which.add_argument("--run", action="append", metavar="ID", help="a run id (repeatable; default: latest)")
    which.add_argument("--since", metavar="AGE", help="every run started within AGE, e.g. 90d")
    p_export.add_argument("-o", "--output", type=Path, default=None,
                          help="file to write (default evidence.zip, assessment-results.json, report.pdf)")
    p_export.add_argument("--format", choices=["zip", "oscal", "pdf"], default="zip",
                          help="zip: the evidence bundle; oscal: OSCAL assessment-results JSON; "
                          "pdf: one run's HTML report printed by headless Chromium")
    p_export.add_argument("--ledger", type=Path, metavar="FILE",
                          help="also bundle this ledger.jsonl: verify then checks its chain and that "
                          "every exported scenario has its ledger entry")
    signing = p_export.add_mutually_exclusive_group()
    signing.add_argument("--sign", action="store_true",
                         help="sign the manifest keyless with sigstore, as the CI job's ambient OIDC "
                         "identity (SIGSTORE_ID_TOKEN or GitHub Actions' id-token); without one, "
                         "say so and export unsigned")
    signing.add_argument("--sign-sandbox", action="store_true",
                         help="sign with a throwaway sandbox signing authority and write its trusted "
                         "root next to the bundle: to try signed bundles offline, not for audits")
    p_export.add_argument("--staging", action="store_true",
                          help="with --sign: use sigstore's staging instance")
    p_verify = ev_sub.add_parser("verify", help="check every hash, name any modified, missing or extra file")
    p_verify.add_argument("bundle", type=Path)
    add_trust_options(p_verify)
    p_verify.add_argument("--json", action="store_true", help="print the result as JSON")


def add_trust_options(parser: argparse.ArgumentParser) -> None:
    """The options that ask for a trusted signature; any one of them makes a signature required."""
    parser.add_argument("--identity", help="expected signer identity: require a signature by it")
    parser.add_argument("--issuer", help="expected OIDC issuer of the signer")
    root = parser.add_mutually_exclusive_group()
    root.add_argument("--trusted-root", type=Path, metavar="ROOT.json",
                      help="require signatures that verify against this sigstore trusted root "
                      "(default: sigstore production's, embedded, offline)")
    root.add_argument("--staging", action="store_true",
                      help="require signatures that verify against sigstore staging's embedded root")


def trust_asked(args: argparse.Namespace) -> str | None:
    """Which trust options were given (for messages), or None: then nothing requires a signature."""
    given = [name for name, value in (("--trusted-root", args.trusted_root), ("--staging", args.staging),
                                      ("--identity", args.identity), ("--issuer", args.issuer))
             if value]
    return "/".join(given) or None


def load_trust(args: argparse.Namespace) -> Trust:
    """The pinned root the options name (production's by default) and the expected signer.

    Raises :class:`checks.signatures.SignatureInputError` for an unreadable or malformed root.
    """
    from checks.signatures import embedded_root_path, load_trusted_root

    instance = "staging" if args.staging else "production"
    root = load_trusted_root(args.trusted_root) if args.trusted_root else load_trusted_root(
        embedded_root_path(instance), label=f"sigstore {instance} (embedded)")
    return Trust(root=root, identity=args.identity, issuer=args.issuer,
                 options=trust_asked(args) or "the default root")


def main(args: argparse.Namespace) -> int:
    if args.action == "export":
        return export(args)
    return verify(args)


def select_runs(out: Path, run_ids: list[str] | None, since: str | None, *, now: datetime) -> list[Path]:
    """The run directories to export: named ids, runs started within ``since``, or the latest."""
    if not out.is_dir():
        raise ConfigError(f"{out} does not exist: no run to export",
                          hint="pass --out with the runs directory")
    runs = sorted(p for p in out.iterdir() if p.is_dir() and not p.is_symlink()
                  and (p / "results.json").is_file())
    if run_ids:
        chosen = []
        for ident in run_ids:
            path = out / ident
            if "/" in ident or not (path / "results.json").is_file():
                known = ", ".join(p.name for p in runs[-5:]) or "none"
                raise ConfigError(f"no run {ident!r} in {out} (latest: {known})",
                                  hint="`ls` the runs directory, or use --since")
            chosen.append(path)
        return chosen
    if since:
        try:
            age = parse_duration(since)
        except ValueError as exc:
            raise ConfigError(f"--since: {exc}") from exc
        cutoff = now - age
        chosen = [p for p in runs if _started(p) >= cutoff]
        if not chosen:
            raise ConfigError(f"no run in {out} started within {since}")
        return chosen
    latest = out / "latest"
    if (latest / "results.json").is_file():
        return [latest.resolve()]
    if not runs:
        raise ConfigError(f"no run in {out}", hint="run `drillbook run` first")
    return [runs[-1]]


def _started(run_dir: Path) -> datetime:
    try:
        data = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        moment = datetime.fromisoformat(data["started_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def export(args: argparse.Namespace) -> int:
    runs = select_runs(args.out, args.run, args.since, now=datetime.now(UTC))
    if args.format == "oscal":
        return export_oscal(runs, args.output or Path("assessment-results.json"))
    if args.format == "pdf":
        return export_pdf(runs, args.output or Path("report.pdf"))
    target: Path = args.output or Path("evidence.zip")
    sign, signed_by = _signer(args, target)
    data = export_bundle(runs, ledger=args.ledger, sign=sign)
    _write(target, data)
    report = verify_bundle(data, name=str(target))
    print(f"evidence: {target} — {len(runs)} run(s), {report.files_checked} files, {len(data)} bytes")
    print(f"manifest sha256: {report.manifest_sha256}")
    if signed_by:
        print(f"signed: {signed_by}")
    return EXIT_PASSED


def _signer(args: argparse.Namespace, target: Path) -> tuple[Signer | None, str | None]:
    """The manifest signer the options ask for, and how to say who signed."""
    if args.sign_sandbox:
        from drills.signing_authority import DEFAULT_IDENTITY, DEFAULT_ISSUER, SigningAuthority

        from .ledger_signing import sandbox_authority

        # The runs' own sandbox authority when `run --sign-sandbox` made one: the bundled ledger's
        # signed heads and the manifest then verify against the one root written beside the bundle.
        authority = sandbox_authority(args.out, create=False) or SigningAuthority.create("sandbox-evidence")
        root = authority.write_trusted_root(target.with_name(target.stem + ".trusted_root.json"))

        def sandbox_sign(data: bytes) -> bytes:
            return json.dumps(authority.sign(data), indent=2).encode("utf-8")

        return sandbox_sign, (f"{DEFAULT_IDENTITY} ({DEFAULT_ISSUER}), sandbox authority: verify with "
                              f"--trusted-root {root}")
    if not args.sign:
        return None, None
    token = ambient_identity_token()
    if token is None:
        print("drillbook: --sign: no ambient OIDC identity (SIGSTORE_ID_TOKEN or a GitHub Actions "
              "id-token) is available here; exported unsigned", file=sys.stderr)
        return None, None
    instance = "staging" if args.staging else "production"
    return keyless_signer(token, staging=args.staging), f"keyless, sigstore {instance}"


def _write(target: Path, data: bytes) -> None:
    from checks.files import write_atomic

    write_atomic(target, data, phase="writing the evidence export", what="--output")


def export_oscal(runs: list[Path], target: Path) -> int:
    """OSCAL assessment results for the runs; observations point at the bundle's scenario files."""
    from reports.evidence import scenario_member
    from reports.oscal import assessment_results, control_ids
    from reports.results import RunResult

    results = [RunResult.read(run / "results.json") for run in runs]
    hrefs = {(r.run_id, s.nodeid): scenario_member(r.run_id, i, s.scenario_id)
             for r in results for i, s in enumerate(r.scenarios, start=1)}
    _write(target, redact.redact(assessment_results(results, evidence_paths=hrefs)).encode("utf-8"))
    controls = sorted({c for r in results for s in r.scenarios for c in control_ids(s.tags)})
    print(f"oscal: {target} — assessment results for {len(results)} run(s), "
          f"controls {', '.join(controls) or 'none (tag scenarios @control:... or @ref:...)'}")
    return EXIT_PASSED


def export_pdf(runs: list[Path], target: Path) -> int:
    """One run's HTML report as PDF (a PDF summary of several runs is not a thing the report does)."""
    from reports.pdf import html_to_pdf

    if len(runs) != 1:
        raise ConfigError(f"--format pdf prints one run's report; {len(runs)} runs were selected",
                          hint="pass one --run ID (or none for the latest)")
    written = html_to_pdf(runs[0] / "report.html", target)
    print(f"pdf: {written} — the report of run {runs[0].name}, {written.stat().st_size} bytes")
    return EXIT_PASSED


def verify(args: argparse.Namespace) -> int:
    path: Path = args.bundle
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"drillbook: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    report = verify_bundle(data, name=str(path))
    from checks.signatures import SignatureInputError

    try:
        trust = load_trust(args)
    except SignatureInputError as exc:
        print(f"drillbook: {exc}", file=sys.stderr)
        return EXIT_USAGE
    asked = trust_asked(args)
    signature = check_signature(report, trusted_root=trust.root, identity=args.identity,
                                issuer=args.issuer, trust_asked=asked)
    heads = None
    if asked and report.ledger is not None:
        # Trust asked: the bundled ledger must be vouched for by signed heads, entry by entry.
        heads = verify_heads(report.ledger, trust)
        report.problems.extend(Problem("ledger", LEDGER, str(p)) for p in heads.problems)
    if args.json:
        print(json.dumps(_as_json(report, signature, heads), indent=2))
    else:
        _print_report(report, signature, heads)
    return EXIT_PASSED if report.ok and signature.problem is None else EXIT_FAILED


def heads_summary(heads: HeadsVerdict) -> str:
    """One line for the reader: how far signed heads vouch for the ledger, and who signed them."""
    if not heads.verified:
        return "no verified signed head"
    return (f"{heads.verified} signed head(s) verified, entries up to seq {heads.covered_to} vouched for, "
            f"signed by {'; '.join(heads.signers)}")


def _as_json(report: VerifyReport, signature: SignatureCheck,
             heads: HeadsVerdict | None = None) -> dict[str, object]:
    problems = [{"kind": p.kind, "path": p.path, "detail": p.detail} for p in report.problems]
    if signature.problem:
        problems.append({"kind": "signature", "path": SIGNATURE if signature.signed else "",
                         "detail": signature.problem})
    return {"bundle": report.path, "ok": report.ok and not signature.problem,
            "manifest_sha256": report.manifest_sha256, "runs": report.runs,
            "files_checked": report.files_checked, "signed": signature.signed,
            "signer": signature.signer, "signer_issuer": signature.issuer,
            "signature_evidence": signature.evidence,
            "ledger_signed_heads": None if heads is None else {
                "verified": heads.verified, "covered_to_seq": heads.covered_to, "signers": heads.signers},
            "problems": problems}


def _print_report(report: VerifyReport, signature: SignatureCheck, heads: HeadsVerdict | None = None) -> None:
    for problem in report.problems:
        print(f"  {problem}")
    if signature.problem:
        print(f"  signature: {signature.problem}")
    if report.ok and not signature.problem:
        signed = (f"signed by {signature.signer} ({signature.issuer}), trusted root "
                  f"{signature.evidence.get('trusted_root')}" if signature.signed else "unsigned")
        print(f"evidence OK: {report.path} — {report.files_checked} files match the manifest, "
              f"runs {', '.join(report.runs)}; {signed}")
        print(f"manifest sha256: {report.manifest_sha256} (compare with the exporter's)")
        if heads is not None:
            print(f"ledger: {heads_summary(heads)}")
    else:
        count = len(report.problems) + (1 if signature.problem else 0)
        print(f"evidence NOT VERIFIED: {report.path} — {count} problem(s)")
