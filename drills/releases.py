"""Release directories: what a supply-chain scenario verifies, and the sandbox's own release.

A release directory holds artifacts (tarballs, Helm chart ``.tgz``, wheels, an
``images.txt`` of image digests), a sigstore bundle next to each
(``<file>.sigstore.json`` or ``.sigstore``), optional in-toto attestations
(``*.intoto.sigstore.json``) and a CycloneDX SBOM. It is a local folder or an
S3 prefix; an S3 release is downloaded into a private temporary folder first,
read-only on the subject.

:func:`build_sandbox_release` makes such a directory offline for the sandbox:
deterministic artifacts, each signed by a fresh :class:`SigningAuthority`, an
SBOM generated with cyclonedx-python-lib from the artifacts and the running
environment, a provenance attestation, and a small OSV advisory mirror. With
``canary=True`` one artifact is altered after signing, so the gate fails for
the right reason.
"""

from __future__ import annotations

import base64
import fnmatch
import gzip
import hashlib
import importlib.metadata
import io
import json
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from checks.errors import DrillbookError, StoreUnreachable
from drills.signing_authority import DEFAULT_IDENTITY, DEFAULT_ISSUER, SigningAuthority
from drills.targets import StoreSpec

VERSION = "0.1.0"
SBOM_NAMES = ("sbom.cdx.json", "bom.json", "sbom.json", "sbom.cdx.xml", "bom.xml", "sbom.xml",
              "sbom.spdx.json", "sbom.spdx", "sbom.spdx.yaml", "sbom.spdx.rdf.xml")
# Any other SBOM of the release, by suffix: CycloneDX, then SPDX's four serializations.
SBOM_GLOBS = ("*.cdx.json", "*.cdx.xml", "*.spdx.json", "*.spdx", "*.spdx.yaml", "*.spdx.yml",
              "*.spdx.rdf.xml", "*.spdx.rdf")
ATTESTATION_GLOB = "*.intoto.sigstore.json"
# Not artifacts: signatures, attestations, SBOMs and checksum sidecars (as checks/sbom ignores them).
_NOT_ARTIFACTS = (
    ".*", "*.sigstore.json", "*.sigstore", "*.sig", "*.pem", "*.crt", "*.cert", "*.sha256", "*.sha512",
    "*SUMS", "*SUMS.*", "*.intoto.jsonl", *SBOM_GLOBS, *SBOM_NAMES,
)
# Fixed timestamps keep the sandbox artifacts byte-identical from run to run.
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_MTIME = int(_EPOCH.timestamp())


class ReleaseError(DrillbookError):
    default_hint = "point the release target at a folder or s3:// prefix holding the artifacts and bundles"


@dataclass(frozen=True)
class Release:
    """A release directory on local disk, and how to verify it."""

    name: str
    directory: Path
    source: str
    trusted_root: Path | None = None  # None: the scenario names one (default: sigstore production)
    identity: str | None = None  # the signer the sandbox used; real releases state theirs in the feature
    issuer: str | None = None
    advisories: Path | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def artifacts(self) -> list[Path]:
        """Every artifact file (recursively), signatures/SBOM/attestations excluded, sorted."""
        found: list[Path] = []
        for path in sorted(self.directory.rglob("*")):
            relative = path.relative_to(self.directory).as_posix()
            if any(part.startswith(".") for part in relative.split("/")[:-1]) or not path.is_file():
                continue
            if any(fnmatch.fnmatchcase(path.name, p) for p in _NOT_ARTIFACTS):
                continue
            found.append(path)
        return found

    def sbom(self) -> Path | None:
        """The release's SBOM: first of :data:`SBOM_NAMES`, else the first match of :data:`SBOM_GLOBS`."""
        for name in SBOM_NAMES:
            if (self.directory / name).is_file():
                return self.directory / name
        for pattern in SBOM_GLOBS:
            found = sorted(p for p in self.directory.glob(pattern) if p.is_file())
            if found:
                return found[0]
        return None

    def attestations(self) -> list[Path]:
        """In-toto attestation bundles (``*.intoto.sigstore.json``)."""
        return sorted(self.directory.rglob(ATTESTATION_GLOB))


def open_release(spec: StoreSpec, workdir: Path) -> Release:
    """A release from a configured target: a local folder as is, an S3 prefix downloaded to ``workdir``."""
    if not spec.is_s3:
        directory = spec.path
        if not directory.is_dir():
            raise ReleaseError(f"release {spec.name}: {directory} does not exist or is not a folder",
                               target=spec.name)
        return Release(spec.name, directory, str(directory))
    from drills.stores import open_store

    store = open_store(spec)
    objects = store.list()
    target = workdir / spec.name
    target.mkdir(parents=True, exist_ok=True)
    prefix = spec.prefix
    for obj in objects:
        relative = obj.key[len(prefix):].lstrip("/") if obj.key.startswith(prefix) else obj.key
        # A key with ".." or an absolute path must not escape the download folder.
        destination = (target / relative).resolve()
        if not relative or not destination.is_relative_to(target.resolve()):
            raise ReleaseError(f"release {spec.name}: object key {obj.key!r} escapes the release prefix",
                               target=spec.name)
        destination.parent.mkdir(parents=True, exist_ok=True)
        stream = store.open(obj)
        try:
            with destination.open("wb") as out:
                while chunk := stream.read(1 << 20):
                    out.write(chunk)
        except OSError as exc:
            raise StoreUnreachable(f"release {spec.name}: cannot download {obj.key}: {exc}") from exc
        finally:
            stream.close()
    return Release(spec.name, target, store.describe())


# ---- the sandbox release -----------------------------------------------------------------------


def _tar_gz(members: dict[str, bytes]) -> bytes:
    """A byte-reproducible .tar.gz: sorted members, fixed owner and mtime, no gzip timestamp."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            info.mtime = _MTIME
            info.mode = 0o644
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(members[name]))
    return gzip.compress(raw.getvalue(), mtime=0)


def _wheel(name: str, version: str, modules: dict[str, bytes]) -> bytes:
    """A real (minimal) wheel: METADATA, WHEEL and a RECORD with each file's hash."""
    dist = f"{name}-{version}.dist-info"
    files = dict(modules)
    files[f"{dist}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 "License-Expression: Apache-2.0\n").encode()
    files[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: drillbook-sandbox\nRoot-Is-Purelib: true\n" \
                             b"Tag: py3-none-any\n"
    record = []
    for path, data in sorted(files.items()):
        digest = hashlib.sha256(data).digest()
        b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{path},sha256={b64},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[path])
    return out.getvalue()


def _sandbox_artifacts() -> dict[str, bytes]:
    """The release's artifacts by relative path: sdist, wheel, Helm chart, images.txt."""
    module = b'"""drillbook sandbox release."""\n__version__ = "' + VERSION.encode() + b'"\n'
    sdist = _tar_gz({
        f"drillbook-sandbox-{VERSION}/PKG-INFO": f"Metadata-Version: 2.1\nName: drillbook-sandbox\n"
                                                 f"Version: {VERSION}\n".encode(),
        f"drillbook-sandbox-{VERSION}/drillbook_sandbox/__init__.py": module,
        f"drillbook-sandbox-{VERSION}/pyproject.toml": b'[project]\nname = "drillbook-sandbox"\n'
                                                       b'version = "' + VERSION.encode() + b'"\n',
    })
    wheel = _wheel("drillbook_sandbox", VERSION, {"drillbook_sandbox/__init__.py": module})
    chart = _tar_gz({
        "drillbook-sandbox/Chart.yaml": f"apiVersion: v2\nname: drillbook-sandbox\nversion: {VERSION}\n"
                                        f"appVersion: \"{VERSION}\"\n".encode(),
        "drillbook-sandbox/values.yaml": b"image:\n  repository: registry.drillbook-local.invalid/app\n",
        "drillbook-sandbox/templates/deployment.yaml": b"apiVersion: apps/v1\nkind: Deployment\n"
                                                       b"metadata:\n  name: drillbook-sandbox\n",
    })
    # An image is known by its manifest digest; here a fixed manifest stands for the built image.
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"digest": "sha256:" + hashlib.sha256(module).hexdigest()}},
                          sort_keys=True).encode()
    image_digest = hashlib.sha256(manifest).hexdigest()
    images = (f"# images of drillbook-sandbox {VERSION}\n"
              f"registry.drillbook-local.invalid/app:{VERSION}@sha256:{image_digest}\n").encode()
    return {
        f"drillbook-sandbox-{VERSION}.tar.gz": sdist,
        f"drillbook_sandbox-{VERSION}-py3-none-any.whl": wheel,
        f"charts/drillbook-sandbox-{VERSION}.tgz": chart,
        "images.txt": images,
    }


def _environment_packages() -> list[tuple[str, str]]:
    """(name, version) of every distribution installed in the running environment."""
    seen: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and dist.version:
            seen.setdefault(name.lower().replace("_", "-"), dist.version)
    return sorted(seen.items())


def write_sbom(path: Path, artifacts: dict[str, bytes], *, packages: Iterable[tuple[str, str]]) -> Path:
    """A CycloneDX 1.6 JSON SBOM (cyclonedx-python-lib) covering ``artifacts`` by SHA-256."""
    from cyclonedx.model import HashAlgorithm, HashType
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.license import LicenseExpression
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    bom = Bom()
    bom.metadata.timestamp = _EPOCH
    bom.metadata.component = Component(
        name="drillbook-sandbox", version=VERSION, type=ComponentType.APPLICATION,
        purl=PackageURL("generic", name="drillbook-sandbox", version=VERSION), bom_ref="release",
    )
    for relative, data in sorted(artifacts.items()):
        if relative == "images.txt":
            for line in data.decode().splitlines():
                if "@sha256:" not in line or line.startswith("#"):
                    continue
                reference, digest = line.rsplit("@sha256:", 1)
                repository = reference.rsplit(":", 1)[0]
                bom.components.add(Component(
                    name=repository.rsplit("/", 1)[-1], version=f"sha256:{digest}",
                    type=ComponentType.CONTAINER, bom_ref=f"image:{repository}",
                    purl=PackageURL("oci", name=repository.rsplit("/", 1)[-1], version=f"sha256:{digest}",
                                    qualifiers={"repository_url": repository}),
                    hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest)],
                    licenses=[LicenseExpression("Apache-2.0")],
                ))
            continue
        name = relative.rsplit("/", 1)[-1]
        kind = "helm" if relative.startswith("charts/") else "pypi"
        bom.components.add(Component(
            name=name, version=VERSION, type=ComponentType.FILE, bom_ref=f"artifact:{relative}",
            purl=PackageURL("generic", name=name, version=VERSION, qualifiers={"kind": kind}),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=hashlib.sha256(data).hexdigest())],
            licenses=[LicenseExpression("Apache-2.0")],
        ))
    for name, version in packages:
        bom.components.add(Component(
            name=name, version=version, type=ComponentType.LIBRARY, bom_ref=f"pypi:{name}@{version}",
            purl=PackageURL("pypi", name=name, version=version),
        ))
    # The release depends on everything it lists (a complete dependency graph for the library).
    bom.register_dependency(bom.metadata.component, list(bom.components))
    path.write_text(JsonV1Dot6(bom).output_as_string(indent=2), encoding="utf-8")
    return path


def _advisories(directory: Path) -> Path:
    """A tiny offline OSV mirror: one real-format advisory the sandbox environment is not affected by."""
    directory.mkdir(parents=True, exist_ok=True)
    advisory = {
        "schema_version": "1.6.0",
        "id": "DRILLBOOK-SANDBOX-0001",
        "modified": "2026-01-01T00:00:00Z",
        "summary": "sandbox advisory: jinja2 before 2.0 (the environment's jinja2 is newer)",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [{"package": {"ecosystem": "PyPI", "name": "jinja2"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]}],
    }
    (directory / "DRILLBOOK-SANDBOX-0001.json").write_text(json.dumps(advisory, indent=2), encoding="utf-8")
    return directory


def build_sandbox_release(
    base: Path, *, canary: bool = False, authority: SigningAuthority | None = None,
    identity: str = DEFAULT_IDENTITY, issuer: str = DEFAULT_ISSUER, now: datetime | None = None,
) -> Release:
    """Build, sign and describe the sandbox release under ``base`` (``release/``, ``trust/``, ``osv/``)."""
    authority = authority or SigningAuthority.create("sandbox")
    directory = base / "release"
    directory.mkdir(parents=True, exist_ok=True)
    trusted_root = authority.write_trusted_root(base / "trust" / "trusted_root.json")
    artifacts = _sandbox_artifacts()
    for relative, data in artifacts.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        authority.sign_file(path, identity=identity, issuer=issuer, now=now)
    sbom = write_sbom(directory / "sbom.cdx.json", artifacts, packages=_environment_packages())
    authority.sign_file(sbom, identity=identity, issuer=issuer, now=now)
    attestation = authority.attest(
        dict(artifacts), identity=identity, issuer=issuer, now=now,
        predicate={"buildDefinition": {"buildType": "https://drillbook.invalid/sandbox-release/v1",
                                       "externalParameters": {"version": VERSION}},
                   "runDetails": {"builder": {"id": "drillbook-sandbox"}}},
    )
    (directory / "provenance.intoto.sigstore.json").write_text(json.dumps(attestation, indent=2) + "\n",
                                                               encoding="utf-8")
    notes: dict[str, str] = {}
    if canary:
        # After signing: the bundle, SBOM hash and provenance all describe the original bytes.
        victim = directory / f"charts/drillbook-sandbox-{VERSION}.tgz"
        altered = bytearray(victim.read_bytes())
        altered[len(altered) // 2] ^= 0x01
        victim.write_bytes(bytes(altered))
        notes["canary"] = f"{victim.relative_to(directory)} altered after signing"
    return Release("release", directory, str(directory), trusted_root=trusted_root, identity=identity,
                   issuer=issuer, advisories=_advisories(base / "osv"), notes=notes)
