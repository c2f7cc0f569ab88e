"""checks.vulnerabilities: OSV advisories offline, version ranges, severities, the verdict."""

from __future__ import annotations

import json
from functools import cmp_to_key
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from checks.verdict import Outcome
from checks.vulnerabilities import (
    AdvisoriesUnavailable,
    Severity,
    VersionUnparseable,
    cvss_base_score,
    load_advisories,
    no_known_vulnerabilities,
    package_key,
    parse_version,
    purl_package,
    version_in_range,
)
from tests.support.sbom_docs import Part, write_sbom

CRITICAL_VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
MEDIUM_VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"  # 6.1


def osv(id_: str, ecosystem: str, name: str, events: list[dict[str, str]] | None = None, *,
        versions: list[str] | None = None, vector: str | None = None, severity: str | None = None,
        range_type: str = "ECOSYSTEM", purl: str | None = None, **extra: Any) -> dict[str, Any]:
    """An advisory in the OSV schema, as osv.dev and GitHub publish them."""
    package: dict[str, str] = {"ecosystem": ecosystem, "name": name}
    if purl is not None:
        package = {"purl": purl}
    affected: dict[str, Any] = {"package": package}
    if events is not None:
        affected["ranges"] = [{"type": range_type, "events": events}]
    if versions is not None:
        affected["versions"] = versions
    data: dict[str, Any] = {"schema_version": "1.6.0", "id": id_, "modified": "2026-01-01T00:00:00Z",
                            "published": "2025-12-01T00:00:00Z", "aliases": [f"CVE-2025-{id_[-4:]}"],
                            "summary": f"test advisory {id_}", "affected": [affected], **extra}
    if vector is not None:
        data["severity"] = [{"type": "CVSS_V3", "score": vector}]
    if severity is not None:
        data["database_specific"] = {"severity": severity}
    return data


def write_advisories(directory: Path, *advisories: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for advisory in advisories:
        (directory / f"{advisory['id']}.json").write_text(json.dumps(advisory, indent=2))
    return directory


# ---------------------------------------------------------------------------- severity


class TestSeverity:
    """CVSS base scores and textual ratings map onto one scale."""

    @pytest.mark.parametrize(("vector", "score"), [
        (CRITICAL_VECTOR, 9.8),
        (MEDIUM_VECTOR, 6.1),
        ("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 9.3),
        ("AV:N/AC:L/Au:N/C:P/I:P/A:P", 7.5),
    ])
    def test_base_scores(self, vector: str, score: float) -> None:
        """Published example vectors give their published base scores."""
        assert cvss_base_score(vector) == score

    @pytest.mark.parametrize("vector", ["CVSS:3.1/AV:N", "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                                        "high", ""])
    def test_malformed_vectors(self, vector: str) -> None:
        """A vector that is not one is a ValueError, never a score."""
        with pytest.raises(ValueError, match="CVSS vector"):
            cvss_base_score(vector)

    @pytest.mark.parametrize(("score", "rating"), [
        (0.0, Severity.NONE), (0.1, Severity.LOW), (3.9, Severity.LOW), (4.0, Severity.MEDIUM),
        (6.9, Severity.MEDIUM), (7.0, Severity.HIGH), (8.9, Severity.HIGH), (9.0, Severity.CRITICAL),
        (10.0, Severity.CRITICAL),
    ])
    def test_rating_boundaries(self, score: float, rating: Severity) -> None:
        """CVSS v3.1's qualitative scale."""
        assert Severity.from_score(score) is rating

    def test_words(self) -> None:
        """GitHub's MODERATE is medium; Red Hat's Important is high; anything else is refused."""
        assert Severity.parse("MODERATE") is Severity.MEDIUM
        assert Severity.parse("Important") is Severity.HIGH
        with pytest.raises(ValueError, match="unknown severity"):
            Severity.parse("severe")


# ---------------------------------------------------------------------------- versions


SemVer = tuple[int, int, int, tuple[str, ...]]


def _semver_reference(a: SemVer, b: SemVer) -> int:
    """semver.org 2.0.0 §11 precedence, written from the spec."""
    if a[:3] != b[:3]:
        return -1 if a[:3] < b[:3] else 1
    pa, pb = a[3], b[3]
    if not pa or not pb:
        return (len(pb) > 0) - (len(pa) > 0) if pa != pb else 0
    for x, y in zip(pa, pb, strict=False):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return -1 if int(x) < int(y) else 1
        if x.isdigit() != y.isdigit():
            return -1 if x.isdigit() else 1
        return -1 if x < y else 1
    return (len(pa) > len(pb)) - (len(pa) < len(pb))


_identifier = st.one_of(st.integers(0, 30).map(str), st.sampled_from(["alpha", "beta", "rc", "x", "zeta"]))
_semver = st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5),
                    st.lists(_identifier, max_size=3).map(tuple))


def _text(v: tuple[int, int, int, tuple[str, ...]]) -> str:
    return f"{v[0]}.{v[1]}.{v[2]}" + (f"-{'.'.join(v[3])}" if v[3] else "")


class TestVersions:
    """Versions order as their ecosystem says."""

    @settings(max_examples=300, deadline=None)
    @given(_semver, _semver)
    def test_semver_precedence(self, a: tuple[int, int, int, tuple[str, ...]],
                               b: tuple[int, int, int, tuple[str, ...]]) -> None:
        """npm (semver-like) versions order exactly as semver 2.0.0 precedence."""
        expected = _semver_reference(a, b)
        va, vb = parse_version("npm", _text(a)), parse_version("npm", _text(b))
        assert (va < vb, va == vb, va > vb) == (expected < 0, expected == 0, expected > 0)

    @given(_semver, st.sampled_from(["", "v"]), st.sampled_from(["", "+build.7", "+sha.abc"]))
    def test_prefix_and_build_metadata_do_not_order(self, v: tuple[int, int, int, tuple[str, ...]],
                                                    prefix: str, build: str) -> None:
        """A leading v (Go) and +build metadata change nothing."""
        assert parse_version("Go", prefix + _text(v) + build) == parse_version("Go", _text(v))

    @given(st.text(max_size=20), st.sampled_from(["PyPI", "npm", "Maven", "Debian:12", "crates.io"]))
    def test_any_text_parses_or_is_refused_cleanly(self, text: str, ecosystem: str) -> None:
        """Arbitrary strings: an ordered version or VersionUnparseable, nothing else."""
        try:
            parse_version(ecosystem, text)
        except VersionUnparseable as exc:
            assert exc.hint

    @given(st.lists(st.from_regex(r"\A[0-9]{1,3}(\.[0-9]{1,3}){0,3}((a|b|rc)[0-9]{1,2})?(\.post[0-9])?\Z"),
                    min_size=2, max_size=6))
    def test_pypi_is_pep440(self, texts: list[str]) -> None:
        """PyPI versions sort as packaging.version sorts them."""
        from packaging.version import Version

        ours = sorted(texts, key=lambda t: parse_version("PyPI", t))
        theirs = sorted(texts, key=Version)
        assert [Version(t) for t in ours] == [Version(t) for t in theirs]

    @pytest.mark.parametrize(("ecosystem", "low", "high"), [
        ("PyPI", "1.0rc1", "1.0"), ("PyPI", "1.0", "1.0.post1"), ("PyPI", "2.9", "2.10"),
        ("npm", "1.0.0-rc.1", "1.0.0"), ("npm", "1.2.9", "1.2.10"), ("Maven", "1.0.0-beta", "1.0.0"),
        ("Maven", "2.0", "2.0.1"), ("Debian:12", "1.2-1", "1.2-2"), ("Debian:12", "1.2~rc1", "1.2"),
        ("Debian:12", "1.2", "1.2-1"), ("Debian", "1:0.9", "2:0.1"), ("Go", "v0.9.0", "v0.10.0"),
    ])
    def test_examples(self, ecosystem: str, low: str, high: str) -> None:
        """Ordering of well-known pairs."""
        assert parse_version(ecosystem, low) < parse_version(ecosystem, high)

    def test_trailing_zeros_are_equal(self) -> None:
        """1.0 and 1.0.0 are one version."""
        assert parse_version("npm", "1.0") == parse_version("npm", "1.0.0")
        assert parse_version("PyPI", "1.0") == parse_version("PyPI", "1.0.0")

    @pytest.mark.parametrize("text", ["latest", "dev-master", "", "   "])
    def test_unparseable(self, text: str) -> None:
        """Words are not versions."""
        with pytest.raises(VersionUnparseable):
            parse_version("npm", text)


# ---------------------------------------------------------------------------- ranges

_distinct_versions = st.lists(_semver, min_size=3, max_size=8, unique=True).map(
    lambda vs: sorted(vs, key=cmp_to_key(_semver_reference)))


class TestRanges:
    """OSV range evaluation as the OSV spec describes it."""

    @settings(max_examples=100, deadline=None)
    @given(_distinct_versions, st.data())
    def test_introduced_fixed(self, versions: list[Any], data: st.DataObject) -> None:
        """introduced X, fixed Y: affected exactly when X <= v < Y."""
        texts = [_text(v) for v in versions]
        assume(len({parse_version("npm", t) for t in texts}) == len(texts))
        i = data.draw(st.integers(0, len(texts) - 2))
        j = data.draw(st.integers(i + 1, len(texts) - 1))
        events = [("introduced", texts[i]), ("fixed", texts[j])]
        for k, text in enumerate(texts):
            match = version_in_range("npm", text, events)
            assert (match is not None) == (i <= k < j), (text, events)
            if match is not None:
                assert match.fixed == texts[j]

    @settings(max_examples=100, deadline=None)
    @given(_distinct_versions, st.data())
    def test_last_affected_and_zero(self, versions: list[Any], data: st.DataObject) -> None:
        """introduced 0, last_affected Y: affected exactly when v <= Y, with no fixed version."""
        texts = [_text(v) for v in versions]
        assume(len({parse_version("npm", t) for t in texts}) == len(texts))
        j = data.draw(st.integers(0, len(texts) - 1))
        events = [("introduced", "0"), ("last_affected", texts[j])]
        for k, text in enumerate(texts):
            match = version_in_range("npm", text, events)
            assert (match is not None) == (k <= j)
            if match is not None:
                assert match.fixed is None

    @settings(max_examples=80, deadline=None)
    @given(_distinct_versions, st.data())
    def test_two_segments_in_any_order(self, versions: list[Any], data: st.DataObject) -> None:
        """Two introduced/fixed pairs, events shuffled: the union of both segments."""
        texts = [_text(v) for v in versions]
        assume(len(texts) >= 4)
        assume(len({parse_version("npm", t) for t in texts}) == len(texts))
        cuts = sorted(data.draw(st.lists(st.integers(0, len(texts) - 1), min_size=4, max_size=4,
                                         unique=True)))
        events = [("introduced", texts[cuts[0]]), ("fixed", texts[cuts[1]]),
                  ("introduced", texts[cuts[2]]), ("fixed", texts[cuts[3]])]
        events = data.draw(st.permutations(events))
        for k, text in enumerate(texts):
            inside = cuts[0] <= k < cuts[1] or cuts[2] <= k < cuts[3]
            assert (version_in_range("npm", text, events) is not None) == inside

    def test_range_text(self) -> None:
        """The segment is described for people: '>= 2.0, < 2.11.3'."""
        match = version_in_range("PyPI", "2.10", [("introduced", "2.0"), ("fixed", "2.11.3")])
        assert match is not None
        assert match.affected_range == ">= 2.0, < 2.11.3"
        everything = version_in_range("PyPI", "0.1", [("introduced", "0")])
        assert everything is not None
        assert everything.affected_range == "all versions"


# ---------------------------------------------------------------------------- packages and advisories


class TestPackages:
    """purls and OSV packages meet on one key."""

    @pytest.mark.parametrize(("purl", "expected"), [
        ("pkg:pypi/Jinja2@2.10", ("PyPI", "jinja2")),  # packageurl lower-cases PyPI names
        ("pkg:npm/%40babel/core@7.0.0", ("npm", "@babel/core")),
        ("pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
         ("Maven", "org.apache.logging.log4j:log4j-core")),
        ("pkg:golang/github.com/gin-gonic/gin@v1.7.0", ("Go", "github.com/gin-gonic/gin")),
        ("pkg:deb/debian/openssl@3.0.11-1?distro=debian-12", ("Debian", "openssl")),
        ("pkg:composer/laravel/framework@7.12.0", ("Packagist", "laravel/framework")),
        ("pkg:generic/thing@1", None),
    ])
    def test_purl_package(self, purl: str, expected: tuple[str, str] | None) -> None:
        """Each purl type maps to its OSV ecosystem and package name."""
        assert purl_package(purl) == expected

    def test_pypi_names_are_normalised(self) -> None:
        """PEP 503: Jinja2, jinja2 and jinja_2 style spellings meet."""
        assert package_key("PyPI", "Zope.Interface") == package_key("PyPI", "zope-interface")
        assert package_key("Debian:12", "openssl") == package_key("Debian", "openssl")


class TestLoadAdvisories:
    """A mirror directory of OSV JSON, read defensively."""

    def test_missing_directory(self, tmp_path: Path) -> None:
        """No directory: AdvisoriesUnavailable with a hint."""
        with pytest.raises(AdvisoriesUnavailable) as info:
            load_advisories(tmp_path / "nope")
        assert info.value.hint

    def test_empty_directory(self, tmp_path: Path) -> None:
        """A scan against nothing proves nothing."""
        with pytest.raises(AdvisoriesUnavailable, match="no OSV advisories"):
            load_advisories(tmp_path)

    def test_bad_files_are_named_not_dropped(self, tmp_path: Path) -> None:
        """Malformed JSON and non-OSV JSON are listed as problems; good advisories still load."""
        write_advisories(tmp_path, osv("TEST-0001", "PyPI", "a", [{"introduced": "0"}]))
        (tmp_path / "broken.json").write_text("{")
        (tmp_path / "other.json").write_text('{"hello": 1}')
        database = load_advisories(tmp_path)
        assert database.count == 1
        assert any(p.startswith("broken.json") for p in database.problems)
        assert any(p.startswith("other.json: not OSV: no id") for p in database.problems)

    def test_withdrawn_and_bundled(self, tmp_path: Path) -> None:
        """Withdrawn advisories are ignored; a file holding a list of advisories is read whole."""
        (tmp_path / "bundle.json").write_text(json.dumps([
            osv("TEST-0001", "PyPI", "a", [{"introduced": "0"}]),
            osv("TEST-0002", "PyPI", "b", [{"introduced": "0"}], withdrawn="2026-01-02T00:00:00Z"),
        ]))
        database = load_advisories(tmp_path)
        assert database.count == 1
        assert package_key("PyPI", "b") not in database.index

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(value=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                              lambda inner: st.lists(inner, max_size=3)
                              | st.dictionaries(st.sampled_from(["id", "affected", "package", "ranges",
                                                                 "events", "severity", "versions", "name",
                                                                 "ecosystem", "introduced", "score", "type"]),
                                                inner, max_size=4), max_leaves=15))
    def test_arbitrary_json_never_crashes(self, tmp_path: Path, value: Any) -> None:
        """Whatever the mirror holds: advisories or named problems, never an exception."""
        (tmp_path / "x.json").write_text(json.dumps(value))
        write_advisories(tmp_path, osv("TEST-0001", "PyPI", "a", [{"introduced": "0"}]))
        database = load_advisories(tmp_path)
        assert database.count >= 1


# ---------------------------------------------------------------------------- the verdict


@pytest.fixture
def sbom(tmp_path: Path) -> Path:
    return write_sbom(tmp_path / "sbom.json", [
        Part("Jinja2", "2.10", "pkg:pypi/Jinja2@2.10"),
        Part("lodash", "4.17.20", "pkg:npm/lodash@4.17.20"),
        Part("log4j-core", "2.14.1", "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"),
        Part("openssl", "3.0.11-1", "pkg:deb/debian/openssl@3.0.11-1"),
        Part("internal-tool", "1.0"),
    ])


class TestNoKnownVulnerabilities:
    """The gate: no hit at or above the threshold, every hit reported with id, severity, range, fix."""

    def test_hits_fail_with_details(self, tmp_path: Path, sbom: Path) -> None:
        """Critical log4j and medium lodash advisories, threshold high: one blocking hit, fully described."""
        advisories = write_advisories(
            tmp_path / "osv",
            osv("TEST-4421", "Maven", "org.apache.logging.log4j:log4j-core",
                [{"introduced": "2.0-beta9"}, {"fixed": "2.15.0"}], vector=CRITICAL_VECTOR),
            osv("TEST-0137", "npm", "lodash", [{"introduced": "0"}, {"fixed": "4.17.21"}],
                vector=MEDIUM_VECTOR),
            osv("TEST-9999", "npm", "lodash", [{"introduced": "0"}, {"fixed": "4.17.5"}], severity="HIGH"),
        )
        verdict = no_known_vulnerabilities(sbom, advisories, threshold=Severity.HIGH)
        assert verdict.outcome is Outcome.FAILED
        assert verdict.measured == 1
        assert "TEST-4421" in verdict.message
        assert "critical 9.8" in verdict.message
        assert ">= 2.0-beta9, < 2.15.0" in verdict.message
        assert "fixed in 2.15.0" in verdict.message
        (hit,) = verdict.evidence["hits"]
        assert hit["id"] == "TEST-4421"
        assert hit["severity"] == "critical"
        assert hit["fixed"] == "2.15.0"
        assert hit["affected_range"] == ">= 2.0-beta9, < 2.15.0"
        assert [h["id"] for h in verdict.evidence["below_threshold"]] == ["TEST-0137"]
        assert "internal-tool@1.0 (no purl)" in verdict.evidence["not_scanned"]

    def test_threshold_critical_passes_a_high(self, tmp_path: Path, sbom: Path) -> None:
        """At threshold critical a HIGH advisory is evidence, not a failure."""
        advisories = write_advisories(tmp_path / "osv", osv("TEST-0002", "PyPI", "jinja2",
                                                            [{"introduced": "0"}, {"fixed": "2.11.3"}],
                                                            severity="HIGH"))
        verdict = no_known_vulnerabilities(sbom, advisories, threshold=Severity.CRITICAL)
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert "1 below the threshold" in verdict.message
        assert no_known_vulnerabilities(sbom, advisories, threshold=Severity.HIGH).outcome is Outcome.FAILED

    def test_fixed_version_is_not_affected(self, tmp_path: Path, sbom: Path) -> None:
        """Fixed in 2.10 means 2.10 is safe (PEP 440 comparison, not string order)."""
        advisories = write_advisories(tmp_path / "osv", osv("TEST-0003", "PyPI", "jinja2",
                                                            [{"introduced": "2.9"}, {"fixed": "2.10"}],
                                                            vector=CRITICAL_VECTOR))
        assert no_known_vulnerabilities(sbom, advisories).outcome is Outcome.PASSED

    def test_explicit_versions_and_purl_packages(self, tmp_path: Path, sbom: Path) -> None:
        """An advisory that lists versions, naming its package by purl, matches too."""
        advisories = write_advisories(tmp_path / "osv", osv("TEST-0004", "", "", versions=["2.10", "2.9"],
                                                            purl="pkg:pypi/jinja2", severity="CRITICAL"))
        verdict = no_known_vulnerabilities(sbom, advisories)
        assert verdict.outcome is Outcome.FAILED
        assert "version 2.10 listed" in verdict.message

    def test_listed_versions_match_other_spellings(self, tmp_path: Path) -> None:
        """Go purls say v1.7.0, OSV lists 1.7.0: the same version."""
        path = write_sbom(tmp_path / "s.json",
                          [Part("gin", "v1.7.0", "pkg:golang/github.com/gin-gonic/gin@v1.7.0")])
        advisories = write_advisories(tmp_path / "osv", osv("TEST-0013", "Go", "github.com/gin-gonic/gin",
                                                            versions=["1.6.3", "1.7.0"], severity="HIGH"))
        verdict = no_known_vulnerabilities(path, advisories)
        assert verdict.outcome is Outcome.FAILED
        assert "version 1.7.0 listed" in verdict.message

    def test_distribution_packages(self, tmp_path: Path, sbom: Path) -> None:
        """A Debian advisory for Debian:12 matches pkg:deb/debian; -N revisions order after the release."""
        advisories = write_advisories(tmp_path / "osv", osv("TEST-0005", "Debian:12", "openssl",
                                                            [{"introduced": "0"}, {"fixed": "3.0.11-2"}],
                                                            severity="HIGH"))
        verdict = no_known_vulnerabilities(sbom, advisories)
        assert verdict.outcome is Outcome.FAILED
        assert "fixed in 3.0.11-2" in verdict.message

    def test_unknown_severity(self, tmp_path: Path, sbom: Path) -> None:
        """No severity stated: fails by default, passes when told unknown does not block."""
        advisories = write_advisories(tmp_path / "osv", osv("TEST-0006", "npm", "lodash",
                                                            [{"introduced": "0"}]))
        verdict = no_known_vulnerabilities(sbom, advisories)
        assert verdict.outcome is Outcome.FAILED
        assert "unknown severity" in verdict.message
        relaxed = no_known_vulnerabilities(sbom, advisories, unknown_severity_fails=False)
        assert relaxed.outcome is Outcome.PASSED

    def test_highest_stated_severity_wins(self, tmp_path: Path, sbom: Path) -> None:
        """A MODERATE label next to a 9.8 vector: the advisory is critical."""
        advisories = write_advisories(tmp_path / "osv", osv("TEST-0007", "npm", "lodash",
                                                            [{"introduced": "0"}],
                                                            vector=CRITICAL_VECTOR, severity="MODERATE"))
        verdict = no_known_vulnerabilities(sbom, advisories, threshold=Severity.CRITICAL)
        assert verdict.outcome is Outcome.FAILED
        assert verdict.evidence["hits"][0]["score"] == 9.8

    def test_undecidable_version_is_an_error(self, tmp_path: Path) -> None:
        """A version that cannot be compared is 'could not check', not 'not affected'."""
        path = write_sbom(tmp_path / "s.json", [Part("a", "latest", "pkg:npm/a@latest")])
        advisories = write_advisories(tmp_path / "osv", osv("TEST-0008", "npm", "a",
                                                            [{"introduced": "1.0"}, {"fixed": "2.0"}],
                                                            severity="LOW"))
        verdict = no_known_vulnerabilities(path, advisories)
        assert verdict.outcome is Outcome.ERROR
        assert "latest" in verdict.message

    def test_unusable_advisory_files_are_an_error_without_hits(self, tmp_path: Path, sbom: Path) -> None:
        """A corrupt file in the mirror could hide a hit: error naming it."""
        advisories = write_advisories(tmp_path / "osv",
                                      osv("TEST-0009", "npm", "other", [{"introduced": "0"}]))
        (advisories / "GHSA-corrupt.json").write_text('{"id": "X", "affected": 3}')
        verdict = no_known_vulnerabilities(sbom, advisories)
        assert verdict.outcome is Outcome.ERROR
        assert "GHSA-corrupt.json" in verdict.message

    def test_nothing_scannable_is_an_error(self, tmp_path: Path) -> None:
        """Components without purls cannot be scanned: error, never a pass."""
        path = write_sbom(tmp_path / "s.json", [Part("a", "1")])
        advisories = write_advisories(tmp_path / "osv", osv("TEST-0010", "npm", "a", [{"introduced": "0"}]))
        assert no_known_vulnerabilities(path, advisories).outcome is Outcome.ERROR

    def test_missing_advisories_and_sbom(self, tmp_path: Path, sbom: Path) -> None:
        """No mirror, or no SBOM: error verdicts naming what is missing."""
        verdict = no_known_vulnerabilities(sbom, tmp_path / "nope")
        assert verdict.outcome is Outcome.ERROR
        assert "nope" in verdict.message
        advisories = write_advisories(tmp_path / "osv", osv("TEST-0011", "npm", "a", [{"introduced": "0"}]))
        missing = no_known_vulnerabilities(tmp_path / "absent.json", advisories)
        assert missing.outcome is Outcome.ERROR
        assert "absent.json" in missing.message

    def test_clean(self, tmp_path: Path, sbom: Path) -> None:
        """Advisories for other packages only: passed, with what was scanned."""
        advisories = write_advisories(tmp_path / "osv", osv("TEST-0012", "npm", "left-pad",
                                                            [{"introduced": "0"}], severity="CRITICAL"))
        verdict = no_known_vulnerabilities(sbom, advisories)
        assert verdict.outcome is Outcome.PASSED
        assert verdict.evidence["scanned_components"] == 4
