"""Supply-chain steps: signatures, attestations, SBOM and vulnerabilities of a release directory.

Thin glue: resolve the release, call a check from ``checks.signatures`` /
``checks.sbom`` / ``checks.vulnerabilities``, ``record()`` the verdict.

The release named "release" in the local sandbox is built and signed by the
sandbox signing authority (``drills.releases.build_sandbox_release``), and
"release-canary" is the same release with one artifact altered after signing.
Setting ``DRILLBOOK_CANARY=1`` (``drillbook run --canary``) makes "release"
itself the broken one, so a user sees the gate fail for the right reason.
Elsewhere a release is a ``directory`` or ``s3`` target of that name in
drillbook.toml. A release found on disk is never trusted to bring its own
trusted root: that comes from the scenario (default: sigstore production,
embedded in the sigstore package, offline).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pytest_bdd import given, parsers, then

from checks.errors import ConfigError, DrillbookError
from checks.sbom import (
    components_complete,
    components_have_fields,
    no_denied_licenses,
    sbom_covers_artifacts,
    validate_sbom,
)
from checks.signatures import (
    GitHubWorkflow,
    LoadedRoot,
    embedded_root_path,
    find_bundle,
    load_trusted_root,
    verify_artifacts,
    verify_attestation,
    verify_bundle,
)
from checks.verdict import Outcome, Verdict
from checks.vulnerabilities import Severity, no_known_vulnerabilities
from drills.releases import Release, build_sandbox_release, open_release

from .context import ScenarioState
from .guard import guarded

SANDBOX_RELEASES = ("release", "release-canary")
# The embedded environments (local servers or containers) have no release of their own: drillbook builds one.
SANDBOX_ENVIRONMENTS = ("local", "containers")


def canary_requested() -> bool:
    """``drillbook run --canary`` (or DRILLBOOK_CANARY=1): the sandbox "release" is broken on purpose."""
    return os.environ.get("DRILLBOOK_CANARY", "").strip().lower() in {"1", "true", "yes"}


@dataclass
class Releases:
    """Release directories by logical name, built or downloaded once per run."""

    env: Any
    workdir: Path
    _cache: dict[str, Release] = field(default_factory=dict)

    def get(self, name: str) -> Release:
        """The release ``name``: the sandbox's own, or a configured directory/s3 target."""
        if name not in self._cache:
            self._cache[name] = self._resolve(name)
        return self._cache[name]

    def _resolve(self, name: str) -> Release:
        if getattr(self.env, "name", None) in SANDBOX_ENVIRONMENTS and name in SANDBOX_RELEASES:
            canary = name == "release-canary" or canary_requested()
            return build_sandbox_release(self.workdir / name, canary=canary)
        try:
            spec = self.env.store(name)
        except (ConfigError, LookupError, KeyError) as exc:
            raise ConfigError(
                f"no release named {name!r}: {exc}",
                hint=f"add a target `[targets.{name}]` with kind = \"directory\" (path = the release "
                     "folder) or kind = \"s3\" (url = s3://bucket/prefix/) to drillbook.toml",
            ) from exc
        return open_release(spec, self.workdir / "downloads")


@pytest.fixture(scope="session")
def drillbook_releases(drillbook_env: Any) -> Iterator[Releases]:
    """Release directories for this run, built or downloaded into a temporary folder removed at the end."""
    # Not tmp_path_factory: pytest keeps its temp dirs after the run; a run leaves nothing behind.
    workdir = Path(tempfile.mkdtemp(prefix="drillbook-releases-"))
    try:
        yield Releases(drillbook_env, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class SupplyChainState:
    """What the Given steps of one scenario set."""

    release: Release | None = None
    root: LoadedRoot | None = None
    identity: str | None = None
    issuer: str | None = None
    github: GitHubWorkflow | None = None
    advisories: Path | None = None


def _state(drill_state: ScenarioState) -> SupplyChainState:
    found = drill_state.notes.get("supply_chain")
    if not isinstance(found, SupplyChainState):
        found = SupplyChainState()
        drill_state.notes["supply_chain"] = found
    return found


def _release(state: SupplyChainState) -> Release:
    if state.release is None:
        raise ConfigError("no release in this scenario",
                          hint='start the scenario with `Given the release "<name>"`')
    return state.release


def _root(state: SupplyChainState) -> LoadedRoot:
    if state.root is not None:
        return state.root
    release = _release(state)
    if release.trusted_root is not None:  # only the sandbox's own release carries one
        return load_trusted_root(release.trusted_root, label=f"sandbox:{release.trusted_root}")
    return load_trusted_root(embedded_root_path("production"), label="embedded:production")


def _signer(state: SupplyChainState) -> tuple[str, str]:
    release = _release(state)
    identity = state.identity or release.identity
    issuer = state.issuer or release.issuer
    if not identity or not issuer:
        raise ConfigError(
            f"release {release.name}: no expected signer",
            hint='add `Given signatures are expected from identity "<identity>" and issuer "<issuer>"`',
        )
    return identity, issuer


# ---- Given ----------------------------------------------------------------------------------


@given(parsers.parse('the release "{name}"'))
def the_release(name: str, drillbook_releases: Releases, drill_state: ScenarioState) -> None:
    """Name the release directory (sandbox, or a directory/s3 target of drillbook.toml)."""
    state = _state(drill_state)

    def resolve() -> Verdict:
        release = drillbook_releases.get(name)
        state.release = release
        return Verdict.passed("release.found", f"release {name}: {len(release.artifacts())} artifact(s) "
                              f"in {release.source}", measured=len(release.artifacts()),
                              evidence={"source": release.source, **release.notes,
                                        "artifacts": [a.relative_to(release.directory).as_posix()
                                                      for a in release.artifacts()]})

    guarded("release.found", resolve)


@given(parsers.parse('the trusted root "{root}"'))
def the_trusted_root(root: str, drill_state: ScenarioState) -> None:
    """Pin the trusted root: a file path, or "production"/"staging" (embedded in sigstore, offline)."""
    state = _state(drill_state)

    def load() -> Verdict:
        if root in ("production", "staging"):
            state.root = load_trusted_root(embedded_root_path(root), label=f"embedded:{root}")
        else:
            state.root = load_trusted_root(Path(root))
        return Verdict.passed("signature.trusted_root", f"trusted root {state.root.label}",
                              evidence=state.root.evidence())

    guarded("signature.trusted_root", load)


@given(parsers.parse('signatures are expected from identity "{identity}" and issuer "{issuer}"'))
def expected_signer(identity: str, issuer: str, drill_state: ScenarioState) -> None:
    """The certificate identity (e-mail or URI) and OIDC issuer every signature must carry."""
    state = _state(drill_state)
    state.identity, state.issuer = identity, issuer


@given(parsers.parse('signatures come from the GitHub workflow of "{repository}" at ref "{ref}"'))
def expected_github_workflow(repository: str, ref: str, drill_state: ScenarioState) -> None:
    """Also require the GitHub-Actions repository and ref claims in each certificate."""
    _state(drill_state).github = GitHubWorkflow(repository=repository, ref=ref)


@given(parsers.parse('the advisories in "{directory}"'))
def the_advisories(directory: str, drill_state: ScenarioState) -> None:
    """An offline OSV advisory mirror (a folder of OSV JSON files) for the vulnerability scan."""
    _state(drill_state).advisories = Path(directory)


# ---- Then: signatures -----------------------------------------------------------------------


@then("every artifact has a valid signature from the expected identity")
def every_artifact_signed(drill_state: ScenarioState) -> None:
    """Each artifact's bundle verifies against the trusted root; an artifact without a bundle fails."""
    state = _state(drill_state)

    def check() -> Verdict:
        identity, issuer = _signer(state)
        release = _release(state)
        return verify_artifacts(release.artifacts(), trusted_root=_root(state), identity=identity,
                                issuer=issuer, github=state.github, check_id="release.signatures")

    guarded("release.signatures", check)


@then("the SBOM is signed by the expected identity")
def sbom_signed(drill_state: ScenarioState) -> None:
    """The SBOM's own bundle verifies: the bill of materials is the one the release pipeline wrote."""
    state = _state(drill_state)

    def check() -> Verdict:
        identity, issuer = _signer(state)
        sbom = _sbom(state)
        bundle = find_bundle(sbom)
        if bundle is None:
            return Verdict.failed("release.sbom_signature", f"the SBOM {sbom} has no bundle "
                                  f"({sbom.name}.sigstore.json or .sigstore): it is unsigned")
        return verify_bundle(sbom, bundle, trusted_root=_root(state), identity=identity, issuer=issuer,
                             github=state.github, check_id="release.sbom_signature")

    guarded("release.sbom_signature", check)


@then("the provenance attestation verifies and covers every artifact")
def provenance_covers(drill_state: ScenarioState) -> None:
    """An in-toto attestation (DSSE) verifies and its subjects' SHA-256 include every artifact."""
    state = _state(drill_state)

    def check() -> Verdict:
        identity, issuer = _signer(state)
        release = _release(state)
        attestations = release.attestations()
        if not attestations:
            return Verdict.failed("release.provenance", f"release {release.name} has no attestation "
                                  f"(*.intoto.sigstore.json) in {release.source}")
        verdicts = [verify_attestation(a, release.artifacts(), trusted_root=_root(state), identity=identity,
                                       issuer=issuer, github=state.github, check_id="release.provenance")
                    for a in attestations]
        # One attestation covering everything is enough; report the best one, or every failure.
        passing = [v for v in verdicts if not v.counts_as_fail()]
        if passing:
            return passing[0]
        return verdicts[0] if len(verdicts) == 1 else Verdict.failed(
            "release.provenance", "no attestation verifies and covers every artifact: "
            + "; ".join(v.message for v in verdicts))

    guarded("release.provenance", check)


# ---- Then: SBOM and vulnerabilities -----------------------------------------------------------


def _sbom(state: SupplyChainState) -> Path:
    release = _release(state)
    sbom = release.sbom()
    if sbom is None:
        raise ReleaseWithoutSbom(f"release {release.name} has no SBOM (sbom.cdx.json, bom.json, *.cdx.xml, "
                                 f"*.spdx.json, *.spdx, ...) in {release.source}")
    return sbom


class ReleaseWithoutSbom(DrillbookError):
    default_hint = "publish a CycloneDX or SPDX SBOM (e.g. sbom.cdx.json, sbom.spdx.json) with the release"


def _sbom_check(check_id: str, state: SupplyChainState, run: Callable[[Path], Verdict]) -> None:
    def check() -> Verdict:
        try:
            sbom = _sbom(state)
        except ReleaseWithoutSbom as exc:
            return Verdict.failed(check_id, str(exc))
        return run(sbom)

    guarded(check_id, check)


def _valid_as(standard: str | None) -> Callable[[Path], Verdict]:
    """``sbom.valid``, and when a standard is named, the SBOM must be of that standard."""

    def run(sbom: Path) -> Verdict:
        verdict = validate_sbom(sbom)
        found = str(verdict.evidence.get("standard", "CycloneDX"))
        if standard is None or verdict.outcome is not Outcome.PASSED or found == standard:
            return verdict
        return Verdict.failed("sbom.valid", f"{sbom.name} is a valid {found} document, not {standard}",
                              measured=found, expected=standard, evidence=verdict.evidence)

    return run


@then("the SBOM is valid")
def sbom_valid_any(drill_state: ScenarioState) -> None:
    """Valid CycloneDX (JSON, XML) or SPDX 2.2/2.3 (JSON, YAML, tag-value, RDF/XML), for its own version."""
    _sbom_check("sbom.valid", _state(drill_state), _valid_as(None))


@then("the SBOM is valid CycloneDX")
def sbom_valid(drill_state: ScenarioState) -> None:
    """Schema-valid CycloneDX for the spec version it declares (JSON or XML)."""
    _sbom_check("sbom.valid", _state(drill_state), _valid_as("CycloneDX"))


@then("the SBOM is valid SPDX")
def sbom_valid_spdx(drill_state: ScenarioState) -> None:
    """A valid SPDX 2.2/2.3 document by spdx-tools' validator, in any of its four serializations."""
    _sbom_check("sbom.valid", _state(drill_state), _valid_as("SPDX"))


@then("the SBOM covers every artifact of the release")
def sbom_covers(drill_state: ScenarioState) -> None:
    """Every artifact's SHA-256 (and every images.txt digest) is a component hash in the SBOM."""
    state = _state(drill_state)
    _sbom_check("sbom.covers_artifacts", state,
                lambda sbom: sbom_covers_artifacts(sbom, _release(state).directory))


@then("every SBOM component has a version and a purl")
def sbom_complete(drill_state: ScenarioState) -> None:
    """No component lacks a version or a package URL (a scan cannot match what it cannot name)."""
    _sbom_check("sbom.components_complete", _state(drill_state),
                lambda sbom: components_have_fields(sbom, ("version", "purl")))


@then("every SBOM component is complete for its type")
def sbom_complete_by_type(drill_state: ScenarioState) -> None:
    """Packages have a version and a purl, cryptographic assets their cryptoProperties, data its data,
    files their hashes; services (a SaaSBOM) a name and an endpoint (checks.sbom.completeness)."""
    _sbom_check("sbom.components_complete", _state(drill_state), components_complete)


@then(parsers.parse('no SBOM component carries a denied licence: {licences}'))
def sbom_licences(licences: str, drill_state: ScenarioState) -> None:
    """No component is licensed only under one of the comma-separated SPDX ids."""
    denied = [x.strip() for x in licences.split(",") if x.strip()]
    _sbom_check("sbom.licenses", _state(drill_state), lambda sbom: no_denied_licenses(sbom, denied))


@then(parsers.parse('no SBOM component has a known vulnerability at or above "{severity}" severity'))
def sbom_vulnerabilities(severity: str, drill_state: ScenarioState) -> None:
    """Scan the SBOM's components against the offline OSV advisories (the release's, or named)."""
    state = _state(drill_state)

    def run(sbom: Path) -> Verdict:
        advisories = state.advisories or _release(state).advisories
        if advisories is None:
            raise ConfigError("no advisory directory for the vulnerability scan",
                              hint='add `Given the advisories in "<OSV mirror folder>"`')
        try:
            threshold = Severity.parse(severity)
        except ValueError as exc:
            raise ConfigError(f"unknown severity {severity!r}",
                              hint="use low, medium, high or critical") from exc
        return no_known_vulnerabilities(sbom, advisories, threshold=threshold)

    _sbom_check("sbom.vulnerabilities", state, run)
