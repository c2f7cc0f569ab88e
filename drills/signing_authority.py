"""The sandbox signing authority: an offline, private "sigstore" for drillbook's own releases.

A Fulcio-like CA (P-384 root and intermediate) issues short-lived P-256 leaf
certificates carrying the sigstore identity extensions and an embedded SCT
signed by a CT-log key; a Rekor-v1-like log key signs the entry timestamp
(SET) and the checkpoint over an RFC 6962 Merkle tree. The authority writes a
``trusted_root.json`` that sigstore's unpatched ``Verifier`` accepts: bundles it
issues verify against that root and against no other one. The format details
(and why each one matters) are in ``docs/SANDBOX-SIGSTORE.md`` of the shared
folder; the comments below name only the traps.

Everything here is clearly labelled ``drillbook-local`` with ``.invalid`` URLs:
this root is trusted only where it is passed explicitly, never installed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.asn1 import encode_der
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
ORGANIZATION = "drillbook-local"
DEFAULT_ISSUER = "https://oidc.drillbook-local.invalid"
DEFAULT_IDENTITY = "release-bot@drillbook-local.invalid"

_OID_ISSUER = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_OID_GH_TRIGGER = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.2")
_OID_GH_SHA = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.3")
_OID_GH_NAME = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.4")
_OID_GH_REPOSITORY = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.5")
_OID_GH_REF = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.6")
_OID_SCT_LIST = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")

# A fixed start in the past: a root whose validity starts "now" vanishes on a
# verifying machine whose clock is a little behind (MetadataError, not a failure).
_ROOT_START = datetime(2020, 1, 1, tzinfo=UTC)
_CA_NOT_AFTER = datetime(2050, 1, 1, tzinfo=UTC)
_LEAF_LIFETIME = timedelta(minutes=10)
# Leaves in front of ours, so that inclusion proofs are never trivial.
_PADDING_LEAVES = 6


@dataclass(frozen=True)
class GitHubClaims:
    """The GitHub-workflow claims a leaf certificate carries (legacy Fulcio extensions)."""

    repository: str
    ref: str
    trigger: str = "push"
    sha: str = "0" * 40
    workflow: str = "release"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below n (RFC 6962 split point)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash of already-hashed leaves."""
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def inclusion_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 ``PATH(m, D[n])``, bottom-up."""
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_path(index, leaves[:k]), merkle_root(leaves[k:])]
    return [*inclusion_path(index - k, leaves[k:]), merkle_root(leaves[:k])]


def _pem_of(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class SigningAuthority:
    """A private CA + CT log + transparency log; issues sigstore v0.3 bundles offline."""

    name: str
    root_key: ec.EllipticCurvePrivateKey
    intermediate_key: ec.EllipticCurvePrivateKey
    ct_key: ec.EllipticCurvePrivateKey
    log_key: ec.EllipticCurvePrivateKey
    root_cert: x509.Certificate
    intermediate_cert: x509.Certificate
    log_bodies: list[bytes] = field(default_factory=list)
    # One long-lived log would make each new proof O(n); the sandbox issues a handful.
    _leaf_hashes: list[bytes] = field(default_factory=list)

    # ---- creation and persistence -------------------------------------------------

    @classmethod
    def create(cls, name: str = "sandbox") -> SigningAuthority:
        """A fresh authority with new keys (about 1 ms)."""
        root_key = ec.generate_private_key(ec.SECP384R1())
        intermediate_key = ec.generate_private_key(ec.SECP384R1())
        ct_key = ec.generate_private_key(ec.SECP256R1())
        log_key = ec.generate_private_key(ec.SECP256R1())
        return cls._from_keys(name, root_key, intermediate_key, ct_key, log_key)

    @classmethod
    def _from_keys(
        cls,
        name: str,
        root_key: ec.EllipticCurvePrivateKey,
        intermediate_key: ec.EllipticCurvePrivateKey,
        ct_key: ec.EllipticCurvePrivateKey,
        log_key: ec.EllipticCurvePrivateKey,
    ) -> SigningAuthority:
        root_name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{ORGANIZATION} {name} root"),
        ])
        inter_name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{ORGANIZATION} {name} intermediate"),
        ])
        root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
        inter_ski = x509.SubjectKeyIdentifier.from_public_key(intermediate_key.public_key())
        ca_usage = x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False,
        )
        # Serials derived from the key so that a reloaded authority rebuilds identical CA certs.
        root_cert = (
            x509.CertificateBuilder()
            .subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key())
            .serial_number(int.from_bytes(hashlib.sha256(_spki(root_key.public_key())).digest()[:16]) >> 1)
            .not_valid_before(_ROOT_START).not_valid_after(_CA_NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(ca_usage, critical=True)
            .add_extension(root_ski, critical=False)
            .sign(root_key, hashes.SHA384(), ecdsa_deterministic=True)
        )
        intermediate_cert = (
            x509.CertificateBuilder()
            .subject_name(inter_name).issuer_name(root_name)
            .public_key(intermediate_key.public_key())
            .serial_number(
                int.from_bytes(hashlib.sha256(_spki(intermediate_key.public_key())).digest()[:16]) >> 1
            )
            .not_valid_before(_ROOT_START).not_valid_after(_CA_NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(ca_usage, critical=True)
            .add_extension(inter_ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .sign(root_key, hashes.SHA384(), ecdsa_deterministic=True)
        )
        return cls(name, root_key, intermediate_key, ct_key, log_key, root_cert, intermediate_cert)

    def save_keys(self, directory: Path) -> Path:
        """Persist the four private keys (PEM, mode 0600) so the same root can be reloaded."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "authority-keys.json"
        data = {
            "name": self.name,
            "root": _pem_of(self.root_key).decode(),
            "intermediate": _pem_of(self.intermediate_key).decode(),
            "ct": _pem_of(self.ct_key).decode(),
            "log": _pem_of(self.log_key).decode(),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out)
        return path

    @classmethod
    def load_keys(cls, path: Path) -> SigningAuthority:
        """An authority from :meth:`save_keys` output (same trusted root)."""
        data = json.loads(path.read_text(encoding="utf-8"))

        def key(name: str) -> ec.EllipticCurvePrivateKey:
            loaded = serialization.load_pem_private_key(data[name].encode(), password=None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{path}: {name} key is not an EC key")
            return loaded

        return cls._from_keys(str(data["name"]), key("root"), key("intermediate"), key("ct"), key("log"))

    # ---- the trusted root ---------------------------------------------------------

    @property
    def log_id(self) -> bytes:
        return hashlib.sha256(_spki(self.log_key.public_key())).digest()

    @property
    def ct_log_id(self) -> bytes:
        return hashlib.sha256(_spki(self.ct_key.public_key())).digest()

    def trusted_root(self) -> dict[str, Any]:
        """The trusted root document (sigstore ``trustedroot v0.1``) for this authority."""
        start = _ROOT_START.strftime("%Y-%m-%dT%H:%M:%SZ")
        base = f"https://{self.name}.{ORGANIZATION}.invalid"

        def log(key: ec.EllipticCurvePrivateKey, url: str) -> dict[str, Any]:
            spki = _spki(key.public_key())
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": _b64(spki), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                              "validFor": {"start": start}},
                "logId": {"keyId": _b64(hashlib.sha256(spki).digest())},
            }

        return {
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [log(self.log_key, f"{base}/rekor")],
            "certificateAuthorities": [{
                "subject": {"organization": ORGANIZATION, "commonName": f"{ORGANIZATION} {self.name}"},
                "uri": f"{base}/fulcio",
                "certChain": {"certificates": [
                    {"rawBytes": _b64(c.public_bytes(serialization.Encoding.DER))}
                    for c in (self.intermediate_cert, self.root_cert)
                ]},
                "validFor": {"start": start},
            }],
            "ctlogs": [log(self.ct_key, f"{base}/ct")],
            "timestampAuthorities": [],
        }

    def write_trusted_root(self, path: Path) -> Path:
        """Write :meth:`trusted_root` as JSON; returns the path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.trusted_root(), indent=2) + "\n", encoding="utf-8")
        return path

    # ---- issuing ------------------------------------------------------------------

    def _leaf(
        self, key: ec.EllipticCurvePrivateKey, identity: str, issuer: str, now: datetime,
        github: GitHubClaims | None,
    ) -> x509.Certificate:
        serial = x509.random_serial_number()
        san: x509.GeneralName = (
            x509.UniformResourceIdentifier(identity) if "://" in identity else x509.RFC822Name(identity)
        )
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False),
            (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(self.intermediate_key.public_key()), False),
            # Empty subject, so the SAN must be critical (the WebPKI EE profile enforces both ways).
            (x509.SubjectAlternativeName([san]), True),
            # .1.1 holds the raw URL bytes (not DER) and is the one policy.Identity reads.
            (x509.UnrecognizedExtension(_OID_ISSUER, issuer.encode()), False),
            (x509.UnrecognizedExtension(_OID_ISSUER_V2, encode_der(issuer)), False),
        ]
        if github is not None:
            for oid, value in ((_OID_GH_TRIGGER, github.trigger), (_OID_GH_SHA, github.sha),
                               (_OID_GH_NAME, github.workflow), (_OID_GH_REPOSITORY, github.repository),
                               (_OID_GH_REF, github.ref)):
                extensions.append((x509.UnrecognizedExtension(oid, value.encode()), False))

        def build(extra: list[tuple[x509.ExtensionType, bool]]) -> x509.Certificate:
            builder = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([]))
                .issuer_name(self.intermediate_cert.subject)
                .public_key(key.public_key())
                .serial_number(serial)
                .not_valid_before(now)
                .not_valid_after(now + _LEAF_LIFETIME)
            )
            for ext, critical in extensions + extra:
                builder = builder.add_extension(ext, critical=critical)
            return builder.sign(self.intermediate_key, hashes.SHA384())

        precert_tbs = build([]).tbs_certificate_bytes
        sct_ms = int(now.timestamp()) * 1000
        issuer_key_hash = hashlib.sha256(_spki(self.intermediate_key.public_key())).digest()
        signed = (
            struct.pack(">BBQH", 0, 0, sct_ms, 1) + issuer_key_hash
            + len(precert_tbs).to_bytes(3, "big") + precert_tbs + struct.pack(">H", 0)
        )
        sig = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (
            struct.pack(">B", 0) + self.ct_log_id + struct.pack(">QH", sct_ms, 0)
            + struct.pack(">BBH", 4, 3, len(sig)) + sig
        )
        sct_list = struct.pack(">HH", len(sct) + 2, len(sct)) + sct
        octet = encode_der(sct_list)
        leaf = build([(x509.UnrecognizedExtension(_OID_SCT_LIST, octet), False)])
        if leaf.tbs_precertificate_bytes != precert_tbs:  # pragma: no cover - a recipe invariant
            raise RuntimeError("precertificate TBS differs from the signed SCT input")
        return leaf

    def _log(self, body: bytes, now: datetime) -> dict[str, Any]:
        """Append ``body`` to the log; the tlog entry (SET, inclusion proof, checkpoint)."""
        if not self._leaf_hashes:
            for i in range(_PADDING_LEAVES):
                pad = f"drillbook-local padding {i}".encode()
                self.log_bodies.append(pad)
                self._leaf_hashes.append(_leaf_hash(pad))
        self.log_bodies.append(body)
        self._leaf_hashes.append(_leaf_hash(body))
        index = len(self._leaf_hashes) - 1
        size = len(self._leaf_hashes)
        root = merkle_root(self._leaf_hashes)
        path = inclusion_path(index, self._leaf_hashes)
        integrated = int(now.timestamp()) + 1
        log_id = self.log_id
        # The SET signs numbers, while the bundle carries the same values as strings.
        set_payload = rfc8785.dumps({
            "body": _b64(body), "integratedTime": integrated,
            "logID": log_id.hex(), "logIndex": index,
        })
        set_sig = self.log_key.sign(set_payload, ec.ECDSA(hashes.SHA256()))
        note = f"{self.name}.{ORGANIZATION}.invalid\n{size}\n{_b64(root)}\n"
        note_sig = self.log_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        envelope = f"{note}\n\u2014 {self.name}.{ORGANIZATION} {_b64(log_id[:4] + note_sig)}\n"
        return {
            "logIndex": str(index),
            "logId": {"keyId": _b64(log_id)},
            "integratedTime": str(integrated),
            "inclusionPromise": {"signedEntryTimestamp": _b64(set_sig)},
            "inclusionProof": {
                "logIndex": str(index), "rootHash": _b64(root), "treeSize": str(size),
                "hashes": [_b64(h) for h in path], "checkpoint": {"envelope": envelope},
            },
            "canonicalizedBody": _b64(body),
        }

    def _material(self, leaf: x509.Certificate, entry: dict[str, Any]) -> dict[str, Any]:
        return {
            "certificate": {"rawBytes": _b64(leaf.public_bytes(serialization.Encoding.DER))},
            "tlogEntries": [entry],
            "timestampVerificationData": {},
        }

    def sign(
        self, data: bytes, *, identity: str = DEFAULT_IDENTITY, issuer: str = DEFAULT_ISSUER,
        now: datetime | None = None, github: GitHubClaims | None = None,
    ) -> dict[str, Any]:
        """A sigstore v0.3 bundle (as a dict) for ``data``: message signature, hashedrekord 0.0.1."""
        now = (now or datetime.now(UTC)).replace(microsecond=0)
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = self._leaf(key, identity, issuer, now, github)
        digest = hashlib.sha256(data).digest()
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
        cert_pem = leaf.public_bytes(serialization.Encoding.PEM)
        body = rfc8785.dumps({
            "apiVersion": "0.0.1", "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": digest.hex()}},
                "signature": {"content": _b64(signature), "publicKey": {"content": _b64(cert_pem)}},
            },
        })
        entry = self._log(body, now)
        entry["kindVersion"] = {"kind": "hashedrekord", "version": "0.0.1"}
        return {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": self._material(leaf, entry),
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": _b64(digest)},
                "signature": _b64(signature),
            },
        }

    def attest(
        self, subjects: dict[str, bytes], *, predicate_type: str = "https://slsa.dev/provenance/v1",
        predicate: dict[str, Any] | None = None, **kw: Any,
    ) -> dict[str, Any]:
        """A DSSE bundle holding an in-toto v1 statement over ``subjects`` (name -> bytes)."""
        statement = {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": name, "digest": {"sha256": hashlib.sha256(data).hexdigest()}}
                        for name, data in sorted(subjects.items())],
            "predicateType": predicate_type,
            "predicate": predicate or {"buildDefinition": {"buildType": "drillbook-local"}},
        }
        return self.envelope(json.dumps(statement, sort_keys=True).encode(), **kw)

    def envelope(
        self, payload: bytes, *, payload_type: str = INTOTO_PAYLOAD_TYPE, identity: str = DEFAULT_IDENTITY,
        issuer: str = DEFAULT_ISSUER, now: datetime | None = None, github: GitHubClaims | None = None,
    ) -> dict[str, Any]:
        """A DSSE bundle signing ``payload`` as ``payload_type``, whatever the payload holds.

        Tests use it for genuinely signed payloads that are not in-toto statements, which no
        tampering of a real bundle can produce (the signature covers both the type and the bytes).
        """
        now = (now or datetime.now(UTC)).replace(microsecond=0)
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = self._leaf(key, identity, issuer, now, github)
        pae = b"DSSEv1 %d %s %d %s" % (len(payload_type.encode()), payload_type.encode(),
                                        len(payload), payload)
        signature = key.sign(pae, ec.ECDSA(hashes.SHA256()))
        envelope: dict[str, Any] = {"payload": _b64(payload), "payloadType": payload_type,
                                    "signatures": [{"sig": _b64(signature)}]}
        cert_pem = leaf.public_bytes(serialization.Encoding.PEM)
        body = rfc8785.dumps({
            "apiVersion": "0.0.1", "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256",
                                 "value": hashlib.sha256(rfc8785.dumps(envelope)).hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                "signatures": [{"signature": _b64(signature), "verifier": _b64(cert_pem)}],
            },
        })
        entry = self._log(body, now)
        entry["kindVersion"] = {"kind": "dsse", "version": "0.0.1"}
        return {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": self._material(leaf, entry),
            "dsseEnvelope": envelope,
        }

    def sign_file(self, artifact: Path, *, suffix: str = ".sigstore.json", **kw: Any) -> Path:
        """Sign a file and write its bundle next to it (``<file>.sigstore.json``)."""
        bundle = self.sign(artifact.read_bytes(), **kw)
        out = artifact.with_name(artifact.name + suffix)
        out.write_text(json.dumps(bundle, indent=2) + "\n", encoding="utf-8")
        return out


def random_authority_name() -> str:
    """A distinct name for a throwaway authority (tests, "another instance")."""
    return f"other-{secrets.token_hex(3)}"
