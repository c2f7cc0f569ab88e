"""checks.sbom and checks.cyclonedx_fast: validation, coverage, completeness, licences."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.validation import make_schemabased_validator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rfc3987_syntax import is_valid_syntax

from checks.cyclonedx_fast import fast_json_validator, iri_ok, iri_reference_ok
from checks.sbom import (
    SbomMalformed,
    SbomUnreadable,
    components_have_fields,
    components_have_versions_and_purls,
    no_denied_licenses,
    parse_images_list,
    read_sbom,
    sbom_covers_artifacts,
    sbom_covers_digests,
    validate_sbom,
)
from checks.verdict import Outcome
from tests.support.sbom_docs import CYCLONEDX_FIXTURES, Part, sha256_of, write_sbom

# ---------------------------------------------------------------------------- fixtures (real documents)


def _cases() -> list[dict[str, Any]]:
    cases_file = CYCLONEDX_FIXTURES / "cases.json"
    if not cases_file.is_file():
        return []
    return list(json.loads(cases_file.read_text())["documents"])


CASES = _cases()
needs_fixtures = pytest.mark.skipif(
    not CASES, reason=f"CycloneDX fixtures not found under {CYCLONEDX_FIXTURES} (set DRILLBOOK_FIXTURES)")


@functools.cache
def _library_verdict(file: str) -> tuple[bool, str | None, str | None]:
    """The library's default validator on a fixture: (valid, first error location, first error message)."""
    path = CYCLONEDX_FIXTURES / file
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        version = json.loads(text)["specVersion"]
        validator = make_schemabased_validator(OutputFormat.JSON, SchemaVersion.from_version(version))
        error = validator.validate_str(text)
        if error is None:
            return True, None, None
        return False, error.data.json_path, error.data.message
    case = next(c for c in CASES if c["file"] == file)
    error = make_schemabased_validator(OutputFormat.XML, SchemaVersion.from_version(case["spec_version"])) \
        .validate_str(text)
    if error is None:
        return True, None, None
    return False, f"line {error.data.line}", error.data.message


@needs_fixtures
class TestFixtureDocuments:
    """Every CycloneDX document in the shared fixtures gets exactly its expected verdict."""

    @pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
    def test_expected_outcome(self, case: dict[str, Any]) -> None:
        """valid -> passed, invalid -> failed, validated against the version the document declares."""
        verdict = validate_sbom(CYCLONEDX_FIXTURES / case["file"])
        expected = Outcome.PASSED if case["expected"] == "valid" else Outcome.FAILED
        assert verdict.outcome is expected, verdict.message
        assert verdict.evidence["spec_version"] == case["spec_version"]
        assert verdict.evidence["format"] == case["format"]
        if case["expected"] == "invalid":
            assert case["file"].split("/")[-1] in verdict.message

    @pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
    def test_identical_to_library_default_validator(self, case: dict[str, Any]) -> None:
        """Same validity and the same first error (location and message) as the library's slow default."""
        valid, where, message = _library_verdict(case["file"])
        verdict = validate_sbom(CYCLONEDX_FIXTURES / case["file"])
        assert (verdict.outcome is Outcome.PASSED) == valid
        if not valid:
            first = verdict.evidence["errors"][0]
            assert first["at"] == where
            # Messages longer than 400 characters are shortened with an ellipsis in the evidence.
            assert message.startswith(first["message"].removesuffix("…"))

    def test_invalid_cases_name_the_place(self) -> None:
        """The hash case names the JSON path, the XML case the line, as cases.json records them."""
        for case in CASES:
            if case["expected"] != "invalid":
                continue
            verdict = validate_sbom(CYCLONEDX_FIXTURES / case["file"])
            if "error_line" in case:
                assert f"line {case['error_line']}" in verdict.message
            if "message_contains" in case:
                assert case["message_contains"] in verdict.message

    @pytest.mark.parametrize("case", [c for c in CASES if c["expected"] == "valid"],
                             ids=[c["file"] for c in CASES if c["expected"] == "valid"])
    def test_components_are_read(self, case: dict[str, Any]) -> None:
        """The model reads what it can; the SaaSBOM it rejects is read directly instead."""
        document = read_sbom(CYCLONEDX_FIXTURES / case["file"])
        assert len(document.components) >= case["components_top_level"]
        assert document.reader == ("model" if case.get("model_parse") == "ok" else "document")

    def test_json_and_xml_of_one_sbom_read_the_same(self) -> None:
        """Laravel's JSON and XML twins give the same components, hashes and licences."""
        json_doc = read_sbom(CYCLONEDX_FIXTURES / "valid/laravel-7.12.0.cdx-1.4.json")
        xml_doc = read_sbom(CYCLONEDX_FIXTURES / "valid/laravel-7.12.0.cdx-1.4.xml")
        assert sorted(map(repr, json_doc.components)) == sorted(map(repr, xml_doc.components))

    def test_direct_reader_agrees_with_the_model(self) -> None:
        """The fallback reader, used when the model fails, reads what the model reads."""
        from checks.sbom import _parse_xml, _read_json_components, _read_xml_components

        for name in ("laravel-7.12.0.cdx-1.4.json", "valid-bom-1.6.json"):
            path = CYCLONEDX_FIXTURES / "valid" / name
            model = read_sbom(path)
            direct, _subject = _read_json_components(json.loads(path.read_text()))
            assert sorted(map(repr, direct)) == sorted(map(repr, model.components)), name
        path = CYCLONEDX_FIXTURES / "valid/laravel-7.12.0.cdx-1.4.xml"
        root, _version = _parse_xml(path, path.read_bytes())
        direct, _subject = _read_xml_components(root)
        assert sorted(map(repr, direct)) == sorted(map(repr, read_sbom(path).components))


# ---------------------------------------------------------------------------- the fast IRI checks

_URL_PARTS = ["http://", "https://", "//", "a:", "urn:", "%4", "%41", "%zz", "@", ":80", ":", "/", "?", "#",
              "..", "1.2.3.4", "256.1.1.1", "example.com", "x", "[", "]", "[::1]", "[v1.x]",
              "[1:2:3:4:5:6:7:8]",
              " ", "\n", "é", "\ue000", "\U0001f600", "\ufff0", "~", "'", "\\", "|", "{", "^"]
_urlish = st.lists(st.one_of(st.sampled_from(_URL_PARTS),
                             st.characters(min_codepoint=0x20, max_codepoint=0x7e)),
                   max_size=14).map("".join)


class TestFastIriChecker:
    """The regex checks decide exactly as the library's Earley parser does."""

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_urlish)
    def test_iri_reference_matches_library(self, text: str) -> None:
        """Same answer as rfc3987-syntax for iri-reference on URL-like strings, Unicode included."""
        assert iri_reference_ok(text) == is_valid_syntax("iri_reference", text)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_urlish)
    def test_iri_matches_library(self, text: str) -> None:
        """Same answer as rfc3987-syntax for absolute iri."""
        assert iri_ok(text) == is_valid_syntax("iri", text)

    @pytest.mark.parametrize(("text", "expected"), [
        ("https://github.com/laravel/framework", True),
        ("http://[::1]/", False),           # the library's grammar rejects compressed IPv6; so do we
        ("http://[1:2:3:4:5:6:7:8]/", True),
        ("https://example.com/\n", False),  # rfc3986-validator's own `$` would accept this
        ("https://bücher.example/straße", True),
        ("https://example.com/\U0001f600", False),  # the grammar stops at U+FFEF
        ("relative/path?q=1#frag", True),
        ("ht tp://x", False),
    ])
    def test_known_edges(self, text: str, expected: bool) -> None:
        """Edges where a plain RFC 3986 regex and the library would disagree."""
        assert iri_reference_ok(text) is expected
        assert is_valid_syntax("iri_reference", text) is expected

    def test_format_errors_are_reported_like_the_library(self) -> None:
        """A bad URL fails with the library's message at the same path."""
        document = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
                    "externalReferences": [{"type": "website", "url": "http://exa mple.com"}]}
        fast = [(e.json_path, e.message)
                for e in fast_json_validator(SchemaVersion.V1_6).iter_errors(document)]
        slow = make_schemabased_validator(OutputFormat.JSON, SchemaVersion.V1_6) \
            .validate_str(json.dumps(document))
        assert slow is not None
        assert fast[0] == (slow.data.json_path, slow.data.message)
        assert "'http://exa mple.com' is not valid" in fast[0][1]


# ---------------------------------------------------------------------------- bad input


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


class TestValidateSbomBadInput:
    """Bad input is a failed (content) or errored (I/O) verdict naming the file: never a crash or a pass."""

    @pytest.mark.parametrize(("name", "content", "reason"), [
        ("truncated.json", '{"bomFormat": "CycloneDX", "specVersion": "1.6", "comp',
         "malformed JSON at line 1"),
        ("empty.json", "", "the file is empty"),
        ("list.json", "[1, 2]", "top level is a list"),
        ("nospec.json", '{"bomFormat": "CycloneDX"}', "no specVersion"),
        ("future.json", '{"bomFormat": "CycloneDX", "specVersion": "9.9", "version": 1}',
         "unsupported CycloneDX spec version '9.9'"),
        ("old.json", '{"bomFormat": "CycloneDX", "specVersion": "1.1", "version": 1}', "has no JSON schema"),
        ("text.txt", "hello", "neither JSON nor XML"),
        ("latin1.json", b'{"name": "caf\xe9"}', "not UTF-8"),
        ("truncated.xml", '<?xml version="1.0"?><bom xmlns="http://cyclonedx.org/schema/bom/1.6"><comp',
         "malformed XML at line 1"),
        ("other.xml", '<?xml version="1.0"?><project xmlns="http://maven.apache.org/POM/4.0.0"/>',
         "not a CycloneDX document"),
        ("future.xml", '<bom xmlns="http://cyclonedx.org/schema/bom/7.0" version="1"/>',
         "unsupported CycloneDX spec version '7.0'"),
    ])
    def test_malformed_content_fails(self, tmp_path: Path, name: str, content: str | bytes,
                                     reason: str) -> None:
        """Each malformed document fails with the file's name and the reason."""
        path = _write(tmp_path, name, content)
        verdict = validate_sbom(path)
        assert verdict.outcome is Outcome.FAILED
        assert str(path) in verdict.message
        assert reason in verdict.message
        assert verdict.evidence["error"] == "SbomMalformed"
        assert verdict.evidence["hint"]

    def test_missing_file_is_an_error(self, tmp_path: Path) -> None:
        """A file that cannot be read could not be checked: error, not failed."""
        verdict = validate_sbom(tmp_path / "absent.json")
        assert verdict.outcome is Outcome.ERROR
        assert "absent.json" in verdict.message
        assert verdict.evidence["error"] == "SbomUnreadable"

    def test_directory_is_an_error(self, tmp_path: Path) -> None:
        """A directory in place of the file is unreadable input."""
        assert validate_sbom(tmp_path).outcome is Outcome.ERROR

    @pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
    def test_unreadable_file_is_an_error(self, tmp_path: Path) -> None:
        """No permission to read: error."""
        path = _write(tmp_path, "secret.json", "{}")
        path.chmod(0)
        assert validate_sbom(path).outcome is Outcome.ERROR

    def test_xml_entities_are_not_expanded(self, tmp_path: Path) -> None:
        """An entity bomb neither hangs nor passes: the document fails validation or parsing."""
        bomb = ('<?xml version="1.0"?><!DOCTYPE bom [<!ENTITY a "aaaaaaaaaa">'
                + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
                + ']><bom xmlns="http://cyclonedx.org/schema/bom/1.6" version="1"><components>'
                '<component type="library"><name>&i;</name></component></components></bom>')
        path = _write(tmp_path, "bomb.xml", bomb)
        verdict = validate_sbom(path)
        assert verdict.outcome is Outcome.FAILED  # libxml2 refuses the amplification itself
        assert "bomb.xml" in verdict.message
        with pytest.raises(SbomMalformed):
            read_sbom(path)

    @pytest.mark.parametrize("prolog", [
        '<!DOCTYPE bom [<!ENTITY name "left-pad">]>',
        '<!DOCTYPE bom SYSTEM "file:///etc/passwd">',
        '<!DOCTYPE bom>',
    ])
    def test_xml_with_a_dtd_or_entity_is_refused_before_validation(self, tmp_path: Path, prolog: str) -> None:
        """A DOCTYPE or ENTITY declaration: failed, named, with a hint; never the validator's
        "Internal error", and refused by the reader as well."""
        text = ('<?xml version="1.0"?>' + prolog + '<bom xmlns="http://cyclonedx.org/schema/bom/1.6" '
                'version="1"><components><component type="library"><name>&name;</name>'
                '<version>1</version></component></components></bom>')
        path = _write(tmp_path, "entity.xml", text)
        verdict = validate_sbom(path)
        assert verdict.outcome is Outcome.FAILED
        assert "entity.xml" in verdict.message
        assert "document type or entity declaration" in verdict.message
        assert "<!DOCTYPE" in verdict.message
        assert "Internal error" not in verdict.message
        with pytest.raises(SbomMalformed, match="is refused") as caught:
            read_sbom(path)
        assert "JSON" in caught.value.hint

    @pytest.mark.parametrize("depth", [400, 3000])
    def test_deep_nesting_fails_cleanly(self, tmp_path: Path, depth: int) -> None:
        """Components nested hundreds or thousands deep: failed verdicts, no RecursionError."""
        text = ('{"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "components": ['
                + '{"type": "library", "name": "x", "components": [' * depth + "]}" * depth + "]}")
        verdict = validate_sbom(_write(tmp_path, "deep.json", text))
        assert verdict.outcome is Outcome.FAILED
        assert "nested too deeply" in verdict.message

    def test_schema_invalid_json_lists_errors_with_paths(self, tmp_path: Path) -> None:
        """A schema error names the JSON path; the evidence keeps the first errors."""
        doc = {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
               "components": [{"type": "library", "name": "x",
                               "hashes": [{"alg": "SHA-256", "content": "zz"}]}]}
        verdict = validate_sbom(_write(tmp_path, "bad.json", json.dumps(doc)))
        assert verdict.outcome is Outcome.FAILED
        assert "$.components[0].hashes[0].content" in verdict.message
        assert verdict.evidence["errors"][0]["at"] == "$.components[0].hashes[0].content"

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.binary(max_size=200))
    def test_arbitrary_bytes_never_pass_or_crash(self, tmp_path: Path, data: bytes) -> None:
        """Random bytes: a failed verdict, never an exception and never a pass."""
        verdict = validate_sbom(_write(tmp_path, "random.json", data))
        assert verdict.outcome is Outcome.FAILED

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(value=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                              lambda inner: st.lists(inner, max_size=3)
                              | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=12),
           key=st.sampled_from(["components", "metadata", "version", "specVersion", "bomFormat", "hashes"]))
    def test_mutated_documents_never_crash(self, tmp_path: Path, value: Any, key: str) -> None:
        """A valid document with one field replaced by anything: a verdict, and every reader copes."""
        base = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
                "components": [{"type": "library", "name": "a", "version": "1", "purl": "pkg:pypi/a@1"}]}
        base[key] = value
        path = _write(tmp_path, "mutated.json", json.dumps(base))
        verdict = validate_sbom(path)
        assert verdict.outcome in (Outcome.PASSED, Outcome.FAILED)
        for check in (components_have_versions_and_purls(path), no_denied_licenses(path, {"MIT"}),
                      sbom_covers_artifacts(path, tmp_path)):
            assert check.outcome in tuple(Outcome)


# ---------------------------------------------------------------------------- coverage


def _release(tmp_path: Path, files: dict[str, bytes]) -> Path:
    release = tmp_path / "release"
    release.mkdir()
    for name, data in files.items():
        (release / name).parent.mkdir(parents=True, exist_ok=True)
        (release / name).write_bytes(data)
    return release


ARTIFACTS = {"app-1.0.tar.gz": b"tarball", "charts/app-1.0.tgz": b"chart",
             "app-1.0-py3-none-any.whl": b"wheel"}


def _covering(names: dict[str, bytes]) -> list[Part]:
    return [Part(name=n, version="1.0", purl=f"pkg:generic/{Path(n).name}@1.0",
                 hashes={"SHA-256": sha256_of(d)}) for n, d in names.items()]


class TestSbomCoversArtifacts:
    """Every release file's digest must be a component hash."""

    def test_all_covered(self, tmp_path: Path) -> None:
        """Three artifacts (one in a sub-folder), three hashes: passed, digests in the evidence."""
        release = _release(tmp_path, ARTIFACTS)
        sbom = write_sbom(tmp_path / "sbom.json", _covering(ARTIFACTS))
        verdict = sbom_covers_artifacts(sbom, release)
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert verdict.evidence["artifacts"]["charts/app-1.0.tgz"] == sha256_of(b"chart")
        assert verdict.measured == 3

    def test_missing_artifact_fails_naming_it(self, tmp_path: Path) -> None:
        """An artifact the SBOM does not describe fails the check, by name."""
        release = _release(tmp_path, {**ARTIFACTS, "extra.bin": b"surprise"})
        verdict = sbom_covers_artifacts(write_sbom(tmp_path / "sbom.json", _covering(ARTIFACTS)), release)
        assert verdict.outcome is Outcome.FAILED
        assert "extra.bin" in verdict.message
        assert verdict.evidence["missing"] == ["extra.bin"]

    def test_tampered_artifact_fails(self, tmp_path: Path) -> None:
        """One byte changed after the SBOM was made: its digest no longer matches."""
        sbom = write_sbom(tmp_path / "sbom.json", _covering(ARTIFACTS))
        release = _release(tmp_path, {**ARTIFACTS, "app-1.0.tar.gz": b"tarbalL"})
        verdict = sbom_covers_artifacts(sbom, release)
        assert verdict.outcome is Outcome.FAILED
        assert "app-1.0.tar.gz" in verdict.message

    def test_signatures_checksums_and_the_sbom_itself_are_not_artifacts(self, tmp_path: Path) -> None:
        """Bundles, sidecars, hidden files and the SBOM in the release folder are skipped."""
        release = _release(tmp_path, {**ARTIFACTS, "app-1.0.tar.gz.sigstore.json": b"{}",
                                      "app-1.0.tar.gz.sha256": b"x", ".DS_Store": b"x", ".git/config": b"x"})
        sbom = write_sbom(release / "app.cdx.json", _covering(ARTIFACTS))
        verdict = sbom_covers_artifacts(sbom, release)
        assert verdict.outcome is Outcome.PASSED, verdict.message

    def test_empty_release_fails(self, tmp_path: Path) -> None:
        """No artifacts: an empty release proves nothing."""
        release = _release(tmp_path, {})
        verdict = sbom_covers_artifacts(write_sbom(tmp_path / "sbom.json", _covering(ARTIFACTS)), release)
        assert verdict.outcome is Outcome.FAILED
        assert "no artifacts" in verdict.message

    def test_missing_release_directory_is_an_error(self, tmp_path: Path) -> None:
        """A release directory that does not exist could not be checked."""
        verdict = sbom_covers_artifacts(write_sbom(tmp_path / "sbom.json", _covering(ARTIFACTS)),
                                        tmp_path / "nope")
        assert verdict.outcome is Outcome.ERROR
        assert "nope" in verdict.message

    def test_weak_hashes_do_not_cover(self, tmp_path: Path) -> None:
        """An MD5 or SHA-1 match proves nothing: not covered."""
        import hashlib

        release = _release(tmp_path, {"a.bin": b"a"})
        parts = [Part(name="a", hashes={"MD5": hashlib.md5(b"a").hexdigest(),  # noqa: S324 - the point
                                        "SHA-1": hashlib.sha1(b"a").hexdigest()})]  # noqa: S324
        verdict = sbom_covers_artifacts(write_sbom(tmp_path / "sbom.json", parts), release)
        assert verdict.outcome is Outcome.FAILED

    def test_sha512_covers(self, tmp_path: Path) -> None:
        """A SHA-512 component hash is as good as SHA-256."""
        import hashlib

        release = _release(tmp_path, {"a.bin": b"a"})
        parts = [Part(name="a", hashes={"SHA-512": hashlib.sha512(b"a").hexdigest()})]
        assert sbom_covers_artifacts(write_sbom(tmp_path / "sbom.json", parts), release).outcome \
            is Outcome.PASSED

    def test_subject_component_covers(self, tmp_path: Path) -> None:
        """metadata.component (what the SBOM describes) counts too."""
        release = _release(tmp_path, {"a.bin": b"a"})
        sbom = write_sbom(tmp_path / "sbom.json", [Part(name="dep", version="1")],
                          subject=Part(name="a", version="1", hashes={"SHA-256": sha256_of(b"a")}))
        assert sbom_covers_artifacts(sbom, release).outcome is Outcome.PASSED

    def test_images_by_digest(self, tmp_path: Path) -> None:
        """images.txt digests are covered by an oci purl or a hash; a line without a digest fails."""
        digest = "ab" * 32
        other = "cd" * 32
        release = _release(tmp_path, {"images.txt": (
            f"# images of this release\nregistry.example/app:1.0@sha256:{digest}\n"
            f"registry.example/side@sha256:{other}\n").encode()})
        parts = [Part(name="app", version=f"sha256:{digest}", purl=f"pkg:oci/app@sha256%3A{digest}"),
                 Part(name="side", hashes={"SHA-256": other})]
        sbom = write_sbom(tmp_path / "sbom.json", parts)
        assert sbom_covers_artifacts(sbom, release).outcome is Outcome.PASSED
        (release / "images.txt").write_text(
            f"registry.example/app:1.0@sha256:{digest}\nregistry.example/db:15\n")
        verdict = sbom_covers_artifacts(sbom, release)
        assert verdict.outcome is Outcome.FAILED
        assert "images.txt line 2" in verdict.message

    def test_release_known_by_digests(self, tmp_path: Path) -> None:
        """An S3 release hashed while listing: the same verdict from a name -> digest mapping."""
        sbom = write_sbom(tmp_path / "sbom.json", _covering(ARTIFACTS))
        digests = {f"s3://releases/1.0/{n}": sha256_of(d) for n, d in ARTIFACTS.items()}
        assert sbom_covers_digests(sbom, digests, source="s3://releases/1.0/").outcome is Outcome.PASSED
        digests["s3://releases/1.0/extra.bin"] = sha256_of(b"extra")
        verdict = sbom_covers_digests(sbom, digests, source="s3://releases/1.0/")
        assert verdict.outcome is Outcome.FAILED
        assert "s3://releases/1.0/extra.bin" in verdict.message
        assert sbom_covers_digests(sbom, {}, source="s3://empty/").outcome is Outcome.FAILED

    @given(st.lists(st.one_of(st.text(max_size=30), st.just("# comment"), st.just(""),
                              st.builds(lambda r, h: f"{r}@sha256:{h}", st.text("abc/:.", max_size=10),
                                        st.text("0123456789abcdef", min_size=64, max_size=64))),
                    max_size=8))
    def test_images_list_parses_every_line(self, lines: list[str]) -> None:
        """Any images.txt: every non-blank, non-comment line is an image or a named undigested line."""
        images, undigested = parse_images_list("\n".join(lines))
        meaningful = [ln for ln in "\n".join(lines).splitlines()
                      if ln.split("#", 1)[0].strip() and not ln.lstrip().startswith("#")]
        assert len(images) + len(undigested) == len(meaningful)
        assert all(len(digest) == 64 for _ref, digest in images)
        assert all(u.startswith("images.txt line ") for u in undigested)

    def test_xml_sbom(self, tmp_path: Path) -> None:
        """The same check reads an XML SBOM."""
        release = _release(tmp_path, ARTIFACTS)
        sbom = write_sbom(tmp_path / "sbom.xml", _covering(ARTIFACTS), fmt="xml", version="1.5")
        assert sbom_covers_artifacts(sbom, release).outcome is Outcome.PASSED

    def test_malformed_sbom_fails(self, tmp_path: Path) -> None:
        """An SBOM that cannot be parsed covers nothing: failed, naming it."""
        release = _release(tmp_path, ARTIFACTS)
        verdict = sbom_covers_artifacts(_write(tmp_path, "bad.json", "{"), release)
        assert verdict.outcome is Outcome.FAILED
        assert "bad.json" in verdict.message


# ---------------------------------------------------------------------------- completeness


class TestComponentsComplete:
    """Every component has a version and a purl (or the fields a policy requires)."""

    def test_complete(self, tmp_path: Path) -> None:
        """Versions and purls everywhere, nested components included: passed."""
        parts = [Part("a", "1.0", "pkg:pypi/a@1.0", children=[Part("b", "2", "pkg:pypi/b@2")])]
        verdict = components_have_versions_and_purls(write_sbom(tmp_path / "s.json", parts))
        assert verdict.outcome is Outcome.PASSED
        assert verdict.measured == 2

    def test_missing_fields_fail_naming_components(self, tmp_path: Path) -> None:
        """A nested component without a purl and one without a version are both named."""
        parts = [Part("a", None, "pkg:pypi/a"), Part("c", "3", "pkg:pypi/c@3", children=[Part("b", "2")])]
        verdict = components_have_versions_and_purls(write_sbom(tmp_path / "s.json", parts))
        assert verdict.outcome is Outcome.FAILED
        assert "a [library] (no version at $.components[0].version)" in verdict.message
        assert "b@2 [library] (no purl at $.components[1].components[0].purl)" in verdict.message
        assert verdict.measured == 1

    def test_invalid_purl_fails(self, tmp_path: Path) -> None:
        """A purl that does not parse is as good as none."""
        doc = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
               "components": [{"type": "library", "name": "a", "version": "1", "purl": "not-a-purl"}]}
        verdict = components_have_versions_and_purls(_write(tmp_path, "s.json", json.dumps(doc)))
        assert verdict.outcome is Outcome.FAILED
        assert "invalid purl" in verdict.message

    def test_no_components_fails(self, tmp_path: Path) -> None:
        """An SBOM that lists nothing describes nothing."""
        verdict = components_have_versions_and_purls(write_sbom(tmp_path / "s.json", []))
        assert verdict.outcome is Outcome.FAILED
        assert "lists no components" in verdict.message

    def test_policy_fields(self, tmp_path: Path) -> None:
        """Hashes and licences can be required too."""
        path = write_sbom(tmp_path / "s.json", [Part("a", "1", "pkg:pypi/a@1", licenses=["id:MIT"])])
        verdict = components_have_fields(path, ["version", "hashes", "licenses"])
        assert verdict.outcome is Outcome.FAILED
        assert "no hashes" in verdict.message

    def test_unknown_field_is_a_usage_error(self, tmp_path: Path) -> None:
        """A field drillbook does not know is refused before reading anything."""
        with pytest.raises(ValueError, match="unknown component field"):
            components_have_fields(tmp_path / "s.json", ["colour"])

    def test_unreadable_sbom_is_an_error(self, tmp_path: Path) -> None:
        """A missing SBOM could not be checked."""
        verdict = components_have_versions_and_purls(tmp_path / "absent.json")
        assert verdict.outcome is Outcome.ERROR
        with pytest.raises(SbomUnreadable):
            read_sbom(tmp_path / "absent.json")


# ---------------------------------------------------------------------------- licences


class TestNoDeniedLicenses:
    """Denied licences: ids, names and SPDX expressions, case-insensitively."""

    @pytest.mark.parametrize(("licenses", "outcome"), [
        (["id:MIT"], Outcome.PASSED),
        (["id:GPL-3.0-only"], Outcome.FAILED),
        (["id:gpl-3.0-ONLY"], Outcome.FAILED),
        (["name:GPL-3.0-only"], Outcome.FAILED),
        (["expr:MIT OR GPL-3.0-only"], Outcome.PASSED),      # a choice: MIT can be taken
        (["expr:MIT AND GPL-3.0-only"], Outcome.FAILED),     # both apply
        (["expr:(GPL-3.0-only OR AGPL-3.0-only) AND MIT"], Outcome.FAILED),
        (["expr:GPL-3.0-only WITH GCC-exception-3.1"], Outcome.FAILED),
        (["expr:Apache-2.0 WITH LLVM-exception"], Outcome.PASSED),
        ([], Outcome.PASSED),
    ])
    def test_cases(self, tmp_path: Path, licenses: list[str], outcome: Outcome) -> None:
        """Each licence statement is judged as the table says."""
        path = write_sbom(tmp_path / "s.json", [Part("a", "1", "pkg:pypi/a@1", licenses=licenses)])
        verdict = no_denied_licenses(path, {"GPL-3.0-only", "AGPL-3.0-only"})
        assert verdict.outcome is outcome, verdict.message

    def test_failure_names_component_and_licence(self, tmp_path: Path) -> None:
        """The message says which component carries which licence."""
        path = write_sbom(tmp_path / "s.json", [Part("bad", "1", "pkg:pypi/bad@1", licenses=["id:SSPL-1.0"]),
                                                Part("ok", "1", "pkg:pypi/ok@1", licenses=["id:MIT"])])
        verdict = no_denied_licenses(path, ["SSPL-1.0"])
        assert verdict.outcome is Outcome.FAILED
        assert "bad@1 (SSPL-1.0)" in verdict.message
        assert "ok@1" not in verdict.message

    def test_unparseable_expression_is_an_error(self, tmp_path: Path) -> None:
        """An expression that does not parse could hide a denied licence: error, not pass."""
        doc = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
               "components": [{"type": "library", "name": "a", "licenses": [{"expression": "MIT AND ("}]}]}
        verdict = no_denied_licenses(_write(tmp_path, "s.json", json.dumps(doc)), {"GPL-3.0-only"})
        assert verdict.outcome is Outcome.ERROR
        assert "MIT AND (" in verdict.message

    def test_nothing_denied_is_not_applicable(self, tmp_path: Path) -> None:
        """No denied licences configured: listed as not applicable, not counted as a pass of anything."""
        path = write_sbom(tmp_path / "s.json", [Part("a", "1", licenses=["id:MIT"])])
        assert no_denied_licenses(path, set()).outcome is Outcome.NOT_APPLICABLE

    def test_xml_licences(self, tmp_path: Path) -> None:
        """Licences are read from XML too."""
        path = write_sbom(tmp_path / "s.xml", [Part("a", "1", licenses=["id:GPL-3.0-only"])], fmt="xml")
        assert no_denied_licenses(path, {"GPL-3.0-only"}).outcome is Outcome.FAILED


# ---------------------------------------------------------------------------- drillbook verify sbom


def _verify(*argv: str) -> int:
    from drillbook.cli import build_parser
    from drillbook.verify_sbom import verify_sbom

    return verify_sbom(build_parser().parse_args(["verify", "sbom", *argv]))


def _osv(directory: Path, name: str, fixed: str, severity: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "TEST-0001.json").write_text(json.dumps({
        "schema_version": "1.6.0", "id": "TEST-0001", "modified": "2026-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "PyPI", "name": name},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}],
        "database_specific": {"severity": severity}}))
    return directory


class TestVerifySbomCommand:
    """``drillbook verify sbom``: exit 0 passed, 1 failed, 2 usage or unreadable; --json prints verdicts."""

    def test_policy_drives_every_check(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Artifacts, required fields, denied licences and advisories from one policy file: all pass."""
        release = _release(tmp_path, {"a.whl": b"wheel"})
        sbom = write_sbom(tmp_path / "sbom.json", [Part("a", "1.0", "pkg:pypi/a@1.0", licenses=["id:MIT"],
                                                       hashes={"SHA-256": sha256_of(b"wheel")})])
        _osv(tmp_path / "osv", "a", "0.9", "CRITICAL")
        policy = tmp_path / "policy.toml"
        policy.write_text('[sbom]\nrequired_fields = ["version", "purl", "hashes"]\n'
                          'denied_licenses = ["GPL-3.0-only"]\n'
                          '[vulnerabilities]\nadvisories = "osv"\nthreshold = "medium"\n')
        assert _verify(str(sbom), "--artifacts", str(release), "--policy", str(policy), "--json") == 0
        output = json.loads(capsys.readouterr().out)
        assert output["exit_code"] == 0
        assert [v["id"] for v in output["verdicts"]] == [
            "sbom.valid", "sbom.covers_artifacts", "sbom.components_complete", "sbom.licenses",
            "sbom.vulnerabilities"]
        assert all(v["outcome"] == "passed" for v in output["verdicts"])

    def test_a_vulnerable_component_exits_1(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--advisories and --threshold on the command line; the hit is printed."""
        sbom = write_sbom(tmp_path / "sbom.json", [Part("a", "1.0", "pkg:pypi/a@1.0")])
        advisories = _osv(tmp_path / "osv", "a", "1.1", "HIGH")
        assert _verify(str(sbom), "--advisories", str(advisories), "--threshold", "high") == 1
        out = capsys.readouterr().out
        assert "FAILED   sbom.vulnerabilities" in out
        assert "TEST-0001" in out
        assert _verify(str(sbom), "--advisories", str(advisories), "--threshold", "critical") == 0

    def test_malformed_sbom_exits_1(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A malformed document is a failed check, reported once."""
        assert _verify(str(_write(tmp_path, "bad.json", "{"))) == 1
        out = capsys.readouterr().out
        assert out.count("FAILED") == 1
        assert "malformed JSON" in out

    @pytest.mark.parametrize(("policy", "message"), [
        ("[sbom]\ncolour = 1\n", "unknown key sbom.colour"),
        ("[sboms]\n", "unknown section [sboms]"),
        ('[sbom]\nrequired_fields = ["colour"]\n', "unknown field 'colour'"),
        ('[vulnerabilities]\nthreshold = "severe"\n', "is not one of low, medium, high, critical"),
        ("[sbom\n", "not valid TOML"),
    ])
    def test_bad_policy_is_a_usage_error(self, tmp_path: Path, policy: str, message: str) -> None:
        """Every policy mistake names the key and the file before anything runs."""
        from checks.errors import ConfigError

        sbom = write_sbom(tmp_path / "sbom.json", [Part("a", "1", "pkg:pypi/a@1")])
        path = tmp_path / "policy.toml"
        path.write_text(policy)
        with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as info:
            _verify(str(sbom), "--policy", str(path))
        assert str(path) in str(info.value)

    def test_exit_codes_from_the_shell(self, tmp_path: Path) -> None:
        """As a user runs it: 0 valid, 1 incomplete, 2 missing file or missing advisory directory."""
        from tests.support.cli import drillbook

        good = write_sbom(tmp_path / "good.json", [Part("a", "1", "pkg:pypi/a@1")])
        incomplete = write_sbom(tmp_path / "incomplete.xml", [Part("a")], fmt="xml")
        assert drillbook("verify", "sbom", str(good)).returncode == 0
        result = drillbook("verify", "sbom", str(incomplete), "--json")
        assert result.returncode == 1
        assert json.loads(result.stdout)["verdicts"][1]["outcome"] == "failed"
        missing = drillbook("verify", "sbom", str(tmp_path / "absent.json"))
        assert missing.returncode == 2
        assert "absent.json" in missing.stderr
        no_osv = drillbook("verify", "sbom", str(good), "--advisories", str(tmp_path / "no-osv"))
        assert no_osv.returncode == 2
        assert "no-osv" in no_osv.stderr
