"""Known vulnerabilities of SBOM components, from an offline OSV advisory directory.

The team mirrors OSV advisories (https://ossf.github.io/osv-schema/) as JSON
files in a directory (e.g. an ecosystem's ``all.zip`` unpacked); nothing here
goes online. For every SBOM component with a purl, an advisory applies when one
of its ``affected[]`` entries names the same package (``ecosystem`` + ``name``,
or a ``purl``) and its ``versions`` list or a ``SEMVER``/``ECOSYSTEM`` range
(events ``introduced`` / ``fixed`` / ``last_affected``, evaluated as the OSV
spec says) includes the component's version.

Versions: PEP 440 for PyPI (``packaging.version``); a semver-like order for
every other ecosystem (optional ``v`` and epoch, numeric release parts, then
pre-release < release < post-release tags). Distribution ecosystems (Debian,
Alpine, …) get the same approximation with ``-N`` read as a revision.

Severity of an advisory: the highest of its CVSS vectors (v3.x, v4.0, v2
base scores computed with the ``cvss`` package) and its textual severities
(``database_specific.severity`` such as GitHub's LOW/MODERATE/HIGH/CRITICAL,
``affected[].ecosystem_specific.severity``). An advisory without any is
``unknown`` and counts as failing unless told otherwise.

Public surface (stable):

- :class:`Severity`, :func:`cvss_base_score`
- :func:`load_advisories` ``(directory) -> AdvisoryDatabase``
- :func:`find_vulnerabilities` ``(components, db) -> Scan``: every hit, below or above any threshold
- :func:`no_known_vulnerabilities` ``(sbom, advisories, *, threshold) -> Verdict`` ``sbom.vulnerabilities``
- :func:`parse_version`, :func:`version_in_range`: the comparison rules, for tests and reuse

Errors::

    DrillbookError
    └── AdvisoryError
        ├── AdvisoriesUnavailable   the advisory directory is missing or empty  -> error verdict
        └── VersionUnparseable      a version cannot be ordered in its ecosystem  -> "undetermined"
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from checks.errors import DrillbookError
from checks.purls import parse_purl
from checks.sbom import Component, SbomDocument, SbomError, read_sbom
from checks.verdict import Verdict

__all__ = [
    "AdvisoriesUnavailable",
    "Advisory",
    "AdvisoryDatabase",
    "AdvisoryError",
    "Affected",
    "Hit",
    "Range",
    "Scan",
    "Severity",
    "VersionUnparseable",
    "cvss_base_score",
    "find_vulnerabilities",
    "load_advisories",
    "no_known_vulnerabilities",
    "package_key",
    "parse_version",
    "purl_package",
    "version_in_range",
]

_MAX_LISTED = 10


class AdvisoryError(DrillbookError):
    """The advisories could not be used."""


class AdvisoriesUnavailable(AdvisoryError):
    default_hint = "point the advisory directory at the team's OSV mirror (OSV JSON files) and refresh it"


class VersionUnparseable(AdvisoryError):
    default_hint = "the version string does not follow its ecosystem's rules; check the SBOM generator"


class Severity(enum.IntEnum):
    """Severity ratings in order; CVSS scores map to them as CVSS v3.1 rates them."""

    NONE = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Severity:
        """``low`` / ``medium`` (``moderate``) / ``high`` (``important``) / ``critical`` / ``none``."""
        key = text.strip().lower()
        if key in _SEVERITY_WORDS:
            return _SEVERITY_WORDS[key]
        raise ValueError(f"unknown severity {text!r}; expected one of low, medium, high, critical")

    @classmethod
    def from_score(cls, score: float) -> Severity:
        """The CVSS v3.1 qualitative rating of a base score."""
        if score >= 9.0:  # the CVSS v3.1 rating scale
            return cls.CRITICAL
        if score >= 7.0:
            return cls.HIGH
        if score >= 4.0:
            return cls.MEDIUM
        if score > 0.0:
            return cls.LOW
        return cls.NONE

    @property
    def label(self) -> str:
        return self.name.lower()


_SEVERITY_WORDS = {
    "none": Severity.NONE, "negligible": Severity.NONE, "unimportant": Severity.NONE,
    "low": Severity.LOW, "medium": Severity.MEDIUM, "moderate": Severity.MEDIUM,
    "high": Severity.HIGH, "important": Severity.HIGH, "critical": Severity.CRITICAL,
}


def cvss_base_score(vector: str) -> float:
    """The base score of a CVSS v2, v3.0/3.1 or v4.0 vector. Raises ``ValueError`` when malformed."""
    from cvss import CVSS2, CVSS3, CVSS4
    from cvss.exceptions import CVSSError

    text = vector.strip()
    try:
        if text.startswith("CVSS:3."):
            return float(CVSS3(text).scores()[0])
        if text.startswith("CVSS:4."):
            return float(CVSS4(text).base_score)
        if text.startswith(("AV:", "(AV:")):
            return float(CVSS2(text.strip("()")).scores()[0])
    except (CVSSError, KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"malformed CVSS vector {text[:120]!r}: {exc}") from exc
    raise ValueError(f"not a CVSS vector: {text[:120]!r}")


# ---------------------------------------------------------------------------- versions

# Ecosystems whose "-N" suffix is a packaging revision (after the release), not a pre-release.
_DISTROS = frozenset({"debian", "ubuntu", "alpine", "red hat", "rocky linux", "almalinux", "suse",
                      "opensuse", "photon os", "mageia", "wolfi", "chainguard", "openeuler"})
_PRE_WORDS = frozenset({"a", "alpha", "b", "beta", "c", "rc", "cr", "pre", "preview", "dev", "snapshot",
                        "m", "milestone", "ea", "canary", "next", "nightly"})
_POST_WORDS = frozenset({"final", "ga", "release", "r", "p", "post", "sp", "patch", "pl"})
_SEMVERISH = re.compile(r"^[vV]?(?:(?P<epoch>\d+):)?(?P<release>\d+(?:[._]\d+)*)(?P<rest>.*)$", re.DOTALL)
_TOKENS = re.compile(r"\d+|[A-Za-z]+")


@functools.total_ordering
@dataclass(frozen=True, eq=False)
class OrderedVersion:
    """A version string with its ecosystem's order (compare only within one ecosystem)."""

    text: str
    key: Any = field(repr=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OrderedVersion) and bool(self.key == other.key)

    def __lt__(self, other: OrderedVersion) -> bool:
        return bool(self.key < other.key)

    def __hash__(self) -> int:
        return hash(self.key)


_LOWEST = OrderedVersion("0", (-1,))  # OSV's introduced "0": before every version


def _semverish_key(text: str, *, dash_is_prerelease: bool) -> tuple[Any, ...]:
    match = _SEMVERISH.match(text.strip())
    if match is None:
        raise VersionUnparseable(f"version {text[:80]!r} does not start with a number", version=text[:80])
    epoch = int(match.group("epoch") or 0)
    release = [int(part) for part in re.split(r"[._]", match.group("release"))]
    while len(release) > 1 and release[-1] == 0:
        release.pop()  # 1.0 == 1.0.0
    rest = match.group("rest").split("+", 1)[0]  # build metadata does not order (semver 2.0.0 §10)
    tokens = _TOKENS.findall(rest)
    if not tokens:
        if rest.strip("-._~"):
            raise VersionUnparseable(f"version {text[:80]!r} has an unreadable suffix {rest[:40]!r}",
                                     version=text[:80])
        return (epoch, tuple(release), 1, ())
    tail = tuple((0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in tokens)
    first = tokens[0].lower()
    if (first in _PRE_WORDS or rest.startswith("~")  # Debian's ~ sorts before the release
            or (rest.startswith("-") and dash_is_prerelease and first not in _POST_WORDS)):
        rank = 0
    else:
        rank = 2
    return (epoch, tuple(release), rank, tail)


def _ecosystem_base(ecosystem: str) -> str:
    """``Debian:12`` -> ``debian``: advisories carry a release suffix, purls do not."""
    return ecosystem.split(":", 1)[0].strip().lower()


def parse_version(ecosystem: str, text: str) -> OrderedVersion:
    """Order ``text`` by ``ecosystem``'s rules. Raises :class:`VersionUnparseable`."""
    if not isinstance(text, str) or not text.strip():
        raise VersionUnparseable(f"empty version in {ecosystem}", version="")
    if not isinstance(ecosystem, str):
        return _parse_version(ecosystem, text)
    return _parse_version_cached(ecosystem, text)


def _parse_version(ecosystem: str, text: str) -> OrderedVersion:
    base = _ecosystem_base(ecosystem)
    if base == "pypi":
        try:
            return OrderedVersion(text, (0, Version(text)))
        except InvalidVersion as exc:
            raise VersionUnparseable(f"version {text[:80]!r} is not PEP 440", version=text[:80]) from exc
    return OrderedVersion(text, (0, _semverish_key(text, dash_is_prerelease=base not in _DISTROS)))


# Every component is compared with every range of its advisories, and each range's event versions
# were parsed again for each component: parse each (ecosystem, version) once. OrderedVersion is
# frozen; an unparseable version raises every time (lru_cache keeps no exceptions).
_parse_version_cached = functools.lru_cache(maxsize=65_536)(_parse_version)


@dataclass(frozen=True)
class Range:
    """One OSV range: its type and its events as (kind, version) pairs, in file order."""

    type: str
    events: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Match:
    """Why a version is affected: the segment of a range (or the versions list) that holds it."""

    affected_range: str
    fixed: str | None


def _event_version(ecosystem: str, kind: str, value: str) -> OrderedVersion:
    if kind == "introduced" and value == "0":
        return _LOWEST
    return parse_version(ecosystem, value)


def version_in_range(ecosystem: str, version: str, events: Sequence[tuple[str, str]]) -> Match | None:
    """Whether ``version`` is inside an OSV ``SEMVER``/``ECOSYSTEM`` range, per the OSV spec's evaluation.

    ``events`` are (``introduced`` | ``fixed`` | ``last_affected`` | ``limit``, version) pairs.
    Returns the segment that holds it, or None. Raises :class:`VersionUnparseable`.
    """
    target = parse_version(ecosystem, version)
    ordered = sorted(((_event_version(ecosystem, kind, value), kind, value) for kind, value in events
                      if kind in ("introduced", "fixed", "last_affected")),
                     key=lambda item: item[0])
    affected = False
    start: str | None = None
    for point, kind, value in ordered:
        if kind == "introduced":
            if target >= point:
                affected, start = True, value
        elif kind == "fixed":
            if target >= point:
                affected = False
        elif target > point:  # last_affected
            affected = False
    if not affected:
        return None
    # The segment's end: the first fixed / last_affected event at or after the version.
    fixed: str | None = None
    end = ""
    for point, kind, value in ordered:
        if kind == "fixed" and point > target:
            fixed, end = value, f"< {value}"
            break
        if kind == "last_affected" and point >= target:
            end = f"<= {value}"
            break
    low = "" if start in (None, "0") else f">= {start}"
    text = ", ".join(part for part in (low, end) if part) or "all versions"
    return Match(text, fixed)


# ---------------------------------------------------------------------------- packages

# purl type -> OSV ecosystem (https://ossf.github.io/osv-schema/#affectedpackage-field)
_PURL_ECOSYSTEMS = {
    "pypi": "PyPI", "npm": "npm", "maven": "Maven", "golang": "Go", "cargo": "crates.io",
    "gem": "RubyGems", "nuget": "NuGet", "composer": "Packagist", "hex": "Hex", "pub": "Pub",
    "hackage": "Hackage", "cran": "CRAN", "swift": "SwiftURL", "conan": "ConanCenter",
    "github": "GitHub Actions", "bitnami": "Bitnami", "cocoapods": "CocoaPods",
}
_DISTRO_NAMESPACES = {"debian": "Debian", "ubuntu": "Ubuntu", "alpine": "Alpine", "wolfi": "Wolfi",
                      "redhat": "Red Hat", "rocky": "Rocky Linux", "almalinux": "AlmaLinux",
                      "opensuse": "openSUSE", "suse": "SUSE"}


def _normalise_name(ecosystem: str, name: str) -> str:
    base = _ecosystem_base(ecosystem)
    if base == "pypi":
        return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503
    if base in ("packagist", "nuget", "go", "github actions"):
        return name.lower()
    return name


def package_key(ecosystem: str, name: str) -> tuple[str, str]:
    """The key advisories and components are matched on: (ecosystem base, normalised name)."""
    return (_ecosystem_base(ecosystem), _normalise_name(ecosystem, name))


def purl_package(purl: str) -> tuple[str, str] | None:
    """(OSV ecosystem, package name) for a purl, or None when the purl type has no OSV ecosystem.

    Raises ``ValueError`` when the purl does not parse.
    """
    parsed = parse_purl(purl)
    kind = parsed.type.lower()
    namespace = parsed.namespace or ""
    if kind in ("deb", "apk", "rpm"):
        ecosystem = _DISTRO_NAMESPACES.get(namespace.lower())
        return (ecosystem, parsed.name) if ecosystem else None
    ecosystem = _PURL_ECOSYSTEMS.get(kind)
    if ecosystem is None:
        return None
    if kind == "maven":
        return ecosystem, f"{namespace}:{parsed.name}" if namespace else parsed.name
    return ecosystem, f"{namespace}/{parsed.name}" if namespace else parsed.name


# ---------------------------------------------------------------------------- advisories


@dataclass(frozen=True)
class Affected:
    """One ``affected[]`` entry of an advisory."""

    ecosystem: str
    name: str
    ranges: tuple[Range, ...]
    versions: tuple[str, ...]


@dataclass(frozen=True)
class Advisory:
    """An OSV advisory, as far as matching and reporting need it."""

    id: str
    path: str
    summary: str
    aliases: tuple[str, ...]
    severity: Severity | None
    score: float | None
    severity_source: str
    affected: tuple[Affected, ...]


@dataclass(frozen=True)
class AdvisoryDatabase:
    """Advisories of one directory, indexed by :func:`package_key`; ``problems`` names unusable files."""

    directory: Path
    count: int
    index: Mapping[tuple[str, str], tuple[tuple[Advisory, Affected], ...]]
    problems: tuple[str, ...] = ()

    def evidence(self) -> dict[str, Any]:
        return {"advisory_dir": str(self.directory), "advisories": self.count,
                "unusable_advisory_files": list(self.problems)}


class _Malformed(Exception):
    pass


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Malformed(f"{what} is not a list of strings")
    return tuple(value)


def _severity_of(data: Mapping[str, Any]) -> tuple[Severity | None, float | None, str]:
    """The highest severity any part of the advisory states, its CVSS score, and where it came from."""
    found: list[tuple[Severity, float | None, str]] = []

    def scored(entries: Any, where: str) -> None:
        if not isinstance(entries, list):
            return
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("score"), str):
                continue
            kind = str(entry.get("type", ""))
            if kind.startswith("CVSS"):
                try:
                    score = cvss_base_score(entry["score"])
                except ValueError:
                    continue  # an unreadable vector states nothing; other sources may
                found.append((Severity.from_score(score), score, f"{where} {kind} {entry['score']}"))
            else:
                with_word = _SEVERITY_WORDS.get(entry["score"].strip().lower())
                if with_word is not None:
                    found.append((with_word, None, f"{where} {kind} {entry['score']}"))

    def worded(container: Any, where: str) -> None:
        if isinstance(container, dict) and isinstance(container.get("severity"), str):
            word = _SEVERITY_WORDS.get(container["severity"].strip().lower())
            if word is not None:
                found.append((word, None, f"{where}.severity {container['severity']}"))

    scored(data.get("severity"), "severity")
    worded(data.get("database_specific"), "database_specific")
    for entry in data.get("affected") or []:
        if isinstance(entry, dict):
            scored(entry.get("severity"), "affected.severity")
            worded(entry.get("ecosystem_specific"), "affected.ecosystem_specific")
            worded(entry.get("database_specific"), "affected.database_specific")
    if not found:
        return None, None, "none stated"
    return max(found, key=lambda item: (item[0], item[1] or 0.0))


def _advisory(data: Any, path: str) -> Advisory | None:
    """An advisory from parsed OSV JSON; None when withdrawn. Raises _Malformed."""
    if not isinstance(data, dict):
        raise _Malformed("not a JSON object")
    if not isinstance(data.get("id"), str) or not data["id"]:
        raise _Malformed("no id")
    if data.get("withdrawn"):
        return None
    affected: list[Affected] = []
    raw_affected = data.get("affected") or []
    if not isinstance(raw_affected, list):
        raise _Malformed("affected is not a list")
    for entry in raw_affected:
        if not isinstance(entry, dict):
            raise _Malformed("an affected entry is not an object")
        package = entry.get("package")
        if not isinstance(package, dict):
            continue  # OSV allows affected entries without a package (e.g. git-only); nothing to match
        ecosystem, name = package.get("ecosystem"), package.get("name")
        named = isinstance(ecosystem, str) and isinstance(name, str)
        if not named and isinstance(package.get("purl"), str):
            try:
                from_purl = purl_package(package["purl"])
            except ValueError as exc:
                raise _Malformed(f"package purl {package['purl'][:80]!r}: {exc}") from exc
            if from_purl is None:
                continue
            ecosystem, name = from_purl
        if not (isinstance(ecosystem, str) and isinstance(name, str)):
            raise _Malformed("a package has no ecosystem and name (nor a purl)")
        ranges: list[Range] = []
        for raw_range in entry.get("ranges") or []:
            if not isinstance(raw_range, dict) or not isinstance(raw_range.get("events"), list):
                raise _Malformed("a range has no events list")
            events: list[tuple[str, str]] = []
            for event in raw_range["events"]:
                if not isinstance(event, dict) or len(event) != 1:
                    raise _Malformed("an event is not a one-key object")
                ((kind, value),) = event.items()
                if not isinstance(value, str):
                    raise _Malformed(f"event {kind} is not a string")
                events.append((str(kind), value))
            ranges.append(Range(str(raw_range.get("type", "")), tuple(events)))
        affected.append(Affected(ecosystem, name, tuple(ranges), _strings(entry.get("versions"), "versions")))
    severity, score, source = _severity_of(data)
    summary = data.get("summary") or data.get("details") or ""
    return Advisory(
        id=data["id"], path=path, summary=str(summary)[:200],
        aliases=_strings(data.get("aliases"), "aliases"),
        severity=severity, score=score, severity_source=source, affected=tuple(affected),
    )


def load_advisories(directory: Path) -> AdvisoryDatabase:
    """Read every ``*.json`` under ``directory`` (one OSV advisory, or a list of them, per file).

    Files that are not usable OSV are listed in ``problems`` with the reason, never
    skipped silently. Raises :class:`AdvisoriesUnavailable` when the directory is
    missing or holds no advisory at all (a scan against nothing proves nothing).
    """
    if not directory.is_dir():
        raise AdvisoriesUnavailable(f"advisory directory {directory} does not exist or is not a folder",
                                    path=str(directory))
    index: dict[tuple[str, str], list[tuple[Advisory, Affected]]] = {}
    problems: list[str] = []
    count = 0
    for path in sorted(directory.rglob("*.json")):
        relative = path.relative_to(directory).as_posix()
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError, RecursionError) as exc:
            problems.append(f"{relative}: {type(exc).__name__}: {str(exc)[:120]}")
            continue
        for item in data if isinstance(data, list) else [data]:
            try:
                advisory = _advisory(item, relative)
            except (_Malformed, RecursionError) as exc:
                problems.append(f"{relative}: not OSV: {exc}")
                continue
            if advisory is None:
                continue
            count += 1
            for entry in advisory.affected:
                index.setdefault(package_key(entry.ecosystem, entry.name), []).append((advisory, entry))
    if count == 0:
        reason = f" ({len(problems)} unusable files)" if problems else ""
        raise AdvisoriesUnavailable(f"no OSV advisories in {directory}{reason}", path=str(directory),
                                    problems=problems[:_MAX_LISTED])
    return AdvisoryDatabase(directory, count, {k: tuple(v) for k, v in index.items()}, tuple(problems))


# ---------------------------------------------------------------------------- scanning


@dataclass(frozen=True)
class Hit:
    """A component inside an advisory's affected range."""

    component: str
    purl: str
    version: str
    advisory: str
    aliases: tuple[str, ...]
    severity: Severity | None
    score: float | None
    severity_source: str
    affected_range: str
    fixed: str | None
    summary: str
    advisory_file: str

    def evidence(self) -> dict[str, Any]:
        return {
            "id": self.advisory, "aliases": list(self.aliases), "component": self.component,
            "purl": self.purl, "version": self.version,
            "severity": self.severity.label if self.severity is not None else "unknown",
            "score": self.score, "severity_source": self.severity_source,
            "affected_range": self.affected_range, "fixed": self.fixed, "summary": self.summary,
            "advisory_file": self.advisory_file,
        }

    def describe(self) -> str:
        severity = self.severity.label if self.severity is not None else "unknown severity"
        score = f" {self.score}" if self.score is not None else ""
        fix = f"fixed in {self.fixed}" if self.fixed else "no fixed version"
        return f"{self.component} {self.advisory} ({severity}{score}; affected {self.affected_range}; {fix})"


@dataclass(frozen=True)
class Scan:
    """Everything a scan found: hits, and what it could not decide (never silently dropped)."""

    hits: tuple[Hit, ...]
    scanned: int
    not_scanned: tuple[str, ...]  # components without a purl, or whose type has no OSV ecosystem
    undetermined: tuple[str, ...]  # version could not be compared: "can't tell" is not "not affected"


def _affected_match(component_version: str, entry: Affected) -> Match | None:
    if component_version in entry.versions:
        return Match(f"version {component_version} listed", None)
    if entry.versions:
        # Same version, other spelling: PEP 440 "1.0" == "1.0.0", Go's purl "v1.2.3" vs OSV's "1.2.3".
        wanted = parse_version(entry.ecosystem, component_version)
        for listed in entry.versions:
            try:
                if parse_version(entry.ecosystem, listed) == wanted:
                    return Match(f"version {listed} listed", None)
            except VersionUnparseable:
                continue  # an odd entry in the advisory's list cannot equal a valid version
    for candidate in entry.ranges:
        if candidate.type.upper() not in ("SEMVER", "ECOSYSTEM"):
            continue  # GIT ranges need commits; OSV lists the affected versions for those
        match = version_in_range(entry.ecosystem, component_version, candidate.events)
        if match is not None:
            return match
    return None


def find_vulnerabilities(components: Iterable[Component], database: AdvisoryDatabase) -> Scan:
    """Every advisory hit for the components, whatever its severity."""
    hits: list[Hit] = []
    not_scanned: list[str] = []
    undetermined: list[str] = []
    scanned = 0
    for component in components:
        if not component.purl:
            not_scanned.append(f"{component.label} (no purl)")
            continue
        try:
            package = purl_package(component.purl)
        except ValueError as exc:
            undetermined.append(f"{component.label}: invalid purl {component.purl[:80]!r} ({exc})")
            continue
        if package is None:
            not_scanned.append(f"{component.label} ({component.purl.split('/', 1)[0]}: no OSV ecosystem)")
            continue
        version = component.version or _purl_version(component.purl)
        candidates = database.index.get(package_key(*package), ())
        scanned += 1
        if not candidates:
            continue
        if not version:
            undetermined.append(f"{component.label}: no version to compare with {len(candidates)} advisories")
            continue
        seen: set[str] = set()
        for advisory, entry in candidates:
            if advisory.id in seen:
                continue
            try:
                match = _affected_match(version, entry)
            except VersionUnparseable as exc:
                undetermined.append(f"{component.label} vs {advisory.id}: {exc.message}")
                continue
            if match is None:
                continue
            seen.add(advisory.id)
            hits.append(Hit(
                component=component.label, purl=component.purl, version=version, advisory=advisory.id,
                aliases=advisory.aliases, severity=advisory.severity, score=advisory.score,
                severity_source=advisory.severity_source, affected_range=match.affected_range,
                fixed=match.fixed, summary=advisory.summary, advisory_file=advisory.path,
            ))
    return Scan(tuple(hits), scanned, tuple(not_scanned), tuple(undetermined))


def _purl_version(purl: str) -> str | None:
    return parse_purl(purl).version or None


def no_known_vulnerabilities(
    sbom: Path | SbomDocument,
    advisories: Path | AdvisoryDatabase,
    *,
    threshold: Severity = Severity.HIGH,
    unknown_severity_fails: bool = True,
) -> Verdict:
    """``sbom.vulnerabilities``: no component has a known vulnerability at or above ``threshold``.

    Fails listing each hit (id, severity, affected range, fixed version). Hits below
    the threshold are evidence only. An advisory without a stated severity counts
    as failing unless ``unknown_severity_fails=False``. Errors: unreadable SBOM,
    missing/empty advisory directory, unusable advisory files or versions that
    cannot be compared (when nothing failed outright), nothing scannable.
    """
    check_id = "sbom.vulnerabilities"
    try:
        document = sbom if isinstance(sbom, SbomDocument) else read_sbom(sbom)
    except SbomError as exc:
        return Verdict.error(check_id, exc.message, evidence={"error": type(exc).__name__, "hint": exc.hint})
    try:
        database = advisories if isinstance(advisories, AdvisoryDatabase) else load_advisories(advisories)
    except AdvisoriesUnavailable as exc:
        return Verdict.error(check_id, exc.message,
                             evidence={**document.evidence(), "error": type(exc).__name__, "hint": exc.hint})
    scan = find_vulnerabilities(document.components, database)

    def blocking(hit: Hit) -> bool:
        return hit.severity >= threshold if hit.severity is not None else unknown_severity_fails

    failing = sorted((h for h in scan.hits if blocking(h)),
                     key=lambda h: (-(h.severity if h.severity is not None else 5), h.component, h.advisory))
    below = [h for h in scan.hits if not blocking(h)]
    expected = f"no known vulnerability at or above {threshold.label}"
    evidence: dict[str, Any] = {
        **document.evidence(), **database.evidence(), "threshold": threshold.label,
        "unknown_severity_fails": unknown_severity_fails, "scanned_components": scan.scanned,
        "hits": [h.evidence() for h in failing], "below_threshold": [h.evidence() for h in below],
        "not_scanned": list(scan.not_scanned), "undetermined": list(scan.undetermined),
    }
    if failing:
        return Verdict.failed(
            check_id, f"{len(failing)} known vulnerabilities at or above {threshold.label} in "
            f"{document.path.name}: {_listing([h.describe() for h in failing])}",
            measured=len(failing), expected=expected, evidence=evidence)
    if database.problems or scan.undetermined:
        problems = [f"advisory file {p}" for p in database.problems] + list(scan.undetermined)
        return Verdict.error(
            check_id, f"could not decide {len(problems)} matches for {document.path.name}: "
            f"{_listing(problems)}", measured=0, expected=expected, evidence=evidence)
    if scan.scanned == 0:
        return Verdict.error(
            check_id, f"nothing to scan in {document.path.name}: no component has a purl of an OSV "
            f"ecosystem ({len(scan.not_scanned)} components)", measured=0, expected=expected,
            evidence=evidence)
    below_note = f"; {len(below)} below the threshold" if below else ""
    skipped_note = (f"; {len(scan.not_scanned)} components without a scannable purl"
                    if scan.not_scanned else "")
    return Verdict.passed(
        check_id, f"no known vulnerability at or above {threshold.label} among {scan.scanned} components "
        f"of {document.path.name} ({database.count} advisories){below_note}{skipped_note}",
        measured=0, expected=expected, evidence=evidence)


def _listing(items: Sequence[str]) -> str:
    shown = "; ".join(items[:_MAX_LISTED])
    return shown + (f"; and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")
