"""Duplicate keys in JSON inputs are an error naming the key (issue 11, item 6).

The reader itself is specified by properties (hypothesis); then each kind of input that reaches it
(an SBOM, a sigstore bundle, a trusted root, a results.json read back) is shown refusing one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.sbom import SbomMalformed, read_sbom
from checks.signatures import SignatureInputError, load_trusted_root, verify_bundle
from checks.strict_json import DuplicateKeyError, loads_strict
from checks.verdict import Outcome
from drillbook.history import load_earlier_runs
from drills.signing_authority import DEFAULT_IDENTITY, DEFAULT_ISSUER, SigningAuthority
from reports.results import RunResult

keys = st.text(max_size=8)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)


def with_duplicate(obj: dict[str, Any], key: str, value: Any) -> str:
    """``obj`` as JSON text with ``key`` written once more at the end (a duplicate if present)."""
    body = json.dumps(obj)
    extra = f"{json.dumps(key)}: {json.dumps(value)}"
    return body[:-1] + (", " if obj else "") + extra + "}"


class TestLoadsStrict:
    @given(documents)
    def test_documents_without_duplicates_read_as_json_loads_reads_them(self, doc: Any) -> None:
        """No repeated key: exactly what ``json.loads`` returns."""
        text = json.dumps(doc)
        assert loads_strict(text) == json.loads(text)

    @given(st.dictionaries(keys, documents, min_size=1, max_size=5), st.data(), documents,
           st.lists(keys, max_size=3, unique=True))
    def test_a_repeated_key_at_any_depth_is_refused_naming_it(
        self, obj: dict[str, Any], data: st.DataObject, value: Any, path: list[str]
    ) -> None:
        """A key written twice in one object, however deep, raises DuplicateKeyError naming it."""
        key = data.draw(st.sampled_from(sorted(obj)))
        text = with_duplicate(obj, key, value)
        for outer in reversed(path):  # nest the offending object under unique keys
            text = f"{{{json.dumps(outer)}: {text}}}"
        with pytest.raises(DuplicateKeyError) as caught:
            loads_strict(text)
        assert caught.value.key == key
        assert repr(key) in str(caught.value)
        assert isinstance(caught.value, ValueError)

    @given(st.dictionaries(keys, documents, max_size=5), documents)
    def test_the_same_key_in_different_objects_is_fine(self, obj: dict[str, Any], value: Any) -> None:
        """Equal keys in sibling objects are not duplicates."""
        text = json.dumps([obj, obj, {"a": value, "b": {"a": value}}])
        assert loads_strict(text) == json.loads(text)


class TestInputsRefuseDuplicateKeys:
    def test_sbom(self, tmp_path: Path) -> None:
        """An SBOM naming a field twice is malformed, naming the key."""
        sbom = tmp_path / "bom.json"
        sbom.write_text('{"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, '
                        '"components": [{"type": "library", "name": "a", "version": "1", "version": "2"}]}')
        with pytest.raises(SbomMalformed) as caught:
            read_sbom(sbom)
        assert "duplicate key 'version'" in str(caught.value)
        assert str(sbom) in str(caught.value)

    def test_sigstore_bundle(self, tmp_path: Path) -> None:
        """A bundle with a repeated key fails verification, naming the key (not the last one wins)."""
        auth = SigningAuthority.create("dupes")
        root = auth.write_trusted_root(tmp_path / "root.json")
        artifact = tmp_path / "app.tar.gz"
        artifact.write_bytes(b"artifact\n")
        bundle = auth.sign_file(artifact)
        document = json.loads(bundle.read_text(encoding="utf-8"))
        bundle.write_text(with_duplicate(document, "mediaType", document["mediaType"]), encoding="utf-8")
        verdict = verify_bundle(artifact, bundle, trusted_root=root, identity=DEFAULT_IDENTITY,
                                issuer=DEFAULT_ISSUER)
        assert verdict.outcome is Outcome.FAILED
        assert "duplicate key 'mediaType'" in verdict.message

    def test_trusted_root(self, tmp_path: Path) -> None:
        """A trusted root with a repeated key is refused, naming the key."""
        auth = SigningAuthority.create("dupes-root")
        root = auth.write_trusted_root(tmp_path / "root.json")
        document = json.loads(root.read_text(encoding="utf-8"))
        root.write_text(with_duplicate(document, "tlogs", []), encoding="utf-8")
        with pytest.raises(SignatureInputError) as caught:
            load_trusted_root(root)
        assert "duplicate key 'tlogs'" in str(caught.value)

    def test_results_read_back(self, tmp_path: Path) -> None:
        """A results.json with two "strict" keys is unreadable, named by history, never last-wins."""
        results = RunResult(run_id="r1", started_at="2026-12-01T00:00:00+00:00", drillbook_version="0",
                            user="u", host="h", config_path=None, command="drillbook run", strict=False)
        earlier = tmp_path / "r1"
        earlier.mkdir()
        (earlier / "results.json").write_text(with_duplicate(results.to_dict(), "strict", True),
                                              encoding="utf-8")
        with pytest.raises(DuplicateKeyError, match="'strict'"):
            RunResult.read(earlier / "results.json")
        this_run = tmp_path / "r2"
        this_run.mkdir()
        loaded = load_earlier_runs(this_run)
        assert loaded.runs == ()
        assert any("duplicate key 'strict'" in line for line in loaded.unreadable)
