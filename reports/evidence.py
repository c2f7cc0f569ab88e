"""The evidence bundle: one deterministic zip an auditor can verify offline.

Layout of ``evidence.zip``::

    manifest.json                          SHA-256 and size of every other file
    manifest.json.sigstore.json            with ``--sign``: a sigstore bundle over manifest.json
    runs/<run-id>/results.json             the run as recorded (already redacted)
    runs/<run-id>/scenarios/NNN-<id>.json  one file per scenario: verdicts, measured vs
                                           expected, evidence, timings
    runs/<run-id>/junit.xml, report.html   as the run wrote them
    runs/<run-id>/features/...             the feature files as run (snapshot of the run)
    runs/<run-id>/config.json              the effective config, secrets masked
    runs/<run-id>/environment.json         drillbook/tool/package versions, host
    runs/<run-id>/waivers.toml             the waiver file the run applied, if any
    ledger/ledger.jsonl (+ .head)          with ``--ledger``: the whole cadence ledger; verify
                                           then checks its chain and that every exported
                                           scenario has its ledger entry (same evidence digest)
    ledger/ledger.jsonl.heads/NNN.json     the ledger's signed heads (reports/ledger_heads.py):
                                           verify with a trust option checks them offline

Same inputs give a byte-identical archive: members in a fixed order
(manifest first, its signature if any, then sorted paths), fixed timestamps and permissions, and
*stored* (not deflated) members. Storing is deliberate: the archive is then
a pure function of its contents, so :func:`verify_bundle` can rebuild it and
prove every byte, not only every member, independent of the zlib in use.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from checks import redact
from checks.errors import DrillbookError
from checks.strict_json import loads_strict

if TYPE_CHECKING:
    from reports.ledger import LedgerRead

FORMAT = "drillbook-evidence/1"
MANIFEST = "manifest.json"
# The manifest's sigstore bundle: it signs the manifest, which lists every other file.
SIGNATURE = "manifest.json.sigstore.json"
LEDGER = "ledger/ledger.jsonl"
LEDGER_HEAD = "ledger/ledger.jsonl.head"
LEDGER_HEADS = "ledger/ledger.jsonl.heads/"  # one member per signed head
# The earliest timestamp a zip can hold: the archive never depends on when it was made.
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644 << 16
_UNIX = 3
# Files a run directory holds that are copied as they are (when present).
_RUN_FILES = ("results.json", "junit.xml", "report.html", "config.json", "environment.json",
              "waivers.toml")
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


class EvidenceError(DrillbookError):
    """A run directory cannot be exported (missing, unreadable, not a drillbook run)."""

    default_hint = "pass --out with the directory `drillbook run` wrote to, and an existing --run id"


@dataclass(frozen=True)
class Member:
    """One file of the bundle."""

    path: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Problem:
    """One thing verification found: ``kind`` is modified, missing, extra, archive, manifest or ledger."""

    kind: str
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path} — {self.detail}" if self.path else f"{self.kind}: {self.detail}"


@dataclass
class VerifyReport:
    """The result of verifying a bundle: every problem found, and what the manifest claims."""

    path: str
    problems: list[Problem] = field(default_factory=list)
    files_checked: int = 0
    manifest_sha256: str | None = None
    runs: list[str] = field(default_factory=list)
    manifest: bytes | None = None
    signature: bytes | None = None
    # The bundled ledger as read (chain, head and signed heads' claims checked), for a trust check.
    ledger: LedgerRead | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------- export


def run_members(run_dir: Path) -> list[Member]:
    """Every bundle file for one run directory, under ``runs/<run-id>/``."""
    results_path = run_dir / "results.json"
    try:
        raw = results_path.read_bytes()
        data = loads_strict(raw.decode("utf-8"))
    except OSError as exc:
        raise EvidenceError(f"{results_path}: cannot read the run's results ({exc.strerror})",
                            path=str(results_path)) from exc
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, DuplicateKeyError
        raise EvidenceError(f"{results_path}: not a drillbook results file ({exc})",
                            path=str(results_path)) from exc
    if not isinstance(data, dict) or not isinstance(data.get("run_id"), str):
        raise EvidenceError(f"{results_path}: not a drillbook results file (no run_id)",
                            path=str(results_path))
    run_id = data["run_id"]
    if not _SAFE_ID.match(run_id):
        raise EvidenceError(f"{results_path}: run_id {run_id!r} is not a plain name",
                            path=str(results_path))
    base = f"runs/{run_id}"
    members = []
    for name in _RUN_FILES:
        path = run_dir / name
        if path.is_file():
            members.append(Member(f"{base}/{name}", _redacted_bytes(path.read_bytes())))
    for index, scenario in enumerate(data.get("scenarios") or [], start=1):
        ident = (scenario.get("id") if isinstance(scenario, dict) else None) or "no-id"
        text = json.dumps(scenario, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        members.append(Member(scenario_member(run_id, index, ident), redact.redact(text).encode("utf-8")))
    features = run_dir / "features"
    if features.is_dir():
        for path in sorted(p for p in features.rglob("*") if p.is_file()):
            rel = path.relative_to(run_dir).as_posix()
            members.append(Member(f"{base}/{rel}", _redacted_bytes(path.read_bytes())))
    return members


_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def scenario_member(run_id: str, index: int, ident: str | None) -> str:
    """Where the ``index``-th scenario (from 1) of a run lives in the bundle."""
    return f"runs/{run_id}/scenarios/{index:03d}-{_SLUG.sub('_', ident or 'no-id')}.json"


def _redacted_bytes(data: bytes) -> bytes:
    """Text files pass through the redactor once more; binary files are kept as they are."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    return redact.redact(text).encode("utf-8")


def _ledger_members(path: Path) -> list[Member]:
    try:
        found = [Member(LEDGER, path.read_bytes())]
    except OSError as exc:
        raise EvidenceError(f"cannot read the ledger {path}: {exc.strerror}", path=str(path),
                            hint="pass --ledger with the ledger.jsonl the runs appended to") from exc
    head = path.with_name(path.name + ".head")
    if head.is_file():
        found.append(Member(LEDGER_HEAD, head.read_bytes()))
    from reports.ledger_heads import LocalHeads

    # The signed heads go along, so that the auditor can check them offline (with a trust root).
    for name, data in LocalHeads(path).load_heads():
        if data is not None:
            found.append(Member(LEDGER_HEADS + PurePosixPath(name).name, data))
    return found


def build_manifest(members: Sequence[Member], runs: Sequence[dict[str, Any]]) -> Member:
    """``manifest.json``: the format, the runs, and path/SHA-256/size of every member."""
    manifest = {
        "format": FORMAT,
        "runs": list(runs),
        "files": [{"path": m.path, "sha256": m.sha256, "size": len(m.data)}
                  for m in sorted(members, key=lambda m: m.path)],
    }
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return Member(MANIFEST, text.encode("utf-8"))


def run_summary(run_dir: Path) -> dict[str, Any]:
    """What the manifest says about one run (id, times, version, pass/fail, counts)."""
    data = loads_strict((run_dir / "results.json").read_text(encoding="utf-8"))
    return {
        "run_id": data.get("run_id"),
        "started_at": data.get("started_at"),
        "finished_at": data.get("finished_at"),
        "drillbook_version": data.get("drillbook_version"),
        "environment": data.get("environment"),
        "passed": data.get("passed"),
        "counts": data.get("counts"),
    }


def export_bundle(run_dirs: Iterable[Path], *, ledger: Path | None = None,
                  sign: Callable[[bytes], bytes] | None = None) -> bytes:
    """The evidence zip for these runs (and the ledger file), byte-identical for identical inputs.

    ``sign`` turns the manifest's bytes into a sigstore bundle (JSON bytes),
    stored as :data:`SIGNATURE`; signing is the one non-deterministic part.
    """
    dirs = sorted({Path(d) for d in run_dirs}, key=lambda d: d.name)
    if not dirs:
        raise EvidenceError("no run to export", hint="run `drillbook run` first, or widen --since")
    members: list[Member] = []
    summaries = []
    for run_dir in dirs:
        members.extend(run_members(run_dir))
        summaries.append(run_summary(run_dir))
    if ledger is not None:
        members.extend(_ledger_members(ledger))
    summaries.sort(key=lambda s: str(s["run_id"]))
    manifest = build_manifest(members, summaries)
    signature = [Member(SIGNATURE, canonical_json(sign(manifest.data)))] if sign is not None else []
    return canonical_zip([manifest, *signature, *sorted(members, key=lambda m: m.path)])


def canonical_json(data: bytes) -> bytes:
    """RFC 8785 canonical form of a JSON document (the signature member's only spelling)."""
    import rfc8785

    return rfc8785.dumps(json.loads(data))


def _is_canonical_json(data: bytes) -> bool:
    try:
        return canonical_json(data) == data
    except (ValueError, TypeError, RecursionError):  # rfc8785's errors are ValueErrors
        return False


def canonical_zip(members: Sequence[Member]) -> bytes:
    """A zip of ``members`` in the given order with fixed metadata: no time, no owner, no compression."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for member in members:
            info = zipfile.ZipInfo(member.path, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = _FILE_MODE
            info.create_system = _UNIX
            archive.writestr(info, member.data)
    return buffer.getvalue()


# ---------------------------------------------------------------- verify


def verify_bundle(data: bytes, *, name: str = "evidence.zip") -> VerifyReport:
    """Check every hash in the manifest, then that the archive is exactly the canonical export.

    Never raises on bad input: a corrupt zip, a lying manifest, a modified,
    missing or extra file each become a named :class:`Problem`.
    """
    report = VerifyReport(path=name)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        report.problems.append(Problem("archive", "", f"{name} is not a readable zip archive "
                                       f"(corrupt or truncated): {exc}"))
        return report
    with archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            report.problems.append(Problem("extra", dup, "appears more than once in the archive"))
        contents: dict[str, bytes] = {}
        for info in infos:
            if info.filename in contents:
                continue
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > len(data):
                # drillbook stores members; never inflate what an archive claims (a zip bomb).
                report.problems.append(Problem("modified", info.filename,
                                               "compressed or larger than the archive: not as exported"))
                continue
            try:
                contents[info.filename] = archive.read(info)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError,
                    NotImplementedError, RuntimeError) as exc:
                # A CRC mismatch or a damaged header: the member's bytes were changed.
                report.problems.append(Problem("modified", info.filename, f"cannot be read intact: {exc}"))
    manifest = _read_manifest(contents, report)
    if manifest is None:
        return report
    listed: dict[str, dict[str, Any]] = {}
    for entry in manifest["files"]:
        listed[entry["path"]] = entry
    for path, entry in sorted(listed.items()):
        if path not in contents:
            if not any(p.path == path for p in report.problems):
                report.problems.append(Problem("missing", path,
                                               "listed in the manifest, absent from the archive"))
            continue
        body = contents[path]
        digest = hashlib.sha256(body).hexdigest()
        report.files_checked += 1
        if digest != entry["sha256"]:
            report.problems.append(Problem(
                "modified", path, f"SHA-256 {digest}, manifest says {entry['sha256']}"))
        elif len(body) != entry["size"]:
            report.problems.append(Problem(
                "modified", path, f"{len(body)} bytes, manifest says {entry['size']}"))
    report.manifest = contents.get(MANIFEST)
    report.signature = contents.get(SIGNATURE)
    if report.signature is not None and not _is_canonical_json(report.signature):
        # The manifest does not list its own signature: canonical bytes make every byte count.
        report.problems.append(Problem("modified", SIGNATURE, "not the canonical JSON drillbook wrote"))
    for path in sorted(set(contents) - set(listed) - {MANIFEST, SIGNATURE}):
        report.problems.append(Problem("extra", path, "in the archive but not in the manifest"))
    if LEDGER in contents and not any(p.path in (LEDGER, LEDGER_HEAD) for p in report.problems):
        _check_ledger(contents, report)
    if report.ok:
        _check_canonical(data, contents, report)
    return report


def _check_ledger(contents: dict[str, bytes], report: VerifyReport) -> None:
    """The bundled ledger's chain holds, and each exported scenario has its entry (same digest)."""
    from reports.ledger import read_text
    from reports.ledger_heads import check_claims
    from reports.ledger_runs import scenario_digest
    from reports.results import ScenarioResult

    head: dict[str, Any] | None = None
    if LEDGER_HEAD in contents:
        try:
            loaded = loads_strict(contents[LEDGER_HEAD].decode("utf-8"))
            head = loaded if isinstance(loaded, dict) else {}
        except (UnicodeDecodeError, ValueError):  # JSONDecodeError, DuplicateKeyError
            head = {}
    try:
        text = contents[LEDGER].decode("utf-8")
    except UnicodeDecodeError as exc:
        report.problems.append(Problem("ledger", LEDGER, f"not UTF-8 at byte {exc.start}"))
        return
    read = read_text(text, head=head, path=Path(LEDGER), require_head=LEDGER_HEAD in contents)
    check_claims(read, [(path.removeprefix("ledger/"), data) for path, data in sorted(contents.items())
                        if path.startswith(LEDGER_HEADS)])
    report.ledger = read
    for problem in read.problems:
        report.problems.append(Problem("ledger", LEDGER, str(problem)))
    recorded = {(e.run_id, e.evidence_sha256) for e in read.entries}
    for path in sorted(contents):
        parts = PurePosixPath(path).parts
        if len(parts) != 4 or parts[0] != "runs" or parts[2] != "scenarios":
            continue
        try:
            scenario = ScenarioResult.from_dict(loads_strict(contents[path].decode("utf-8")))
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            report.problems.append(Problem("ledger", path, f"cannot be read as a scenario: {exc}"))
            continue
        if (parts[1], scenario_digest(scenario)) not in recorded:
            report.problems.append(Problem(
                "ledger", path, f"no ledger entry of run {parts[1]} has this scenario's evidence digest"))


def _read_manifest(contents: dict[str, bytes], report: VerifyReport) -> dict[str, Any] | None:
    raw = contents.get(MANIFEST)
    if raw is None:
        if not any(p.path == MANIFEST for p in report.problems):
            report.problems.append(Problem("missing", MANIFEST, "the archive has no manifest"))
        return None
    report.manifest_sha256 = hashlib.sha256(raw).hexdigest()
    try:
        manifest = loads_strict(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, DuplicateKeyError
        report.problems.append(Problem("manifest", MANIFEST, f"not valid JSON: {exc}"))
        return None
    problem = _manifest_shape(manifest)
    if problem:
        report.problems.append(Problem("manifest", MANIFEST, problem))
        return None
    report.runs = [str(r.get("run_id")) for r in manifest["runs"] if isinstance(r, dict)]
    return dict(manifest)


def _manifest_shape(manifest: Any) -> str | None:
    if not isinstance(manifest, dict):
        return "not a JSON object"
    if manifest.get("format") != FORMAT:
        return f"format is {manifest.get('format')!r}, expected {FORMAT!r}"
    files, runs = manifest.get("files"), manifest.get("runs")
    if not isinstance(files, list) or not isinstance(runs, list):
        return "`files` and `runs` must be lists"
    seen: set[str] = set()
    for index, entry in enumerate(files):
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                and isinstance(entry.get("sha256"), str) and isinstance(entry.get("size"), int)):
            return f"files[{index}] needs a string path, a string sha256 and an integer size"
        path = entry["path"]
        if path in seen:
            return f"files[{index}]: {path} is listed twice"
        if path.startswith("/") or ".." in PurePosixPath(path).parts:
            return f"files[{index}]: {path!r} is not a relative path inside the bundle"
        seen.add(path)
    return None


def _check_canonical(data: bytes, contents: dict[str, bytes], report: VerifyReport) -> None:
    """Every member matched its hash: the archive bytes must then equal the canonical export."""
    head = [MANIFEST, *([SIGNATURE] if SIGNATURE in contents else [])]
    order = [*head, *sorted(p for p in contents if p not in head)]
    expected = canonical_zip([Member(p, contents[p]) for p in order])
    if expected != data:
        at = next((i for i, (a, b) in enumerate(zip(expected, data, strict=False)) if a != b),
                  min(len(expected), len(data)))
        report.problems.append(Problem(
            "archive", "", f"the zip's own bytes differ from a canonical drillbook export "
            f"(first difference at byte {at}; {len(data)} bytes, expected {len(expected)}): "
            "headers, order or trailing data were altered"))
