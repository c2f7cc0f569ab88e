"""checks/intoto: a DSSE payload becomes an in-toto statement, or an error naming the JSON path.

The payload is whatever the bundle's maker signed, so the parser is specified by properties first
(any bytes, any JSON: a ``Statement`` or an ``InTotoStatementError``, never another exception),
then against sigstore's own statement model (what sigstore accepts, drillbook accepts), then case
by case: each malformed part is reported at its path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sigstore.dsse import Statement as SigstoreStatement
from sigstore.errors import Error as SigstoreError

from checks.intoto import (
    STATEMENT_TYPES,
    InTotoStatementError,
    Statement,
    describe_predicate,
    parse_statement,
    statement_from_json,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("DRILLBOOK_FIXTURES") or REPO.parent / "shared" / "fixtures")
REAL_DSSE = FIXTURES / "supply_chain" / "sigstore" / "staging-dsse-rekor-v2" / "a.txt.intoto.sigstore.json"

SHA = hashlib.sha256(b"wheel").hexdigest()


def statement(**override: Any) -> dict[str, Any]:
    """A valid v1 statement with one subject; ``override`` replaces (or, as None, removes) keys."""
    doc: dict[str, Any] = {"_type": STATEMENT_TYPES[0],
                           "subject": [{"name": "app.whl", "digest": {"sha256": SHA}}],
                           "predicateType": "https://slsa.dev/provenance/v1", "predicate": {}}
    for key, value in override.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# ---- properties -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)
hexes = st.text("0123456789abcdefABCDEF", min_size=1, max_size=70)
digest_sets = st.dictionaries(st.sampled_from(["sha256", "sha512", "gitCommit", "sha-1", "x"]),
                              hexes | json_values, max_size=3)
subjects = st.fixed_dictionaries({}, optional={"name": st.text(max_size=10) | json_values,
                                               "digest": digest_sets | json_values})
near_statements = st.fixed_dictionaries({}, optional={
    "_type": st.sampled_from([*STATEMENT_TYPES, "https://in-toto.io/Statement/v2"]) | json_values,
    "subject": st.lists(subjects | json_values, max_size=3) | json_values,
    "predicateType": st.text(max_size=20) | json_values,
    "predicate": st.dictionaries(st.text(max_size=5), json_values, max_size=2) | json_values,
})

# Statements shaped as sigstore's model expects (most of them valid to it), with wrong pieces mixed in.
_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128, "sha3_256": 64, "sha3_384": 96, "sha3_512": 128}
sigstore_digests = st.sampled_from(sorted(_LENGTHS)).flatmap(
    lambda alg: st.tuples(st.just(alg), st.text("0123456789abcdefABCDEF", min_size=_LENGTHS[alg],
                                                max_size=_LENGTHS[alg]) | hexes))
sigstore_shaped = st.fixed_dictionaries({
    "_type": st.just(STATEMENT_TYPES[0]),
    "subject": st.lists(st.fixed_dictionaries({
        "name": st.none() | st.text(max_size=10),
        "digest": st.lists(sigstore_digests, min_size=1, max_size=3).map(dict),
    }), min_size=1, max_size=4),
    "predicateType": st.text(max_size=30),
    "predicate": st.none() | st.dictionaries(st.text(max_size=5), json_values, max_size=2),
})


class TestAnyInput:
    @given(payload=st.binary(max_size=300))
    def test_any_bytes_give_a_statement_or_the_domain_error(self, payload: bytes) -> None:
        """Arbitrary bytes (not UTF-8, not JSON, truncated) never raise anything else."""
        try:
            parse_statement(payload)
        except InTotoStatementError as exc:
            assert exc.path.startswith("$") and exc.hint

    @given(document=json_values | near_statements)
    def test_any_json_gives_a_statement_or_the_domain_error(self, document: Any) -> None:
        """Any JSON value, including near-miss statements, ends as one of the two outcomes."""
        try:
            parsed = parse_statement(encode(document))
        except InTotoStatementError as exc:
            assert exc.path.startswith("$")
            assert str(exc).startswith(exc.path)
        else:
            assert isinstance(parsed, Statement) and parsed.subjects
            assert parsed.statement_type in STATEMENT_TYPES

    @given(depth=st.integers(min_value=1, max_value=200_000))
    def test_deep_nesting_is_the_domain_error(self, depth: int) -> None:
        """Nesting past the interpreter's recursion limit is a statement error, not RecursionError."""
        with pytest.raises(InTotoStatementError):
            parse_statement(b"[" * depth + b"]" * depth)

    @given(document=sigstore_shaped | near_statements)
    @example(document={"_type": "https://in-toto.io/Statement/v1", "predicateType": "0",
                       "subject": [{"name": "", "digest": {}}]})  # found in CI: sigstore takes it
    def test_whatever_sigstore_accepts_is_accepted_with_the_same_subjects(self, document: Any) -> None:
        """sigstore's own in-toto model is the reference: no statement it reads is refused here.

        Three deliberate exceptions, each reported at its path: a subject without any digest and a
        digest that is not hex of its algorithm's length (sigstore takes them; neither could ever
        match a file), and an empty predicateType (sigstore takes any string; the spec requires a URI).
        """
        payload = encode(document)
        try:
            SigstoreStatement(payload)
        except SigstoreError:
            return
        # In subject order, as the parser meets them: a subject without any digest, or a bad one.
        bad_digest = [path for i, s in enumerate(document["subject"])
                      for path in ([f"$.subject[{i}].digest"] if not s["digest"] else [
                          f"$.subject[{i}].digest.{alg}" for alg, v in s["digest"].items()
                          if len(v) != _LENGTHS[alg] or not all(c in "0123456789abcdefABCDEF" for c in v)])]
        if bad_digest:
            with pytest.raises(InTotoStatementError) as caught:
                parse_statement(payload)
            assert caught.value.path == bad_digest[0]
            return
        if not document["predicateType"].strip():
            with pytest.raises(InTotoStatementError, match=r"^\$\.predicateType"):
                parse_statement(payload)
            return
        parsed = parse_statement(payload)
        assert parsed.predicate_type == document["predicateType"]
        assert [s.sha256 for s in parsed.subjects] == [
            s["digest"]["sha256"].lower() if "sha256" in s["digest"] else None for s in document["subject"]]


# ---- valid statements ---------------------------------------------------------------------------


class TestValidStatements:
    def test_v1_statement_gives_subjects_and_predicate_type(self) -> None:
        parsed = parse_statement(encode(statement()))
        assert parsed.predicate_type == "https://slsa.dev/provenance/v1"
        assert [(s.name, s.sha256) for s in parsed.subjects] == [("app.whl", SHA)]
        assert parsed.subjects_with_sha256(SHA.upper())[0].name == "app.whl"

    def test_v0_1_statement_as_slsa_github_generator_writes_it_is_accepted(self) -> None:
        """Statement v0.1 with SLSA provenance v0.2 is still what many published attestations carry."""
        parsed = parse_statement(encode(statement(_type="https://in-toto.io/Statement/v0.1",
                                                  predicateType="https://slsa.dev/provenance/v0.2")))
        assert parsed.predicate_name() == "SLSA provenance v0.2 (https://slsa.dev/provenance/v0.2)"

    def test_digests_are_lowercased_and_other_algorithms_kept(self) -> None:
        parsed = statement_from_json(statement(subject=[
            {"digest": {"SHA256": SHA.upper(), "gitCommit": "AbC"}}]))
        assert parsed.subjects[0].sha256 == SHA and parsed.subjects[0].digest["gitcommit"] == "AbC"
        assert parsed.subjects[0].name is None and parsed.subjects[0].label().startswith("(unnamed)")

    def test_a_subject_without_sha256_matches_nothing_and_says_so(self) -> None:
        parsed = statement_from_json(statement(subject=[{"name": "x", "digest": {"sha512": "a" * 128}}]))
        assert parsed.subjects_with_sha256(SHA) == []
        assert parsed.subjects[0].label() == "x (no sha256; sha512)"

    @pytest.mark.skipif(not REAL_DSSE.is_file(), reason=f"shared sigstore fixtures not found at {REAL_DSSE}")
    def test_the_real_conformance_payload(self) -> None:
        """The payload of sigstore-conformance's Rekor v2 DSSE bundle (SLSA provenance v1 over a.txt)."""
        envelope = json.loads(REAL_DSSE.read_text())["dsseEnvelope"]
        parsed = parse_statement(base64.b64decode(envelope["payload"]))
        assert parsed.predicate_name() == "SLSA provenance v1 (https://slsa.dev/provenance/v1)"
        assert [(s.name, s.sha256) for s in parsed.subjects] == [
            ("a.txt", "a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf")]


class TestDescribePredicate:
    def test_known_types_are_named_with_their_uri(self) -> None:
        assert describe_predicate("https://spdx.dev/Document") == "SPDX SBOM (https://spdx.dev/Document)"

    def test_unknown_types_are_given_as_the_uri(self) -> None:
        assert describe_predicate("https://example.com/custom/v3") == \
            "in-toto attestation (predicate type https://example.com/custom/v3)"


# ---- each malformed part, at its path ------------------------------------------------------------


MALFORMED: list[tuple[str, Any, str, str]] = [
    ("not an object", [statement()], "$", "expected a JSON object, got a list"),
    ("no _type", statement(_type=None), "$._type", "missing"),
    ("_type not a string", statement(_type=1), "$._type", "expected a string, got a number"),
    ("another _type", statement(_type="https://example.com/Statement/v1"), "$._type",
     "is not an in-toto Statement type"),
    ("no subject", statement(subject=None), "$.subject", "missing"),
    ("subject an object", statement(subject={"digest": {}}), "$.subject", "expected a list, got an object"),
    ("no subjects", statement(subject=[]), "$.subject", "attests to nothing"),
    ("subject not an object", statement(subject=[{"digest": {"sha256": SHA}}, "app.whl"]), "$.subject[1]",
     "expected an object, got a string"),
    ("name not a string", statement(subject=[{"name": 7, "digest": {"sha256": SHA}}]), "$.subject[0].name",
     "expected a string"),
    ("no digest", statement(subject=[{"name": "a"}]), "$.subject[0].digest", "every subject needs a digest"),
    ("empty digest", statement(subject=[{"name": "a", "digest": {}}]), "$.subject[0].digest", "at least one"),
    ("sha256 not hex", statement(subject=[{"digest": {"sha256": "foo"}}]), "$.subject[0].digest.sha256",
     "'foo' is not a sha256 digest (64 hex digits)"),
    ("sha256 truncated", statement(subject=[{"digest": {"sha256": SHA[:63]}}]), "$.subject[0].digest.sha256",
     "64 hex digits"),
    ("digest a number", statement(subject=[{"digest": {"sha-1": 5}}]), "$.subject[0].digest['sha-1']",
     "expected a hex string, got a number"),
    ("no predicateType", statement(predicateType=None), "$.predicateType", "missing"),
    ("empty predicateType", statement(predicateType=" "), "$.predicateType", "non-empty string"),
    ("predicate a list", statement(predicate=[1]), "$.predicate", "expected an object, got a list"),
]


class TestMalformedStatements:
    @pytest.mark.parametrize(("document", "path", "problem"), [m[1:] for m in MALFORMED],
                             ids=[m[0] for m in MALFORMED])
    def test_the_error_names_the_json_path_and_the_problem(self, document: Any, path: str,
                                                           problem: str) -> None:
        with pytest.raises(InTotoStatementError) as caught:
            parse_statement(encode(document))
        assert caught.value.path == path
        assert problem in caught.value.problem
        assert "in-toto" in caught.value.hint and "Statement" in caught.value.hint

    @pytest.mark.parametrize(("payload", "problem"), [
        (b"\xff\xfe{}", "not UTF-8 text (byte 0)"),
        (b'{"_type": ', "not JSON: Expecting value: line 1 column 11"),
        (b"", "not JSON"),
        (b'{"_type": "a", "_type": "b"}', "key '_type' appears twice"),
    ])
    def test_undecodable_payloads_are_errors_at_the_root(self, payload: bytes, problem: str) -> None:
        with pytest.raises(InTotoStatementError) as caught:
            parse_statement(payload)
        assert caught.value.path == "$" and problem in caught.value.problem

    def test_a_duplicate_key_deep_inside_is_refused(self) -> None:
        """Two ``sha256`` values in one digest: which one counts would depend on the parser."""
        text = encode(statement()).replace(b'"sha256": "', b'"sha256": "' + b"0" * 64 + b'", "sha256": "')
        with pytest.raises(InTotoStatementError, match="'sha256' appears twice"):
            parse_statement(text)
