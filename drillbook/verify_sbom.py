"""``drillbook verify sbom``: SBOM checks from a shell or a script, without a feature.

FILE is CycloneDX (JSON, XML) or SPDX 2.2/2.3 (JSON, YAML, tag-value, RDF/XML); the
standard and serialization are recognised from the content (``checks.sbom.loading``).

Exit codes: 0 every check passed; 1 a check failed or errored; 2 usage error or
unreadable input (the SBOM, the release directory, the policy or the advisory
directory cannot be read).

The policy file (TOML) says what to require; every key is optional::

    [sbom]
    required_fields = ["version", "purl"]        # of every package (and untyped component); the default
    denied_licenses = ["AGPL-3.0-only", "SSPL-1.0"]

    [sbom.required_fields_by_type]               # replaces the built-in rule of a type
    library = ["version", "purl", "licenses"]
    cryptographic-asset = ["cryptoProperties"]

    [vulnerabilities]
    advisories = "osv/"                          # OSV JSON mirror; relative to the policy file
    threshold = "high"                           # low | medium | high | critical
    unknown_severity_fails = true

Components are always checked by what they are (checks.sbom.completeness): packages
(library, framework, application, container, operating-system, firmware, device-driver)
need ``required_fields`` (a version and a purl unless the policy says otherwise), a
cryptographic-asset its cryptoProperties, data its data, a file its hashes, anything
else a name; services (a SaaSBOM) a name, an endpoint or a reference and complete data
flows. Fields are CycloneDX component field names.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from checks import redact
from checks.errors import ConfigError
from checks.sbom import (
    ALL_FIELDS,
    PACKAGE_TYPES,
    SbomError,
    components_complete,
    no_denied_licenses,
    parse_rules,
    read_sbom,
    sbom_covers_artifacts,
    validate_sbom,
)
from checks.verdict import Outcome, Verdict, timed
from checks.vulnerabilities import Severity, no_known_vulnerabilities

from .runner import EXIT_FAILED, EXIT_PASSED, EXIT_USAGE

_SECTIONS = {
    "sbom": {"required_fields", "required_fields_by_type", "denied_licenses"},
    "vulnerabilities": {"advisories", "threshold", "unknown_severity_fails"},
}
DEFAULT_REQUIRED = ("version", "purl")  # of packages; other types are held to their kind's fields


@dataclass(frozen=True)
class SbomPolicy:
    """What ``verify sbom`` requires beyond schema validity."""

    required_fields: tuple[str, ...] = DEFAULT_REQUIRED
    required_by_type: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    denied_licenses: frozenset[str] = frozenset()
    advisories: Path | None = None
    threshold: Severity = Severity.HIGH
    unknown_severity_fails: bool = True


def load_policy(path: Path) -> SbomPolicy:
    """Read and validate a policy file; every problem is a ConfigError naming the key and the file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read policy {path}: {exc.strerror or exc}",
                          hint="check the --policy path") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"policy {path} is not valid TOML: {exc}") from exc
    for section, value in data.items():
        if section not in _SECTIONS:
            raise ConfigError(f"policy {path}: unknown section [{section}] (known: {', '.join(_SECTIONS)})")
        if not isinstance(value, dict):
            raise ConfigError(f"policy {path}: {section} must be a table")
        unknown = sorted(set(value) - _SECTIONS[section])
        if unknown:
            raise ConfigError(f"policy {path}: unknown key {section}.{unknown[0]} "
                              f"(known: {', '.join(sorted(_SECTIONS[section]))})")
    sbom: Mapping[str, Any] = data.get("sbom", {})
    vulns: Mapping[str, Any] = data.get("vulnerabilities", {})
    required = _strings(path, "sbom.required_fields", sbom.get("required_fields", list(DEFAULT_REQUIRED)))
    bad = sorted(set(required) - ALL_FIELDS)
    if bad:
        raise ConfigError(f"policy {path}: sbom.required_fields: unknown field {bad[0]!r} "
                          f"(known: {', '.join(sorted(ALL_FIELDS))})")
    try:
        by_type = parse_rules(sbom.get("required_fields_by_type", {}))
    except ValueError as exc:
        raise ConfigError(f"policy {path}: sbom.required_fields_by_type: {exc}",
                          hint=f"fix [sbom.required_fields_by_type] in {path}") from exc
    denied = _strings(path, "sbom.denied_licenses", sbom.get("denied_licenses", []))
    advisories: Path | None = None
    if "advisories" in vulns:
        if not isinstance(vulns["advisories"], str) or not vulns["advisories"]:
            raise ConfigError(f"policy {path}: vulnerabilities.advisories must be a directory path")
        advisories = (path.parent / vulns["advisories"]).resolve()
    threshold = _threshold(f"policy {path}: vulnerabilities.threshold", vulns.get("threshold", "high"))
    unknown_fails = vulns.get("unknown_severity_fails", True)
    if not isinstance(unknown_fails, bool):
        raise ConfigError(f"policy {path}: vulnerabilities.unknown_severity_fails must be true or false")
    return SbomPolicy(tuple(required), by_type, frozenset(denied), advisories, threshold, unknown_fails)


def _strings(path: Path, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"policy {path}: {key} must be a list of non-empty strings")
    return [v.strip() for v in value]


def _threshold(where: str, value: Any) -> Severity:
    try:
        severity = Severity.parse(value) if isinstance(value, str) else None
    except ValueError:
        severity = None
    if severity is None or severity is Severity.NONE:
        raise ConfigError(f"{where}: {value!r} is not one of low, medium, high, critical")
    return severity


def run_checks(sbom: Path, *, artifacts: Path | None, policy: SbomPolicy) -> tuple[list[Verdict], int]:
    """Every configured check on one SBOM, and the exit code they add up to."""
    validity = timed(lambda: validate_sbom(sbom))
    verdicts = [validity]
    if validity.evidence.get("error") == "SbomUnreadable":
        return verdicts, EXIT_USAGE
    try:
        document = read_sbom(sbom)
    except SbomError:
        # validate_sbom already failed naming the reason; the other checks have nothing to read.
        return verdicts, EXIT_FAILED
    if artifacts is not None:
        verdicts.append(timed(lambda: sbom_covers_artifacts(document, artifacts)))
    # required_fields is what a package must carry (as it was before types were told apart);
    # required_fields_by_type overrides any type, packages included.
    by_type = {**dict.fromkeys(PACKAGE_TYPES, policy.required_fields), **policy.required_by_type}
    verdicts.append(timed(lambda: components_complete(document, by_type=by_type)))
    if policy.denied_licenses:
        verdicts.append(timed(lambda: no_denied_licenses(document, policy.denied_licenses)))
    if policy.advisories is not None:
        advisories = policy.advisories
        verdicts.append(timed(lambda: no_known_vulnerabilities(
            document, advisories, threshold=policy.threshold,
            unknown_severity_fails=policy.unknown_severity_fails)))
    failing = any(v.counts_as_fail() for v in verdicts)
    return verdicts, EXIT_FAILED if failing else EXIT_PASSED


def verify_sbom(args: argparse.Namespace) -> int:
    """Exit 0 all checks pass, 1 a check failed, 2 usage or unreadable input."""
    sbom: Path = args.file
    if not sbom.is_file():
        raise ConfigError(f"SBOM {sbom} does not exist or is not a file", hint="give the SBOM's path")
    if args.artifacts is not None and not args.artifacts.is_dir():
        raise ConfigError(f"--artifacts {args.artifacts} is not a directory",
                          hint="point --artifacts at the release directory")
    policy = load_policy(args.policy) if args.policy is not None else SbomPolicy()
    if args.advisories is not None:
        policy = replace(policy, advisories=args.advisories.resolve())
    if args.threshold is not None:
        policy = replace(policy, threshold=_threshold("--threshold", args.threshold))
    if policy.advisories is not None and not policy.advisories.is_dir():
        raise ConfigError(f"advisory directory {policy.advisories} does not exist",
                          hint="point vulnerabilities.advisories or --advisories at the OSV mirror")
    verdicts, code = run_checks(sbom, artifacts=args.artifacts, policy=policy)
    # An advisory directory without a single advisory is unusable input, like a missing one.
    if any(v.id == "sbom.vulnerabilities" and v.outcome is Outcome.ERROR
           and v.evidence.get("error") == "AdvisoriesUnavailable" for v in verdicts):
        code = EXIT_USAGE
    _print(verdicts, as_json=args.json, code=code)
    return code


def _print(verdicts: list[Verdict], *, as_json: bool, code: int) -> None:
    if as_json:
        from .cli import print_json

        print_json({"exit_code": code, "verdicts": [v.to_dict() for v in verdicts]})
        return
    for verdict in verdicts:
        print(redact.redact(f"{verdict.outcome.value.upper():<8} {verdict.id}: {verdict.message}"))


def add_parser(verify_sub: Any) -> None:
    """Register ``verify sbom`` under the ``verify`` subcommands."""
    p_sbom = verify_sub.add_parser(
        "sbom",
        help="validate a CycloneDX or SPDX SBOM, its coverage of a release, licences and vulnerabilities",
        description="Validate FILE (CycloneDX JSON or XML; SPDX 2.2/2.3 JSON, YAML, tag-value or RDF/XML, "
                    "recognised by content) against the version it declares, "
                    "check that every component carries what its type carries (packages a version and a "
                    "purl, cryptographic assets their cryptoProperties, files their hashes, …) and every "
                    "service a name and an endpoint, and optionally that it covers "
                    "a release directory, carries no denied licence and has no known vulnerability. "
                    "Exit 0 passed, 1 failed, 2 usage or unreadable input.",
    )
    p_sbom.add_argument("file", type=Path, metavar="FILE")
    p_sbom.add_argument("--artifacts", type=Path, metavar="DIR",
                        help="release directory whose every file must appear as a component hash")
    p_sbom.add_argument("--policy", type=Path, metavar="FILE",
                        help="TOML: required fields, denied licences, vulnerability threshold and advisories")
    p_sbom.add_argument("--advisories", type=Path, metavar="DIR",
                        help="offline OSV advisory directory (overrides the policy's)")
    p_sbom.add_argument("--threshold", metavar="SEVERITY",
                        help="fail on vulnerabilities at or above: low, medium, high (default), critical")
    p_sbom.add_argument("--json", action="store_true", help="print the verdicts as JSON")
