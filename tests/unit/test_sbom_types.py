"""checks.sbom.completeness by component type: CBOMs, SaaSBOMs, policy per type, CycloneDX 1.7.

The CBOM and SaaSBOM documents are built here from the CycloneDX examples (the shared fixtures
have a 1.6 SaaSBOM but no CBOM): CycloneDX/bom-examples (CC0-1.0) ``CBOM/Protocol/bom.json``
(a TLS 1.2 CBOM, 8 cryptographic assets, spec 1.7) and
``SaaSBOM/apigateway-microservices-datastores/bom.json`` (spec 1.4). The 1.6 CBOM is the
same inventory with the 1.7-only fields (``algorithmFamily``, ``ellipticCurve``) written the
1.6 way (``curve``) or left out; the 1.5 SaaSBOM is the 1.4 one declared as 1.5 (its service
``data`` entries are valid 1.5 ``serviceData``). Each test checks the schema says they are
valid before it relies on them.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.sbom import (
    COMPONENT_TYPES,
    components_complete,
    components_have_versions_and_purls,
    parse_rules,
    read_sbom,
    validate_sbom,
)
from checks.verdict import Outcome
from tests.support.sbom_docs import CYCLONEDX_FIXTURES

# ---------------------------------------------------------------------------- documents


def _algorithm(name: str, ref: str, oid: str, **properties: Any) -> dict[str, Any]:
    return {"name": name, "type": "cryptographic-asset", "bom-ref": ref,
            "cryptoProperties": {"assetType": "algorithm", "oid": oid, "algorithmProperties": {
                "executionEnvironment": "software-plain-ram", "implementationPlatform": "x86_64",
                "certificationLevel": ["none"], **properties}}}


def cbom_1_6() -> dict[str, Any]:
    """CBOM/Protocol/bom.json of CycloneDX/bom-examples, written to the 1.6 schema, plus the library."""
    cert_ref = ("crypto/certificate/google.com@sha256:"
                "1e15e0fbd3ce95bde5945633ae96add551341b11e5bae7bba12e98ad84a5beb4")
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
        "serialNumber": "urn:uuid:e8c355aa-2142-4084-a8c7-6d42c8610ba2",
        "metadata": {"timestamp": "2025-07-09T12:00:00Z",
                     "component": {"type": "application", "name": "my application", "version": "1.0"}},
        "components": [
            {"name": "TLSv1.2", "type": "cryptographic-asset", "bom-ref": "crypto/protocol/tls@1.2",
             "cryptoProperties": {"assetType": "protocol", "oid": "1.3.18.0.2.32.104", "protocolProperties": {
                 "type": "tls", "version": "1.2",
                 "cipherSuites": [{"name": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                                   "algorithms": ["crypto/algorithm/ecdh-curve25519@1.3.132.1.12",
                                                  "crypto/algorithm/rsa-2048@1.2.840.113549.1.1.1",
                                                  "crypto/algorithm/aes-256-gcm@2.16.840.1.101.3.4.1.46",
                                                  "crypto/algorithm/sha-384@2.16.840.1.101.3.4.2.9"],
                                   "identifiers": ["0xC0", "0x30"]}],
                 "cryptoRefArray": [cert_ref]}}},
            {"name": "google.com", "type": "cryptographic-asset", "bom-ref": cert_ref,
             "cryptoProperties": {"assetType": "certificate", "certificateProperties": {
                 "subjectName": "CN = www.google.com",
                 "issuerName": "C = US, O = Google Trust Services LLC, CN = GTS CA 1C3",
                 "notValidBefore": "2016-11-21T08:00:00Z", "notValidAfter": "2017-11-22T07:59:59Z",
                 "signatureAlgorithmRef": "crypto/algorithm/sha-512-rsa@1.2.840.113549.1.1.13",
                 "subjectPublicKeyRef": "crypto/key/rsa-2048@1.2.840.113549.1.1.1",
                 "certificateFormat": "X.509", "certificateExtension": "crt"}}},
            _algorithm("RSA-PKCS1-1.5-SHA512", "crypto/algorithm/sha-512-rsa@1.2.840.113549.1.1.13",
                       "1.2.840.113549.1.1.13", primitive="signature", parameterSetIdentifier="512",
                       cryptoFunctions=["sign", "verify"], nistQuantumSecurityLevel=0),
            {"name": "RSA-2048", "type": "cryptographic-asset",
             "bom-ref": "crypto/key/rsa-2048@1.2.840.113549.1.1.1",
             "cryptoProperties": {"assetType": "related-crypto-material", "oid": "1.2.840.113549.1.1.11",
                                  "relatedCryptoMaterialProperties": {
                                      "type": "public-key", "id": "2e9ef09e-dfac-4526-96b4-d02f31af1b22",
                                      "state": "active", "size": 2048,
                                      "algorithmRef": "crypto/algorithm/rsa-2048@1.2.840.113549.1.1.11",
                                      "securedBy": {"mechanism": "Software", "algorithmRef":
                                                    "crypto/algorithm/aes-256-gcm@2.16.840.1.101.3.4.1.46"},
                                      "creationDate": "2016-11-21T08:00:00Z",
                                      "activationDate": "2016-11-21T08:20:00Z"}}},
            _algorithm("X25519", "crypto/algorithm/ecdh-curve25519@1.3.132.1.12", "1.3.132.1.12",
                       primitive="key-agree", curve="Curve25519", cryptoFunctions=["keygen"]),
            _algorithm("RSA-PKCS1-1.5-SHA256-2048", "crypto/algorithm/rsa-2048@1.2.840.113549.1.1.11",
                       "1.2.840.113549.1.1.11", primitive="signature", cryptoFunctions=["sign", "verify"]),
            _algorithm("AES-256-GCM", "crypto/algorithm/aes-256-gcm@2.16.840.1.101.3.4.1.46",
                       "2.16.840.1.101.3.4.1.46", primitive="ae", mode="gcm",
                       cryptoFunctions=["encrypt", "decrypt"], classicalSecurityLevel=256,
                       nistQuantumSecurityLevel=1),
            _algorithm("SHA-384", "crypto/algorithm/sha-384@2.16.840.1.101.3.4.2.9", "2.16.840.1.101.3.4.2.9",
                       primitive="hash", parameterSetIdentifier="384", cryptoFunctions=["digest"],
                       nistQuantumSecurityLevel=2),
            # What provides them: a package, held to a version and a purl as always.
            {"name": "openssl", "type": "library", "version": "3.0.13", "purl": "pkg:generic/openssl@3.0.13",
             "bom-ref": "openssl"},
        ],
    }


def _service(ref: str, name: str, endpoint: str, classification: str, **extra: Any) -> dict[str, Any]:
    return {"bom-ref": ref, "group": "com.example", "name": name, "version": "2022-1",
            "endpoints": [endpoint], "authenticated": True, "x-trust-boundary": False,
            "data": [{"classification": classification, "flow": "bi-directional"}], **extra}


def saasbom_1_5() -> dict[str, Any]:
    """SaaSBOM/apigateway-microservices-datastores/bom.json of CycloneDX/bom-examples, declared 1.5."""
    provider = {"name": "Acme Inc", "url": ["https://example.com"]}

    def docs(url: str) -> list[dict[str, str]]:
        return [{"type": "documentation", "url": url}]

    return {
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
        "metadata": {"timestamp": "2021-01-10T12:00:00Z",
                     "component": {"bom-ref": "acme-application", "type": "application",
                                   "name": "Acme Cloud Example", "version": "2022-1"}},
        "services": [{
            "bom-ref": "api-gateway", "provider": provider, "group": "com.example", "name": "API Gateway",
            "version": "2022-1", "description": "Example API Gateway",
            "endpoints": ["https://example.com/", "https://example.com/app"],
            "authenticated": False, "x-trust-boundary": True,
            "data": [{"classification": c, "flow": "bi-directional"} for c in ("PII", "PIFI", "Public")],
            "externalReferences": docs("http://example.com/app/swagger"),
            "services": [
                _service("ms-1.example.com", "Microservice 1", "https://ms-1.example.com", "PII",
                         provider=provider, externalReferences=docs("https://ms-1.example.com/swagger")),
                _service("ms-2.example.com", "Microservice 2", "https://ms-2.example.com", "PIFI",
                         provider=provider, externalReferences=docs("https://ms-2.example.com/swagger")),
                _service("ms-3.example.com", "Microservice 3", "https://ms-3.example.com", "Public",
                         provider=provider, externalReferences=docs("https://ms-3.example.com/swagger")),
                _service("ms-1-pgsql.example.com", "Postgres", "https://ms-1-pgsql.example.com:5432", "PII"),
                _service("s3-example.amazon.com", "S3", "https://s3-example.amazon.com", "Public"),
            ],
        }],
        "dependencies": [{"ref": "acme-application", "dependsOn": ["api-gateway"]},
                         {"ref": "api-gateway",
                          "dependsOn": ["ms-1.example.com", "ms-2.example.com", "ms-3.example.com"]}],
    }


def cbom_1_7() -> dict[str, Any]:
    """The same CBOM as published (spec 1.7: ``algorithmFamily``, ``ellipticCurve``)."""
    document = cbom_1_6()
    document["specVersion"] = "1.7"
    for component in document["components"]:
        algorithm = component.get("cryptoProperties", {}).get("algorithmProperties")
        if algorithm is not None and "curve" in algorithm:
            algorithm["ellipticCurve"] = "other/" + algorithm.pop("curve")
        if algorithm is not None and algorithm.get("primitive") == "ae":
            algorithm["algorithmFamily"] = "AES"
    return document


def _write(tmp_path: Path, name: str, document: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- real documents pass


class TestCompleteDocumentsPass:
    """A CBOM and a SaaSBOM, valid and complete, pass; the verdict says which rule applied to what."""

    @pytest.mark.parametrize("build", [cbom_1_6, cbom_1_7], ids=["1.6", "1.7"])
    def test_cbom(self, tmp_path: Path, build: Any) -> None:
        """8 cryptographic assets checked for cryptoProperties, the library for version and purl."""
        path = _write(tmp_path, "cbom.cdx.json", build())
        valid = validate_sbom(path)
        assert valid.outcome is Outcome.PASSED, valid.message
        verdict = components_have_versions_and_purls(path)
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert "8 cryptographic-asset components checked for cryptoProperties" in verdict.message
        assert "1 library component checked for version+purl" in verdict.message
        assert verdict.measured == 9
        assert verdict.evidence["rules"]["cryptographic-asset"] == ["cryptoProperties"]

    def test_saasbom_1_5(self, tmp_path: Path) -> None:
        """Services and no components: checked on its services, which are complete."""
        path = _write(tmp_path, "saasbom.cdx.json", saasbom_1_5())
        valid = validate_sbom(path)
        assert valid.outcome is Outcome.PASSED, valid.message
        verdict = components_complete(path)
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert "6 services checked for name+endpoints-or-reference and 8 data flows" in verdict.message
        assert verdict.measured == 6

    @pytest.mark.skipif(not (CYCLONEDX_FIXTURES / "valid" / "valid-saasbom-1.6.json").is_file(),
                        reason=f"CycloneDX fixtures not found under {CYCLONEDX_FIXTURES} "
                               "(set DRILLBOOK_FIXTURES)")
    def test_saasbom_1_6_fixture(self) -> None:
        """The specification's 1.6 SaaSBOM sample (the model cannot load it; the services are read anyway)."""
        document = read_sbom(CYCLONEDX_FIXTURES / "valid" / "valid-saasbom-1.6.json")
        assert document.reader == "document"
        verdict = components_complete(document)
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert verdict.measured == len(document.services) > 0

    def test_cbom_xml(self, tmp_path: Path) -> None:
        """An XML CBOM: cryptoProperties is read from the element; missing one is named by line."""
        xml = ('<?xml version="1.0"?>\n<bom xmlns="http://cyclonedx.org/schema/bom/1.6" version="1">\n'
               '<components>\n<component type="cryptographic-asset"><name>AES-256-GCM</name>\n'
               '<cryptoProperties><assetType>algorithm</assetType></cryptoProperties></component>\n'
               '<component type="cryptographic-asset"><name>SHA-384</name></component>\n'
               '</components>\n</bom>\n')
        path = tmp_path / "cbom.cdx.xml"
        path.write_text(xml)
        assert validate_sbom(path).outcome is Outcome.PASSED
        verdict = components_complete(path)
        assert verdict.outcome is Outcome.FAILED
        assert "SHA-384 [cryptographic-asset] (no cryptoProperties (component at line 6))" in verdict.message
        assert "AES-256-GCM" not in verdict.message


# ---------------------------------------------------------------------------- incomplete documents fail


class TestIncompleteDocumentsFail:
    """Each missing field is named with the component and the field's JSON path."""

    def test_cbom_without_crypto_properties(self, tmp_path: Path) -> None:
        document = cbom_1_6()
        del document["components"][6]["cryptoProperties"]
        verdict = components_complete(_write(tmp_path, "cbom.json", document))
        assert verdict.outcome is Outcome.FAILED
        assert "1 of 9 entries" in verdict.message
        assert "AES-256-GCM [cryptographic-asset] (no cryptoProperties at $.components[6].cryptoProperties)" \
            in verdict.message
        assert verdict.evidence["incomplete"][0]["at"] == "$.components[6]"

    def test_library_in_a_cbom_still_needs_a_purl(self, tmp_path: Path) -> None:
        document = cbom_1_6()
        del document["components"][8]["purl"]
        verdict = components_complete(_write(tmp_path, "cbom.json", document))
        assert verdict.outcome is Outcome.FAILED
        assert "openssl@3.0.13 [library] (no purl at $.components[8].purl)" in verdict.message

    def test_saasbom_service_without_endpoint_or_reference(self, tmp_path: Path) -> None:
        document = saasbom_1_5()
        nested = document["services"][0]["services"][3]
        del nested["endpoints"]
        verdict = components_complete(_write(tmp_path, "saasbom.json", document))
        assert verdict.outcome is Outcome.FAILED
        assert ("service com.example/Postgres@2022-1 (no endpoints or externalReferences at "
                "$.services[0].services[3].endpoints)") in verdict.message

    def test_saasbom_data_flow_without_classification(self, tmp_path: Path) -> None:
        """Not schema-valid either; completeness names the flow on its own."""
        document = saasbom_1_5()
        del document["services"][0]["data"][1]["classification"]
        verdict = components_complete(_write(tmp_path, "saasbom.json", document))
        assert verdict.outcome is Outcome.FAILED
        assert "data flow without flow or classification at $.services[0].data[1]" in verdict.message

    @pytest.mark.parametrize(("component", "missing"), [
        ({"type": "data", "name": "training set"}, "no data at $.components[0].data"),
        ({"type": "file", "name": "app.tar.gz"}, "no hashes at $.components[0].hashes"),
        ({"type": "firmware", "name": "bios", "version": "1"}, "no purl at $.components[0].purl"),
        ({"type": "device-driver", "name": "nvidia"}, "no version at $.components[0].version"),
    ])
    def test_each_kind_is_held_to_its_own_fields(self, tmp_path: Path, component: dict[str, Any],
                                                 missing: str) -> None:
        document = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "components": [component]}
        verdict = components_complete(_write(tmp_path, "s.json", document))
        assert verdict.outcome is Outcome.FAILED
        assert missing in verdict.message

    @pytest.mark.parametrize("component", [
        {"type": "data", "name": "training set", "data": [{"type": "dataset", "name": "faces"}]},
        {"type": "file", "name": "app.tar.gz", "hashes": [{"alg": "SHA-256", "content": "a" * 64}]},
        {"type": "machine-learning-model", "name": "resnet-50"},
        {"type": "platform", "name": "JVM"},
        {"type": "device", "name": "Raspberry Pi 5"},
    ])
    def test_kinds_without_a_purl_by_nature_pass(self, tmp_path: Path, component: dict[str, Any]) -> None:
        document = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "components": [component]}
        path = _write(tmp_path, "s.json", document)
        assert validate_sbom(path).outcome is Outcome.PASSED
        verdict = components_complete(path)
        assert verdict.outcome is Outcome.PASSED, verdict.message

    def test_nothing_at_all_fails(self, tmp_path: Path) -> None:
        document = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1}
        verdict = components_complete(_write(tmp_path, "s.json", document))
        assert verdict.outcome is Outcome.FAILED
        assert "lists no components and no services" in verdict.message


# ---------------------------------------------------------------------------- policy per type


class TestPolicyPerType:
    """The policy replaces a type's rule and can ask fields of every component."""

    def test_by_type_replaces_the_rule(self, tmp_path: Path) -> None:
        path = _write(tmp_path, "cbom.json", cbom_1_6())
        verdict = components_complete(path, by_type={"library": ("version", "purl", "licenses")})
        assert verdict.outcome is Outcome.FAILED
        assert "openssl@3.0.13 [library] (no licence at $.components[8].licenses)" in verdict.message
        assert "1 library component checked for version+purl+licenses" in verdict.message
        relaxed = components_complete(path, by_type={"cryptographic-asset": ("name",)})
        assert "8 cryptographic-asset components checked for name" in relaxed.message

    def test_required_of_every_component(self, tmp_path: Path) -> None:
        verdict = components_complete(_write(tmp_path, "cbom.json", cbom_1_6()), required=("bom-ref",))
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert "checked for cryptoProperties+bom-ref" in verdict.message

    @pytest.mark.parametrize(("table", "message"), [
        ({"gadget": ["name"]}, "unknown component type 'gadget'"),
        ({"library": ["colour"]}, "library: unknown field 'colour'"),
        ({"library": "purl"}, "library must be a list of field names"),
        (["library"], "must be a table of component type"),
    ])
    def test_bad_rules_are_refused(self, table: Any, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            parse_rules(table)

    def test_policy_file(self, tmp_path: Path) -> None:
        """The TOML table, read by ``verify sbom``; a mistake is a ConfigError naming the key and file."""
        from checks.errors import ConfigError
        from drillbook.verify_sbom import load_policy

        policy = tmp_path / "policy.toml"
        policy.write_text('[sbom.required_fields_by_type]\nlibrary = ["version", "purl", "licenses"]\n'
                          'cryptographic-asset = ["cryptoProperties", "bom-ref"]\n')
        assert load_policy(policy).required_by_type == {
            "library": ("version", "purl", "licenses"),
            "cryptographic-asset": ("cryptoProperties", "bom-ref")}
        policy.write_text('[sbom.required_fields_by_type]\nwidget = ["name"]\n')
        expected = r"sbom.required_fields_by_type: unknown component type 'widget'"
        with pytest.raises(ConfigError, match=expected) as info:
            load_policy(policy)
        assert str(policy) in str(info.value)


    def test_required_fields_is_what_a_package_carries(self, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
        """``[sbom] required_fields`` keeps its meaning for packages; other kinds keep their own rule."""
        from drillbook.cli import build_parser
        from drillbook.verify_sbom import verify_sbom

        document = cbom_1_6()
        del document["components"][8]["purl"]
        sbom = _write(tmp_path, "cbom.json", document)
        policy = tmp_path / "policy.toml"
        policy.write_text('[sbom]\nrequired_fields = ["name", "version"]\n')
        code = verify_sbom(build_parser().parse_args(["verify", "sbom", str(sbom), "--policy", str(policy)]))
        out = capsys.readouterr().out
        assert code == 0, out
        assert "1 library component checked for name+version" in out
        assert "8 cryptographic-asset components checked for cryptoProperties" in out


# ---------------------------------------------------------------------------- any component


_FIELD_VALUES = {
    "version": st.text(max_size=5), "purl": st.sampled_from(["pkg:pypi/a@1", "not a purl", "", "pkg:"]),
    "hashes": st.lists(st.fixed_dictionaries({"alg": st.sampled_from(["SHA-256", "MD5", 3]),
                                              "content": st.text(max_size=4)}), max_size=2),
    "cryptoProperties": st.one_of(st.none(), st.just({}), st.just({"assetType": "algorithm"})),
    "data": st.one_of(st.just([]), st.just([{"type": "dataset"}]), st.integers()),
    "licenses": st.lists(st.one_of(st.just({"license": {"id": "MIT"}}), st.just({"expression": "MIT OR ("}),
                                   st.integers()), max_size=2),
    "bom-ref": st.text(max_size=4), "name": st.one_of(st.text(max_size=6), st.none(), st.integers()),
}
_TYPES = st.one_of(st.sampled_from(COMPONENT_TYPES), st.none(), st.text(max_size=8), st.integers())


@st.composite
def _components(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    item: dict[str, Any] = {"name": "c"}
    kind = draw(_TYPES)
    if kind is not None:
        item["type"] = kind
    for key in draw(st.lists(st.sampled_from(sorted(_FIELD_VALUES)), max_size=5, unique=True)):
        item[key] = draw(_FIELD_VALUES[key])
    if depth < 2 and draw(st.booleans()):
        item["components"] = draw(st.lists(_components(depth + 1), max_size=2))
    return item


def _count(items: list[dict[str, Any]]) -> int:
    return sum(1 + _count(item.get("components", [])) for item in items)


class TestAnyComponent:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(components=st.lists(_components(), max_size=6), services=st.integers(0, 2))
    def test_never_a_crash_and_every_component_counted(self, components: list[dict[str, Any]],
                                                       services: int) -> None:
        """Whatever the types and fields: a verdict, and it checked exactly the input's components."""
        document = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
                    "components": copy.deepcopy(components),
                    "services": [{"name": f"s{i}"} for i in range(services)]}
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "s.json"
            path.write_text(json.dumps(document))
            verdict = components_complete(path)
        assert verdict.outcome in (Outcome.PASSED, Outcome.FAILED), verdict.message
        checked = sum(group["checked"] for group in verdict.evidence.get("by_type", {}).values())
        assert checked == _count(components)
        assert verdict.evidence.get("services", 0) == services


# ---------------------------------------------------------------------------- spec versions


def test_an_unsupported_spec_version_is_a_verdict(tmp_path: Path) -> None:
    """1.7 is supported by cyclonedx-python-lib 11; a later one fails naming the supported ones."""
    document = cbom_1_6()
    document["specVersion"] = "1.8"
    verdict = validate_sbom(_write(tmp_path, "future.json", document))
    assert verdict.outcome is Outcome.FAILED
    assert "unsupported CycloneDX spec version '1.8' at $.specVersion" in verdict.message
    assert "1.2, 1.3, 1.4, 1.5, 1.6, 1.7" in verdict.message


# ---------------------------------------------------------------------------- drillbook verify sbom


class TestVerifySbomEndToEnd:
    """As a user runs it: the CBOM and the SaaSBOM exit 0, an incomplete CBOM exits 1."""

    def test_cbom_saasbom_and_incomplete(self, tmp_path: Path) -> None:
        from tests.support.cli import drillbook

        cbom = _write(tmp_path, "cbom.cdx.json", cbom_1_6())
        saasbom = _write(tmp_path, "saasbom.cdx.json", saasbom_1_5())
        broken = cbom_1_6()
        del broken["components"][0]["cryptoProperties"]
        incomplete = _write(tmp_path, "incomplete.cdx.json", broken)
        for path in (cbom, saasbom):
            result = drillbook("verify", "sbom", str(path))
            assert result.returncode == 0, result.stdout + result.stderr
            assert "PASSED   sbom.components_complete" in result.stdout
        result = drillbook("verify", "sbom", str(incomplete))
        assert result.returncode == 1, result.stdout + result.stderr
        assert "PASSED   sbom.valid" in result.stdout
        assert "TLSv1.2 [cryptographic-asset] (no cryptoProperties at $.components[0].cryptoProperties)" \
            in result.stdout
