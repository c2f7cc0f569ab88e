"""Benchmark: drillbook's CycloneDX checks vs cyclonedx-python-lib, and how they scale.

Part 1 (URLs): a ~2 MB CycloneDX 1.6 JSON SBOM (1,000 components, each with hashes,
a licence and six external references) validated by drillbook and by the library's
default validator in this run: the ratio (target >= 30x), identical verdicts on it,
on a variant with one bad URL and on every document of the shared fixtures.

    scaled = scaling(args.components, args.library_max)
    .venv/bin/python bench/sbom.py [--components 1000] [--skip-fixtures] [--spdx-packages 1000]

It then prints the SPDX figure beside it (bench/sbom_spdx.py: drillbook vs spdx-tools'
own parse + validate on a ~2 MB SPDX JSON document; 0 packages skips it).
    return 0 if ratio >= TARGET_RATIO and scaled else 1

    .venv/bin/python bench/sbom.py [--components 100000] [--library-max 5000] [--skip-fixtures]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.validation import make_schemabased_validator

from checks.cyclonedx_fast import iri_ok, iri_reference_ok
from checks.sbom import validate_sbom
from checks.verdict import Outcome

TARGET_RATIO = 30.0
TARGET_100K_S = 60.0
TARGET_MEMORY_MB = 1024.0
TARGET_SLOPE = 1.2
ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("DRILLBOOK_FIXTURES")
                or Path(__file__).resolve().parents[2] / "shared" / "fixtures") / "supply_chain" / "cyclonedx"
_REFERENCE_TYPES = ["website", "vcs", "distribution", "issue-tracker", "documentation", "release-notes"]


def generate(components: int) -> dict[str, Any]:
    """A realistic, schema-valid SBOM: every component with purl, hashes, licence, six URLs."""
    items = []
    for i in range(components):
        name = f"package-{i:04d}"
        version = f"{i % 7}.{i % 13}.{i % 5}"
        digest = hashlib.sha256(name.encode()).hexdigest()
        items.append({
            "type": "library", "bom-ref": f"pkg:pypi/{name}@{version}", "name": name, "version": version,
            "group": f"org.example.team{i % 17}", "description": f"Component {i} of the benchmark SBOM. " * 3,
            "purl": f"pkg:pypi/{name}@{version}",
            "hashes": [{"alg": "SHA-256", "content": digest},
                       {"alg": "SHA-512", "content": hashlib.sha512(name.encode()).hexdigest()}],
            "licenses": [{"license": {"id": ["MIT", "Apache-2.0", "BSD-3-Clause"][i % 3]}}],
            "externalReferences": [
                {"type": kind,
                 "url": f"https://{kind}.example.org/projects/{name}/{version}/{kind}?ref={digest[:12]}#top",
                 "comment": f"{kind} of {name}"}
                for kind in _REFERENCE_TYPES
            ],
        })
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
        "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
        "metadata": {"timestamp": "2026-11-22T00:00:00Z",
                     "component": {"type": "application", "name": "bench-app", "version": "1.0.0",
                                   "bom-ref": "bench-app"}},
        "components": items,
    }


def generate_image_sbom(components: int) -> dict[str, Any]:
    """A container image's inventory, as syft writes it: deb packages with purl, cpe, licence, properties.

    Every 50th component carries the SHA-256 of one release file, so coverage has work to do.
    """
    items = []
    for i in range(components):
        name = f"lib{i:06d}"
        version = f"{i % 7}.{i % 13}.{i % 5}-{i % 3}"
        purl = f"pkg:deb/debian/{name}@{version}?arch=amd64&distro=debian-12"
        item: dict[str, Any] = {
            "bom-ref": f"{purl}&package-id={hashlib.sha256(name.encode()).hexdigest()[:16]}",
            "type": "library", "name": name, "version": version,
            "licenses": [{"license": {"id": ["MIT", "Apache-2.0", "GPL-2.0-only"][i % 3]}}],
            "cpe": f"cpe:2.3:a:{name}:{name}:{version}:*:*:*:*:*:*:*", "purl": purl,
            "properties": [{"name": "syft:package:type", "value": "deb"},
                           {"name": "syft:location:0:path", "value": f"/var/lib/dpkg/status.d/{name}"}]}
        if i % 50 == 0:
            digest = hashlib.sha256(f"artifact {i}".encode()).hexdigest()
            item["hashes"] = [{"alg": "SHA-256", "content": digest}]
        items.append(item)
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
            "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
            "metadata": {"timestamp": "2026-11-22T00:00:00Z",
                         "component": {"type": "container", "name": "image", "version": "1",
                                       "bom-ref": "image"}},
            "components": items}


def _release_and_advisories(tmp: Path) -> tuple[Path, Path, Path]:
    """A release of 20 files (all in every generated SBOM), OSV advisories hitting low-severity
    packages, and a policy denying a licence no component carries."""
    release = tmp / "release"
    release.mkdir()
    for i in range(0, 1000, 50):
        (release / f"artifact-{i}.bin").write_text(f"artifact {i}")
    osv = tmp / "osv"
    osv.mkdir()
    for i in range(0, 1000, 100):
        (osv / f"DEBIAN-{i}.json").write_text(json.dumps({
            "id": f"DEBIAN-{i}", "summary": "benchmark advisory",
            "database_specific": {"severity": "low"},
            "affected": [{"package": {"ecosystem": "Debian:12", "name": f"lib{i:06d}"},
                          "ranges": [{"type": "ECOSYSTEM",
                                      "events": [{"introduced": "0"}, {"fixed": "99"}]}]}]}))
    policy = tmp / "policy.toml"
    policy.write_text('[sbom]\nrequired_fields = ["version", "purl"]\ndenied_licenses = ["AGPL-3.0-only"]\n'
                      '[vulnerabilities]\nthreshold = "high"\n')
    return release, osv, policy


def _verify_in_child(path: Path, release: Path, osv: Path,
                     policy: Path) -> tuple[float, float, float, dict[str, Any]]:
    """``drillbook verify sbom`` in a child process: (wall s, CPU s, peak RSS MB, its JSON output)."""
    argv = [sys.executable, "-m", "drillbook.cli", "verify", "sbom", str(path), "--policy", str(policy),
            "--artifacts", str(release), "--advisories", str(osv), "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=ROOT)
        # wait4 rather than wait: the rusage of this one child (CPU, peak RSS), not all children's.
        _pid, _status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        try:
            result = json.loads(out.read())
        except ValueError as exc:
            detail = err.read().decode()[-2000:]
            raise SystemExit(f"verify sbom printed no JSON for {path.name}: {detail}") from exc
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, result


def _slope(sizes: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(time) over log(size): 1.0 is linear, 2.0 quadratic."""
    xs = [math.log(n) for n in sizes]
    ys = [math.log(max(t, 1e-3)) for t in seconds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def scaling(largest: int, library_max: int) -> bool:
    """Part 2: the scaling series; True when every target is met."""
    sizes = [n for n in (1000, 10_000, 100_000, 1_000_000) if n < largest] + [largest]
    print(f"\nscaling: drillbook verify sbom (all checks) on container-image SBOMs of {sizes} components")
    walls: list[float] = []
    cpus: list[float] = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="drillbook-bench-scale-") as tmp_name:
        tmp = Path(tmp_name)
        release, osv, policy = _release_and_advisories(tmp)
        for n in sizes:
            path = tmp / f"image-{n}.cdx.json"
            path.write_text(json.dumps(generate_image_sbom(n)))
            size_mb = path.stat().st_size / 1e6
            wall, cpu, rss, result = _verify_in_child(path, release, osv, policy)
            walls.append(wall)
            cpus.append(cpu)
            outcomes = {v["id"]: v["outcome"] for v in result["verdicts"]}
            print(f"  {n:>7} components {size_mb:6.1f} MB: {wall:6.1f} s wall, {cpu:6.1f} s CPU, "
                  f"peak {rss:6.0f} MB, exit {result['exit_code']}: {outcomes}")
            ok &= result["exit_code"] == 0
            if n <= library_max:
                text = path.read_text()
                t0 = time.perf_counter()
                theirs = library_default(text)
                library_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                ours = drillbook_verdict(path)
                ours_s = time.perf_counter() - t0
                same_verdict = same(ours, theirs)
                ok &= same_verdict
                print(f"          library validation {library_s:6.1f} s vs drillbook validation "
                      f"{ours_s:5.2f} s "
                      f"in this process: {library_s / ours_s:.1f}x, verdicts "
                      f"{'identical' if same_verdict else f'DIFFER: {ours} vs {theirs}'}")
            path.unlink()
    if len(sizes) > 1:
        slope_wall, slope_cpu = _slope(sizes, walls), _slope(sizes, cpus)
        print(f"  scaling exponent (log-log slope, {sizes[0]}..{sizes[-1]}): wall {slope_wall:.2f}, "
              f"CPU {slope_cpu:.2f} (1.0 linear; target < {TARGET_SLOPE})")
        ok &= slope_cpu < TARGET_SLOPE
    if largest >= 100_000:
        status = "OK" if walls[-1] < TARGET_100K_S else "BELOW TARGET"
        print(f"  {largest} components: {walls[-1]:.1f} s wall (target < {TARGET_100K_S:.0f} s): {status}; "
              f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        ok &= walls[-1] < TARGET_100K_S
    return ok


@functools.cache
def _library(fmt: OutputFormat, version: str) -> Any:
    # One validator per version, reused: its schema loading is not what is measured.
    return make_schemabased_validator(fmt, SchemaVersion.from_version(version))


def library_default(text: str) -> tuple[bool, str | None, str | None]:
    """cyclonedx-python-lib's default JSON validator: (valid, first error path, message)."""
    error = _library(OutputFormat.JSON, json.loads(text)["specVersion"]).validate_str(text)
    return (True, None, None) if error is None else (False, error.data.json_path, error.data.message)


def library_xml(text: str, version: str) -> tuple[bool, str | None, str | None]:
    error = _library(OutputFormat.XML, version).validate_str(text)
    return (True, None, None) if error is None else (False, f"line {error.data.line}", error.data.message)


def drillbook_verdict(path: Path) -> tuple[bool, str | None, str | None]:
    verdict = validate_sbom(path)
    if verdict.outcome is Outcome.PASSED:
        return True, None, None
    first = verdict.evidence["errors"][0]
    return False, first["at"], first["message"]


def same(ours: tuple[bool, str | None, str | None], theirs: tuple[bool, str | None, str | None]) -> bool:
    if ours[0] != theirs[0] or ours[1] != theirs[1]:
        return False
    return ours[2] is None or (theirs[2] or "").startswith(ours[2].removesuffix("…"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--components", type=int, default=10_000,
                        help="largest SBOM of the scaling series (1k, 10k, 100k, ... up to this)")
    parser.add_argument("--library-max", type=int, default=5000,
                        help="largest size the library's own (quadratic) validation is timed on")
    parser.add_argument("--skip-fixtures", action="store_true")
    parser.add_argument("--spdx-packages", type=int, default=1000, help="SPDX document size; 0 skips SPDX")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="drillbook-bench-sbom-") as tmp:
        path = Path(tmp) / "bench.cdx.json"
        document = generate(1000)
        text = json.dumps(document, indent=2)
        path.write_text(text)
        urls = sum(len(c["externalReferences"]) for c in document["components"])
        print(f"generated {path.name}: {len(text) / 1e6:.2f} MB, 1000 components, {urls} URLs")

        # Build both validators first (schema loading is not what is compared).
        library_default('{"specVersion": "1.6"}')
        validate_sbom(path)
        iri_reference_ok.cache_clear()
        iri_ok.cache_clear()

        t0 = time.perf_counter()
        ours = drillbook_verdict(path)
        drillbook_s = time.perf_counter() - t0
        print(f"drillbook validate_sbom (read + parse + validate, cold URL cache): {drillbook_s:.2f} s -> "
              f"{'valid' if ours[0] else 'invalid'}")
        print("library default validator (this takes minutes) ...", flush=True)
        t0 = time.perf_counter()
        theirs = library_default(text)
        library_s = time.perf_counter() - t0
        print(f"library default validate_str: {library_s:.2f} s -> {'valid' if theirs[0] else 'invalid'}")
        assert same(ours, theirs), f"verdicts differ on the generated SBOM: {ours} vs {theirs}"

        # One bad URL early in the document: both must fail at the same place with the same message.
        bad = json.loads(text)
        bad["components"][3]["externalReferences"][1]["url"] = "https://exa mple.org/broken"
        bad_path = Path(tmp) / "bad.cdx.json"
        bad_path.write_text(json.dumps(bad))
        bad_ours, bad_theirs = drillbook_verdict(bad_path), library_default(bad_path.read_text())
        assert same(bad_ours, bad_theirs), \
            f"verdicts differ on the bad-URL variant: {bad_ours} vs {bad_theirs}"
        print(f"bad-URL variant: both invalid at {bad_ours[1]}")

    checked = 0
    cases_file = FIXTURES / "cases.json"
    if args.skip_fixtures:
        print("fixtures: skipped (--skip-fixtures)")
    elif not cases_file.is_file():
        print(f"fixtures: not found under {FIXTURES} (set DRILLBOOK_FIXTURES)")
    else:
        for case in json.loads(cases_file.read_text())["documents"]:
            fixture = FIXTURES / case["file"]
            content = fixture.read_text(encoding="utf-8")
            theirs = library_default(content) if case["format"] == "json" \
                else library_xml(content, case["spec_version"])
            ours = drillbook_verdict(fixture)
            assert same(ours, theirs), f"verdicts differ on {case['file']}: {ours} vs {theirs}"
            assert ours[0] == (case["expected"] == "valid"), f"{case['file']}: expected {case['expected']}"
            checked += 1
        print(f"fixtures: identical verdicts on all {checked} documents of cases.json")

    ratio = library_s / drillbook_s
    status = "OK" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print(f"RATIO library default / drillbook = {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x): {status}")
    scaled = scaling(args.components, args.library_max)
    if args.spdx_packages:
        from sbom_spdx import run as spdx_run  # bench/ is the script's folder, first on sys.path

        with tempfile.TemporaryDirectory(prefix="drillbook-bench-spdx-") as tmp:
            spdx_ratio = spdx_run(args.spdx_packages, Path(tmp))
        print(f"SPDX RATIO spdx-tools / drillbook = {spdx_ratio:.1f}x (CycloneDX above: {ratio:.1f}x)")
    return 0 if ratio >= TARGET_RATIO and scaled else 1


if __name__ == "__main__":
    raise SystemExit(main())
