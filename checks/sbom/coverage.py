"""``sbom.covers_artifacts``: every file of a release (and every image digest) is a component hash."""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checks.verdict import Verdict

from .base import SbomDocument, listing
from .loading import loaded

_CHUNK = 1 << 20

# Files of a release directory that are not artifacts the SBOM must describe: signatures,
# certificates, checksum sidecars, the SBOMs themselves. Overridable per call.
DEFAULT_IGNORED: tuple[str, ...] = (
    ".*", "*.sigstore.json", "*.sigstore", "*.sig", "*.pem", "*.crt", "*.cert",
    "*.sha256", "*.sha512", "*SUMS", "*SUMS.*", "*.intoto.jsonl",
    "*.cdx.json", "*.cdx.xml", "bom.json", "bom.xml", "sbom.json", "sbom.xml",
    "*.spdx.json", "*.spdx", "*.spdx.yaml", "*.spdx.yml", "*.spdx.rdf.xml", "*.spdx.rdf",
)
IMAGES_LIST = "images.txt"

# Digests that prove an artifact is the one described; MD5 and SHA-1 do not.
_STRONG_HASHES = {
    "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512",
    "SHA3-256": "sha3_256", "SHA3-384": "sha3_384", "SHA3-512": "sha3_512",
}


def _ignored(relative: str, patterns: Sequence[str]) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(relative, p) for p in patterns)


def _release_files(directory: Path, ignore: Sequence[str], sbom_path: Path) -> Iterator[tuple[str, Path]]:
    own = sbom_path.resolve()
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).as_posix()
        if any(part.startswith(".") for part in relative.split("/")[:-1]):
            continue  # hidden folders (.git, .cache) hold no release artifacts
        if not path.is_file() or path.resolve() == own or _ignored(relative, ignore):
            continue
        yield relative, path


def _digests(path: Path, algorithms: Iterable[str]) -> dict[str, str]:
    hashers = {alg: hashlib.new(_STRONG_HASHES[alg]) for alg in algorithms}
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {alg: hasher.hexdigest() for alg, hasher in hashers.items()}


_IMAGE_DIGEST = re.compile(r"@sha256:(?P<hex>[0-9a-fA-F]{64})\s*$")


def parse_images_list(text: str, name: str = IMAGES_LIST) -> tuple[list[tuple[str, str]], list[str]]:
    """(reference, sha256 hex) per image line of an ``images.txt``, and the lines without a digest.

    One image per line (``registry/name:tag@sha256:<hex>``); ``#`` starts a comment.
    """
    images: list[tuple[str, str]] = []
    undigested: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        match = _IMAGE_DIGEST.search(line)
        if match is None:
            undigested.append(f"{name} line {number}: {line[:120]}")
        else:
            images.append((line, match.group("hex").lower()))
    return images, undigested


@dataclass
class _Release:
    """What a release holds: file digests by algorithm, image digests, and what could not be read."""

    files: dict[str, dict[str, str]] = field(default_factory=dict)
    images: list[tuple[str, str]] = field(default_factory=list)
    undigested: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def _known_hashes(document: SbomDocument) -> tuple[dict[str, set[str]], str]:
    """Strong component hashes by algorithm, and the versions/purls text image digests may appear in."""
    described = list(document.components) + ([document.subject] if document.subject else [])
    known: dict[str, set[str]] = {}
    for component in described:
        for alg, content in component.hashes:
            if alg in _STRONG_HASHES:
                known.setdefault(alg, set()).add(content)
    references = " ".join(f"{c.version or ''} {c.purl or ''}" for c in described).lower()
    return known, references.replace("%3a", ":")


# An image digest is covered when "sha256:<its hex>" occurs in the versions/purls text. Searching
# that text (all components joined) once per images.txt line costs lines x document; the hex
# strings that follow "sha256:" in it are the only ones such a search can find (64 hex characters
# cannot contain "sha256:", and the joining spaces end every run), so they are collected once.
_REFERENCED_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _referenced_digests(references: str) -> set[str]:
    return {match.group(1) for match in _REFERENCED_DIGEST.finditer(references)}


def _coverage(check_id: str, document: SbomDocument, release: _Release, source: str,
              evidence: dict[str, Any]) -> Verdict:
    known, references = _known_hashes(document)
    referenced = _referenced_digests(references)
    artifacts: dict[str, str] = {}
    missing: list[str] = []
    for name, digests in release.files.items():
        artifacts[name] = digests.get("SHA-256", "")
        if not any(hex_ in known.get(alg, ()) for alg, hex_ in digests.items()):
            missing.append(name)
    for reference, digest in release.images:
        artifacts[f"image {reference}"] = digest
        in_references = (digest in referenced if _HEX64.fullmatch(digest)
                         else f"sha256:{digest}" in references)  # a caller's odd digest: as before
        if digest not in known.get("SHA-256", set()) and not in_references:
            missing.append(f"image {reference}")
    total = len(artifacts) + len(release.undigested)
    evidence |= {"artifacts": artifacts, "missing": missing, "unreadable": release.unreadable,
                 "images_without_digest": release.undigested}
    expected = "every artifact's digest is a component hash"
    if missing or release.undigested:
        problems = missing + release.undigested
        return Verdict.failed(
            check_id,
            f"{document.path.name} does not cover {len(problems)} of {total} artifacts in {source}: "
            f"{listing(problems)}",
            measured=total - len(problems), expected=expected, evidence=evidence)
    if release.unreadable:
        return Verdict.error(check_id, f"cannot read {len(release.unreadable)} artifacts in {source}: "
                             f"{listing(release.unreadable)}", evidence=evidence)
    if total == 0:
        return Verdict.failed(check_id, f"no artifacts in {source}: an empty release proves nothing",
                              measured=0, expected=expected, evidence=evidence)
    return Verdict.passed(check_id, f"{document.path.name} covers all {total} artifacts in {source}",
                          measured=total, expected=expected, evidence=evidence)


def sbom_covers_artifacts(sbom: Path | SbomDocument, artifacts_dir: Path, *,
                          ignore: Sequence[str] = DEFAULT_IGNORED) -> Verdict:
    """``sbom.covers_artifacts``: every release file's digest appears as a component hash.

    Files are walked recursively; signatures, checksums and SBOMs (``ignore``
    globs, :data:`DEFAULT_IGNORED`) are not artifacts. A line of ``images.txt``
    (``name@sha256:<hex>``) is covered when its digest is a component's SHA-256
    or appears in a component's version or purl (``pkg:oci/…@sha256%3A…``).
    Only strong digests count (SHA-2/SHA-3; MD5 and SHA-1 do not). An empty
    release directory fails; a missing or unreadable one is an error.
    For a release that is not a local folder (an S3 prefix), see :func:`sbom_covers_digests`.
    """
    check_id = "sbom.covers_artifacts"
    document = loaded(check_id, sbom)
    if isinstance(document, Verdict):
        return document
    evidence: dict[str, Any] = {**document.evidence(), "artifacts_dir": str(artifacts_dir),
                                "ignored_patterns": list(ignore)}
    if not artifacts_dir.is_dir():
        return Verdict.error(check_id, f"release directory {artifacts_dir} does not exist or is not a folder",
                             evidence={**evidence, "hint": "point --artifacts at the release directory"})
    try:
        files = list(_release_files(artifacts_dir, ignore, document.path))
    except OSError as exc:
        return Verdict.error(check_id, f"cannot list {artifacts_dir}: {exc.strerror or exc}",
                             evidence=evidence)
    algorithms = set(_known_hashes(document)[0]) | {"SHA-256"}
    release = _Release()
    for relative, path in files:
        try:
            if path.name == IMAGES_LIST:
                found, bad = parse_images_list(path.read_text(encoding="utf-8", errors="replace"), relative)
                release.images.extend(found)
                release.undigested.extend(bad)
            else:
                release.files[relative] = _digests(path, algorithms)
        except OSError as exc:
            release.unreadable.append(f"{relative}: {exc.strerror or type(exc).__name__}")
    return _coverage(check_id, document, release, str(artifacts_dir), evidence)


def sbom_covers_digests(sbom: Path | SbomDocument, artifacts: Mapping[str, str], *, source: str,
                        images: Sequence[tuple[str, str]] = ()) -> Verdict:
    """``sbom.covers_artifacts`` for a release known by digests: ``{name: sha256 hex}``.

    For releases that are not a local folder (e.g. objects under an S3 prefix, hashed
    while downloading). ``images`` are (reference, sha256 hex) pairs, e.g. from
    :func:`parse_images_list`. ``source`` names the release in messages.
    """
    check_id = "sbom.covers_artifacts"
    document = loaded(check_id, sbom)
    if isinstance(document, Verdict):
        return document
    release = _Release(files={name: {"SHA-256": digest.lower()} for name, digest in artifacts.items()},
                       images=[(ref, digest.lower()) for ref, digest in images])
    return _coverage(check_id, document, release, source, {**document.evidence(), "source": source})

