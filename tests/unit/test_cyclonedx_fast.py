"""The linear ``uniqueItems`` / ``enum`` of checks.cyclonedx_fast decide as jsonschema does.

jsonschema's own functions are the oracle: ``_utils.uniq`` for single arrays, and the
library's validator (cyclonedx-python-lib's Draft 7 validator, unmodified) for whole
documents, compared on validity, on the first error's JSON path and message, and on
the whole list of errors in order.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from cyclonedx.schema import SchemaVersion
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import _utils as jsonschema_utils

from checks import cyclonedx_compiled
from checks.cyclonedx_fast import fast_json_validator, library_json_validator, unique_items_ok

# JSON values where the equalities that matter are likely: 1 / 1.0 / true, 0 / false, "1",
# nested arrays and objects whose keys come in another order.
_SCALARS = st.sampled_from([0, 1, 1.0, 0.0, -0.0, 2, True, False, None, "1", "a", "", 2**53, float(2**53)])
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
    max_leaves=8,
)


def _shuffled_copy(value: Any, data: st.DataObject) -> Any:
    """The same JSON value with every object's keys in another order (equal for JSON)."""
    if isinstance(value, dict):
        keys = data.draw(st.permutations(list(value)))
        return {k: _shuffled_copy(value[k], data) for k in keys}
    if isinstance(value, list):
        return [_shuffled_copy(v, data) for v in value]
    return value


class TestUniqueItems:
    @settings(max_examples=600, deadline=None)
    @given(items=st.lists(_JSON, max_size=6), data=st.data())
    def test_same_answer_as_jsonschema(self, items: list[Any], data: st.DataObject) -> None:
        """On arrays with repeats (reordered keys, 1 vs 1.0 vs true), jsonschema's uniq is matched."""
        if items and data.draw(st.booleans()):
            items = [*items, _shuffled_copy(data.draw(st.sampled_from(items)), data)]
            items = data.draw(st.permutations(items))
        assert unique_items_ok(items) == jsonschema_utils.uniq(items)

    def test_true_and_one_are_different(self) -> None:
        """JSON equality: true is not 1, 1 is 1.0, key order does not matter."""
        assert unique_items_ok([{"a": True}, {"a": 1}])
        assert not unique_items_ok([{"a": 1}, {"a": 1.0}])
        assert not unique_items_ok([{"a": 1, "b": [2]}, {"b": [2.0], "a": 1}])

    def test_jsonschema_quirk_is_kept(self) -> None:
        """Sortable items go through jsonschema's sort-and-compare-neighbours path unchanged,
        including the repeat it misses, so verdicts stay identical."""
        items: list[Any] = [[True], [1], [True]]
        assert unique_items_ok(items) == jsonschema_utils.uniq(items)

    def test_ten_thousand_objects_in_linear_time(self) -> None:
        """An array of 10,000 distinct objects (jsonschema: 50 M comparisons) is decided at once;
        a repeat at the end is found."""
        items = [{"name": f"c{i}", "version": "1"} for i in range(10_000)]
        assert unique_items_ok(items)
        assert not unique_items_ok([*items, {"version": "1", "name": "c5"}])


def _document(components: list[dict[str, Any]], depends: list[str]) -> dict[str, Any]:
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "components": components,
            "dependencies": [{"ref": "a", "dependsOn": depends}]}


_COMPONENT = st.fixed_dictionaries(
    {"type": st.sampled_from(["library", "framework", "bogus"]),
     "name": st.sampled_from(["a", "b"])},
    optional={"version": st.sampled_from(["1", "1.0"]),
              "licenses": st.sampled_from([[{"license": {"id": "MIT"}}], [{"license": {"id": "NOPE"}}],
                                           [{"license": {"id": "MIT"}}, {"license": {"id": "MIT"}}]]),
              "hashes": st.sampled_from([[{"alg": "SHA-256", "content": "a" * 64}] * 2,
                                         [{"alg": "SHA-256", "content": "a" * 64}]])},
)


class TestWholeDocuments:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(components=st.lists(_COMPONENT, max_size=4),
           depends=st.lists(st.sampled_from(["a", "b"]), max_size=3), data=st.data())
    def test_same_errors_as_the_library(self, components: list[dict[str, Any]], depends: list[str],
                                        data: st.DataObject) -> None:
        """Small documents with repeats in unique arrays (components, hashes, licences, dependsOn)
        and bad enum values: the same errors, at the same JSON paths, in the same order."""
        if components and data.draw(st.booleans()):
            components = [*components, _shuffled_copy(copy.deepcopy(components[0]), data)]
        document = json.loads(json.dumps(_document(components, depends)))
        ours = [(e.json_path, e.message)
                for e in fast_json_validator(SchemaVersion.V1_6).iter_errors(document)]
        theirs = [(e.json_path, e.message)
                  for e in library_json_validator(SchemaVersion.V1_6).iter_errors(document)]
        assert ours == theirs


# A component with most of what real SBOMs carry (syft's properties and cpe, hashes, licences by id,
# name and expression, external references, nested components, evidence), to mutate below.
_RICH_COMPONENT: dict[str, Any] = {
    "bom-ref": "pkg:deb/debian/lib@1.0?arch=amd64", "type": "library", "name": "lib", "version": "1.0",
    "group": "org.example", "cpe": "cpe:2.3:a:lib:lib:1.0:*:*:*:*:*:*:*",
    "purl": "pkg:deb/debian/lib@1.0?arch=amd64", "scope": "required",
    "hashes": [{"alg": "SHA-256", "content": "a" * 64}, {"alg": "MD5", "content": "b" * 32}],
    "licenses": [{"license": {"id": "MIT", "url": "https://spdx.org/licenses/MIT.html"}}],
    "externalReferences": [{"type": "website", "url": "https://example.org/lib#top", "comment": "home"},
                           {"type": "vcs", "url": "git+https://example.org/lib.git"}],
    "properties": [{"name": "syft:package:type", "value": "deb"}],
    "supplier": {"name": "Example", "url": ["https://example.org"]},
    "components": [{"type": "file", "name": "lib.so", "hashes": [{"alg": "SHA-1", "content": "c" * 40}]}],
}
_ODD_VALUES = st.sampled_from([
    None, True, False, 0, 1, 1.0, -1, "", "x", "NOPE", "SHA-256", "library", "MIT OR Apache-2.0",
    "https://exa mple.org/", "urn:uuid:x", "a" * 64, [], [{}], {}, {"id": "MIT"}, {"name": "n"},
    {"expression": "MIT"}, {"license": {"name": "Custom"}}, {"license": {"id": "MIT", "name": "both"}},
])


def _mutate(value: Any, data: st.DataObject, depth: int = 0) -> Any:
    """The value with one random change at a random place: a replaced value, a removed or an added
    key, a duplicated array item (uniqueItems)."""
    containers = (isinstance(value, dict) and value) or (isinstance(value, list) and value)
    if not containers or depth > 6 or data.draw(st.integers(0, 3)) == 0:
        action = data.draw(st.sampled_from(["replace", "drop", "add", "duplicate"]))
        if action == "drop" and isinstance(value, dict) and value:
            key = data.draw(st.sampled_from(sorted(value)))
            return {k: v for k, v in value.items() if k != key}
        if action == "add" and isinstance(value, dict):
            key = data.draw(st.sampled_from(["unknown", "type", "name", "hashes", "licenses", "url", "alg"]))
            return {**value, key: data.draw(_ODD_VALUES)}
        if action == "duplicate" and isinstance(value, list) and value:
            return [*value, copy.deepcopy(value[0])]
        return data.draw(_ODD_VALUES)
    if isinstance(value, dict):
        key = data.draw(st.sampled_from(sorted(value)))
        return {**value, key: _mutate(value[key], data, depth + 1)}
    index = data.draw(st.integers(0, len(value) - 1))
    return [*value[:index], _mutate(value[index], data, depth + 1), *value[index + 1:]]


def _errors(validator: Any, document: dict[str, Any]) -> list[tuple[str, str, list[Any]]]:
    return [(e.json_path, e.message, list(e.schema_path)) for e in validator.iter_errors(document)]


class TestCompiledPredicates:
    """The compiled predicates (a subtree they pass is not walked) never hide an error: on mutated
    components every error the library reports is reported, same message, path, schema path, order."""

    # Each example runs the library's own (slow) validator: 400 cost CI ~100 s of its 30-minute budget;
    # 150 still draws every schema version many times over.
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data(), mutations=st.integers(0, 3), version=st.sampled_from(
        [SchemaVersion.V1_6, SchemaVersion.V1_5, SchemaVersion.V1_4, SchemaVersion.V1_3]))
    def test_same_errors_as_the_library_on_mutated_components(self, data: st.DataObject, mutations: int,
                                                             version: SchemaVersion) -> None:
        component: Any = copy.deepcopy(_RICH_COMPONENT)
        for _ in range(mutations):
            component = _mutate(component, data)
        document = {"bomFormat": "CycloneDX", "specVersion": version.to_version(), "version": 1,
                    "components": [copy.deepcopy(_RICH_COMPONENT), component]}
        document = json.loads(json.dumps(document))
        assert _errors(fast_json_validator(version), document) == \
            _errors(library_json_validator(version), document)

    def test_every_subschema_of_the_shipped_schemas_compiles(self) -> None:
        """Each keyword the CycloneDX schemas use is mirrored: a valid component is decided by one
        predicate call, not walked (the speed comes from here)."""
        validator = fast_json_validator(SchemaVersion.V1_6)
        document = json.loads(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
                                          "components": [_RICH_COMPONENT]}))
        assert _errors(validator, document) == []
        assert all(predicate is not None for predicate, _ in cyclonedx_compiled._COMPILED.values())
        assert cyclonedx_compiled._COMPILED
