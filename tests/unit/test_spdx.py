"""checks.spdx: SPDX 2.2/2.3 in four serializations through every SBOM check, and ``verify sbom``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spdx_tools.spdx.jsonschema.document_converter import DocumentConverter
from spdx_tools.spdx.parser.error import SPDXParsingError
from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from checks.sbom import (
    SbomMalformed,
    components_have_fields,
    no_denied_licenses,
    read_sbom,
    sbom_covers_artifacts,
    validate_sbom,
)
from checks.spdx.fast_validation import validate_document
from checks.spdx.parsing import Serialization, detect
from checks.verdict import Outcome
from checks.vulnerabilities import no_known_vulnerabilities
from tests.support.spdx_docs import (
    SUFFIXES,
    FileEntry,
    Pkg,
    build,
    github_export,
    sha256_of,
    syft_style,
    write,
)

SERIALIZATIONS = list(SUFFIXES)


def _packages() -> list[Pkg]:
    return [
        Pkg("a", "1.0", "pkg:pypi/a@1.0", sha256_of(b"wheel"), "MIT OR Apache-2.0"),
        Pkg("b", "2.0", "pkg:pypi/b@2.0", None, "GPL-3.0-only"),
    ]


def _json(tmp_path: Path, raw: Any, name: str = "doc.spdx.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(raw, indent=1))
    return path


def _valid_dict(tmp_path: Path) -> dict[str, Any]:
    path = write(build(_packages(), [FileEntry("x.tar.gz", b"tar")]), tmp_path, "json", stem="base")
    return dict(json.loads(path.read_text()))


class TestSerializations:
    """One document written by spdx-tools as JSON, YAML, tag-value and RDF/XML: read and validated alike."""

    @pytest.mark.parametrize("serialization", SERIALIZATIONS)
    def test_valid_in_every_serialization(self, tmp_path: Path, serialization: str) -> None:
        """sbom.valid passes, naming the version and the serialization detected from the content."""
        path = write(build(_packages()), tmp_path, serialization)
        verdict = validate_sbom(path)
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert f"valid SPDX-2.3 ({serialization})" in verdict.message
        assert verdict.evidence["standard"] == "SPDX"

    @pytest.mark.parametrize("serialization", SERIALIZATIONS)
    def test_components_are_the_same(self, tmp_path: Path, serialization: str) -> None:
        """Packages and files become components with version, purl, hashes and licence, whatever the form."""
        document = read_sbom(
            write(build(_packages(), [FileEntry("x.tar.gz", b"tar")]), tmp_path, serialization)
        )
        assert document.standard == "SPDX"
        assert document.format == serialization
        seen = {(c.name, c.version, c.purl, c.type) for c in document.components}
        assert seen == {
            ("app", "1.0.0", None, "application"),
            ("a", "1.0", "pkg:pypi/a@1.0", "library"),
            ("b", "2.0", "pkg:pypi/b@2.0", "library"),
            ("./x.tar.gz", None, None, "file"),
        }
        a = next(c for c in document.components if c.name == "a")
        assert ("SHA-256", sha256_of(b"wheel")) in a.hashes
        assert {" ".join(sorted(a.licenses[0].value.split(" OR ")))} == {"Apache-2.0 MIT"}
        assert document.subject is not None and document.subject.name == "app"

    def test_spdx_2_2(self, tmp_path: Path) -> None:
        """SPDX-2.2 documents are validated by 2.2's rules: a 2.3-only field fails, naming the package."""
        path = write(build(_packages(), version="SPDX-2.2"), tmp_path, "json")
        verdict = validate_sbom(path)
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert "SPDX-2.2" in verdict.message
        raw = json.loads(path.read_text())
        raw["packages"][1]["primaryPackagePurpose"] = "LIBRARY"
        verdict = validate_sbom(_json(tmp_path, raw))
        assert verdict.outcome is Outcome.FAILED
        assert "at $.packages[1]: primary_package_purpose is not supported in SPDX-2.2" in verdict.message

    def test_cyclonedx_is_not_claimed(self) -> None:
        """A CycloneDX document, or something that is no SBOM, is left to CycloneDX."""
        assert detect(b'{"bomFormat": "CycloneDX", "specVersion": "1.6", "spdxVersion": "x"}') is None
        assert detect(b"<bom xmlns='http://cyclonedx.org/schema/bom/1.6'/>") is None
        assert detect(b"hello") is None
        assert detect(b"SPDXVersion: SPDX-2.3\n") is Serialization.TAG_VALUE
        assert detect(b"spdxVersion: SPDX-2.3\n") is Serialization.YAML


class TestRealShapes:
    """Documents shaped like what GitHub and syft publish."""

    def test_github_dependency_graph_export_passes_every_check(self, tmp_path: Path) -> None:
        """Valid; every package has a version and purl except the repository itself (no version)."""
        path = _json(tmp_path, github_export())
        assert validate_sbom(path).outcome is Outcome.PASSED
        verdict = components_have_fields(path, ("version", "purl"))
        assert verdict.outcome is Outcome.FAILED
        assert "1 of 4 components" in verdict.message and "com.github.example/web" in verdict.message

    def test_syft_files_in_an_unanalysed_package_fail_as_spdx_tools_says(self, tmp_path: Path) -> None:
        """``filesAnalyzed: false`` with a CONTAINS file is invalid (spdx-tools, the SPDX validator)."""
        verdict = validate_sbom(_json(tmp_path, syft_style()))
        assert verdict.outcome is Outcome.FAILED
        assert (
            "at $.packages[0]: package must contain no elements if files_analyzed is False" in verdict.message
        )


class TestBadInput:
    """Each refusal names the element: a JSON path, a tag-value line or the RDF element."""

    def test_broken_relationship_json(self, tmp_path: Path) -> None:
        raw = _valid_dict(tmp_path)
        raw["relationships"][1]["relatedSpdxElement"] = "SPDXRef-nowhere"
        verdict = validate_sbom(_json(tmp_path, raw))
        assert verdict.outcome is Outcome.FAILED
        assert (
            'at $.relationships[1]: did not find the referenced spdx_id "SPDXRef-nowhere"' in verdict.message
        )
        assert verdict.evidence["errors"][0]["at"] == "$.relationships[1]"

    def test_broken_relationship_tag_value(self, tmp_path: Path) -> None:
        path = write(build(_packages()), tmp_path, "tag-value")
        text = path.read_text().replace("DEPENDS_ON SPDXRef-pkg-1", "DEPENDS_ON SPDXRef-nowhere")
        path.write_text(text)
        line = next(n for n, t in enumerate(text.splitlines(), 1) if "SPDXRef-nowhere" in t)
        verdict = validate_sbom(path)
        assert verdict.outcome is Outcome.FAILED
        assert f"at line {line}: did not find the referenced spdx_id" in verdict.message

    def test_broken_relationship_rdf(self, tmp_path: Path) -> None:
        path = write(build(_packages()), tmp_path, "rdf")
        broken = (
            "<spdx:relationship><spdx:Relationship><spdx:relationshipType rdf:resource="
            '"http://spdx.org/rdf/terms#relationshipType_describes"/><spdx:relatedSpdxElement rdf:resource='
            '"https://example.org/spdxdocs/drillbook-test-1#SPDXRef-nowhere"/></spdx:Relationship>'
            "</spdx:relationship>"
        )
        text = path.read_text()
        path.write_text(text.replace("<spdx:relationship>", broken + "<spdx:relationship>", 1))
        verdict = validate_sbom(path)
        assert verdict.outcome is Outcome.FAILED
        assert "SPDXRef-nowhere" in verdict.message

    @pytest.mark.parametrize(
        ("where", "place"), [("packages", "$.packages[1].SPDXID"), ("files", "$.files[0].SPDXID")]
    )
    def test_missing_spdxid_json(self, tmp_path: Path, where: str, place: str) -> None:
        raw = _valid_dict(tmp_path)
        del raw[where][1 if where == "packages" else 0]["SPDXID"]
        path = _json(tmp_path, raw)
        verdict = validate_sbom(path)
        assert verdict.outcome is Outcome.FAILED
        assert f"at {place}: has no SPDXID" in verdict.message
        with pytest.raises(SbomMalformed, match=r"\$\." + where):
            read_sbom(path)

    def test_missing_spdxid_tag_value(self, tmp_path: Path) -> None:
        path = write(build(_packages()), tmp_path, "tag-value")
        lines = path.read_text().splitlines()
        start = next(n for n, t in enumerate(lines, 1) if t == "PackageName: a")
        path.write_text("\n".join(t for t in lines if t != "SPDXID: SPDXRef-pkg-0") + "\n")
        verdict = validate_sbom(path)
        assert verdict.outcome is Outcome.FAILED
        assert f"at line {start}: package 'a' has no SPDXID" in verdict.message

    def test_unparseable_licence_json(self, tmp_path: Path) -> None:
        raw = _valid_dict(tmp_path)
        raw["packages"][2]["licenseConcluded"] = "MIT AND (OR"
        verdict = validate_sbom(_json(tmp_path, raw))
        assert verdict.outcome is Outcome.FAILED
        assert (
            "at $.packages[2].licenseConcluded: licence expression 'MIT AND (OR' does not parse"
            in verdict.message
        )

    def test_unparseable_licence_tag_value(self, tmp_path: Path) -> None:
        path = write(build(_packages()), tmp_path, "tag-value")
        text = path.read_text().replace(
            "PackageLicenseDeclared: GPL-3.0-only", "PackageLicenseDeclared: GPL-3.0-only WITH"
        )
        path.write_text(text)
        line = next(n for n, t in enumerate(text.splitlines(), 1) if t.endswith("GPL-3.0-only WITH"))
        verdict = validate_sbom(path)
        assert verdict.outcome is Outcome.FAILED
        assert f"at line {line}: PackageLicenseDeclared" in verdict.message

    def test_yaml_aliases_are_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "bomb.spdx.yaml"
        path.write_text("spdxVersion: SPDX-2.3\na: &a [x, x]\nb: [*a, *a]\n")
        verdict = validate_sbom(path)
        assert verdict.outcome is Outcome.FAILED
        assert "aliases are refused" in verdict.message

    def test_rdf_with_a_dtd_is_refused(self, tmp_path: Path) -> None:
        path = write(build(_packages()), tmp_path, "rdf")
        text = path.read_text()
        path.write_text(
            text.replace("<rdf:RDF", '<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n<rdf:RDF', 1)
        )
        verdict = validate_sbom(path)
        assert verdict.outcome is Outcome.FAILED
        assert "<!DOCTYPE" in verdict.message

    def test_duplicate_json_keys_are_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "dup.spdx.json"
        path.write_text(
            '{"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "SPDXID": "SPDXRef-other"}'
        )
        assert validate_sbom(path).outcome is Outcome.FAILED

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        st.dictionaries(
            st.sampled_from(
                [
                    "packages",
                    "files",
                    "relationships",
                    "SPDXID",
                    "creationInfo",
                    "spdxVersion",
                    "snippets",
                    "documentDescribes",
                    "annotations",
                ]
            ),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(
                        st.sampled_from(
                            [
                                "SPDXID",
                                "name",
                                "checksums",
                                "licenseConcluded",
                                "versionInfo",
                                "spdxElementId",
                                "relatedSpdxElement",
                                "relationshipType",
                            ]
                        ),
                        inner,
                        max_size=4,
                    )
                ),
                max_leaves=12,
            ),
            max_size=4,
        )
    )
    def test_arbitrary_json_is_a_verdict_never_a_traceback(
        self, tmp_path: Path, patch: dict[str, Any]
    ) -> None:
        """Outside input: any JSON over a valid document is passed or failed, and reading never crashes."""
        raw = {**_VALID, **patch}
        path = _json(tmp_path, raw, "fuzz.spdx.json")
        verdict = validate_sbom(path)
        assert verdict.outcome in (Outcome.PASSED, Outcome.FAILED, Outcome.ERROR)
        if verdict.outcome is not Outcome.PASSED:
            assert verdict.message
        try:
            read_sbom(path)
        except SbomMalformed as exc:
            assert "fuzz.spdx.json" in str(exc)


_VALID: dict[str, Any] = json.loads(json.dumps(github_export()))


class TestFastValidation:
    """The linear-time validator returns spdx-tools' own messages, in order."""

    _MUTATIONS: ClassVar[list[tuple[str, Any]]] = [
        ("nothing", lambda d: None),
        ("broken relationship", lambda d: d["relationships"][1].update(relatedSpdxElement="SPDXRef-x")),
        (
            "external reference",
            lambda d: d["relationships"][1].update(relatedSpdxElement="DocumentRef-x:SPDXRef-y"),
        ),
        ("bad id syntax", lambda d: d["relationships"][1].update(spdxElementId="SPDXRef-a b")),
        ("duplicate id", lambda d: d["packages"][2].update(SPDXID=d["packages"][1]["SPDXID"])),
        (
            "no describes",
            lambda d: (
                d.pop("documentDescribes", None),
                d.update(
                    relationships=[r for r in d["relationships"] if r["relationshipType"] != "DESCRIBES"]
                ),
            ),
        ),
        ("unknown licence", lambda d: d["packages"][1].update(licenseConcluded="Foo-1.0")),
        (
            "files in unanalysed package",
            lambda d: d["relationships"].append(
                {
                    "spdxElementId": "SPDXRef-pkg-0",
                    "relationshipType": "CONTAINS",
                    "relatedSpdxElement": "SPDXRef-file-0",
                }
            ),
        ),
        (
            "contained by",
            lambda d: d["relationships"].append(
                {
                    "spdxElementId": "SPDXRef-file-0",
                    "relationshipType": "CONTAINED_BY",
                    "relatedSpdxElement": "SPDXRef-pkg-1",
                }
            ),
        ),
        ("bad checksum", lambda d: d["files"][0]["checksums"][0].update(checksumValue="zz")),
        ("old version", lambda d: d.update(spdxVersion="SPDX-2.1")),
        (
            "2.2 relationship",
            lambda d: (
                d.update(spdxVersion="SPDX-2.2"),
                d["relationships"].append(
                    {
                        "spdxElementId": "SPDXRef-pkg-0",
                        "relationshipType": "SPECIFICATION_FOR",
                        "relatedSpdxElement": "SPDXRef-pkg-1",
                    }
                ),
            ),
        ),
    ]

    @pytest.mark.parametrize(("label", "mutate"), _MUTATIONS, ids=[m[0] for m in _MUTATIONS])
    def test_same_messages_as_the_library(self, tmp_path: Path, label: str, mutate: Any) -> None:
        raw = copy.deepcopy(_valid_dict(tmp_path))
        mutate(raw)
        try:
            document = JsonLikeDictParser().parse(raw)
        except SPDXParsingError:
            pytest.fail(f"{label}: the mutation must leave a readable document")
        ours = validate_document(document)
        assert ours == validate_full_spdx_document(document)
        assert bool(ours) == (label != "nothing")


class TestChecksOnSpdx:
    """Coverage, completeness, licences and vulnerabilities read SPDX as they read CycloneDX."""

    def test_release_covered_by_package_and_file_checksums(self, tmp_path: Path) -> None:
        release = tmp_path / "release"
        release.mkdir()
        (release / "a.whl").write_bytes(b"wheel")
        (release / "x.tar.gz").write_bytes(b"tar")
        path = write(build(_packages(), [FileEntry("x.tar.gz", b"tar")]), tmp_path, "json")
        assert sbom_covers_artifacts(path, release).outcome is Outcome.PASSED
        (release / "extra.bin").write_bytes(b"?")
        verdict = sbom_covers_artifacts(path, release)
        assert verdict.outcome is Outcome.FAILED and "extra.bin" in verdict.message

    def test_sha1_alone_does_not_cover(self, tmp_path: Path) -> None:
        """SPDX's mandatory SHA-1 is not a strong digest: a file with only SHA-1 covers nothing."""
        release = tmp_path / "release"
        release.mkdir()
        (release / "x.tar.gz").write_bytes(b"tar")
        path = write(build([], [FileEntry("x.tar.gz", b"tar", extra=())]), tmp_path, "json")
        assert sbom_covers_artifacts(path, release).outcome is Outcome.FAILED

    @pytest.mark.parametrize("serialization", SERIALIZATIONS)
    def test_denied_licence(self, tmp_path: Path, serialization: str) -> None:
        """GPL-3.0-only is denied; ``MIT OR Apache-2.0`` with Apache denied is not (a choice remains)."""
        path = write(build(_packages()), tmp_path, serialization)
        verdict = no_denied_licenses(path, ["GPL-3.0-only", "Apache-2.0"])
        assert verdict.outcome is Outcome.FAILED
        assert "1 components" in verdict.message and "b@2.0 (GPL-3.0-only)" in verdict.message

    def test_vulnerability_by_purl(self, tmp_path: Path) -> None:
        advisories = _osv(tmp_path / "osv", "a", "1.1", "HIGH")
        path = write(build(_packages()), tmp_path, "yaml")
        verdict = no_known_vulnerabilities(path, advisories)
        assert verdict.outcome is Outcome.FAILED and "TEST-0001" in verdict.message


def _osv(directory: Path, name: str, fixed: str, severity: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "TEST-0001.json").write_text(
        json.dumps(
            {
                "schema_version": "1.6.0",
                "id": "TEST-0001",
                "modified": "2026-01-01T00:00:00Z",
                "affected": [
                    {
                        "package": {"ecosystem": "PyPI", "name": name},
                        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
                    }
                ],
                "database_specific": {"severity": severity},
            }
        )
    )
    return directory


class TestVerifySbomCommand:
    """``drillbook verify sbom doc.spdx.json --artifacts DIR --policy P`` as a user runs it."""

    def test_end_to_end(self, tmp_path: Path) -> None:
        """Exit 0 with every check passing; 1 when an advisory matches; 1 naming a broken relationship."""
        from tests.support.cli import drillbook

        release = tmp_path / "release"
        release.mkdir()
        (release / "a.whl").write_bytes(b"wheel")
        packages = [Pkg("a", "1.0", "pkg:pypi/a@1.0", sha256_of(b"wheel"), "MIT")]
        sbom = write(build(packages), tmp_path, "json", stem="doc")
        _osv(tmp_path / "osv", "a", "0.9", "CRITICAL")
        policy = tmp_path / "policy.toml"
        policy.write_text(
            '[sbom]\nrequired_fields = ["name"]\ndenied_licenses = ["GPL-3.0-only"]\n'
            '[vulnerabilities]\nadvisories = "osv"\nthreshold = "medium"\n'
        )
        result = drillbook(
            "verify", "sbom", str(sbom), "--artifacts", str(release), "--policy", str(policy), "--json"
        )
        assert result.returncode == 0, result.stdout + result.stderr
        verdicts = json.loads(result.stdout)["verdicts"]
        assert [v["id"] for v in verdicts] == [
            "sbom.valid",
            "sbom.covers_artifacts",
            "sbom.components_complete",
            "sbom.licenses",
            "sbom.vulnerabilities",
        ]
        assert all(v["outcome"] == "passed" for v in verdicts)

        _osv(tmp_path / "osv", "a", "1.1", "HIGH")
        assert drillbook("verify", "sbom", str(sbom), "--policy", str(policy)).returncode == 1

        raw = json.loads(sbom.read_text())
        raw["relationships"][0]["relatedSpdxElement"] = "SPDXRef-gone"
        sbom.write_text(json.dumps(raw))
        broken = drillbook("verify", "sbom", str(sbom))
        assert broken.returncode == 1
        assert "at $.relationships[0]" in broken.stdout and "SPDXRef-gone" in broken.stdout


class TestLinearImplicitRelationships:
    """``documentDescribes`` and ``hasFiles`` written out in one pass give the library's own Document."""

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        described=st.lists(st.sampled_from(["SPDXRef-app", "SPDXRef-file-0", "SPDXRef-pkg-1"]), max_size=4),
        has_files=st.lists(st.sampled_from(["SPDXRef-file-0", "SPDXRef-x"]), max_size=3),
        stated=st.lists(st.sampled_from([("SPDXRef-pkg-0", "CONTAINS", "SPDXRef-file-0"),
                                         ("SPDXRef-file-0", "CONTAINED_BY", "SPDXRef-pkg-0"),
                                         ("SPDXRef-file-0", "DESCRIBED_BY", "SPDXRef-DOCUMENT")]),
                        max_size=3),
    )
    def test_same_document_as_the_library(self, tmp_path: Path, described: list[str], has_files: list[str],
                                          stated: list[tuple[str, str, str]]) -> None:
        from checks.spdx.parsing import explicit_relationships

        raw = copy.deepcopy(_VALID_WITH_FILE)
        raw["documentDescribes"] = described
        raw["packages"][1]["hasFiles"] = has_files
        raw["relationships"] += [{"spdxElementId": a, "relationshipType": t, "relatedSpdxElement": b,
                                  "comment": "stated"} for a, t, b in stated]
        theirs = JsonLikeDictParser().parse(copy.deepcopy(raw))
        assert JsonLikeDictParser().parse(explicit_relationships(raw)) == theirs


# The JSON form spdx-tools' own writer produces (its converter), as plain data.
_VALID_WITH_FILE: dict[str, Any] = json.loads(json.dumps(DocumentConverter().convert(
    build([Pkg("a", "1.0", "pkg:pypi/a@1.0"), Pkg("b", "2.0")], [FileEntry("x", b"x")]))))


class TestReleasesAndSteps:
    """A release may publish an SPDX SBOM; the steps' ``sbom.valid`` says which standard it found."""

    def test_release_finds_an_spdx_sbom_and_does_not_count_it_as_an_artifact(self, tmp_path: Path) -> None:
        from drills.releases import Release

        (tmp_path / "app.whl").write_bytes(b"wheel")
        sbom = write(build(_packages()), tmp_path, "tag-value", stem="app")
        release = Release(name="r", directory=tmp_path, source=str(tmp_path))
        assert release.sbom() == sbom
        assert [p.name for p in release.artifacts()] == ["app.whl"]

    def test_the_sentence_names_the_standard(self, tmp_path: Path) -> None:
        from steps.supply_chain import _valid_as

        spdx = write(build(_packages()), tmp_path, "json")
        assert _valid_as(None)(spdx).outcome is Outcome.PASSED
        assert _valid_as("SPDX")(spdx).outcome is Outcome.PASSED
        verdict = _valid_as("CycloneDX")(spdx)
        assert verdict.outcome is Outcome.FAILED
        assert "is a valid SPDX document, not CycloneDX" in verdict.message
