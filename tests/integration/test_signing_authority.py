"""The sandbox signing authority and release, end to end with real consumers.

- sigstore's own CLI (a second, independent consumer of the bundles and root);
- a release published under an S3 prefix of a real moto server on loopback;
- ``drillbook run`` on the supply-chain features: passes, and fails for the
  right reason with ``--canary``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from checks.signatures import verify_artifacts, verify_attestation, verify_bundle
from checks.verdict import Outcome
from drills.processes import S3Server
from drills.releases import Release, build_sandbox_release, open_release
from drills.signing_authority import DEFAULT_IDENTITY, DEFAULT_ISSUER, SigningAuthority
from drills.targets import StoreSpec

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    return build_sandbox_release(tmp_path_factory.mktemp("sandbox-release"))


def _sigstore_cli(root: Path, artifact: Path, bundle: Path, identity: str, tmp: Path,
                  home: Path) -> subprocess.CompletedProcess[str]:
    config = tmp / "client_trust_config.json"
    config.write_text(json.dumps({
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": json.loads(root.read_text()),
        "signingConfig": {"mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json"},
    }))
    # An empty HOME: the CLI must not need (or touch) any cache to verify with an explicit root.
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
           "XDG_DATA_HOME": str(home / ".local")}
    return subprocess.run(
        [sys.executable, "-m", "sigstore", "--trust-config", str(config), "verify", "identity",
         "--bundle", str(bundle), "--cert-identity", identity, "--cert-oidc-issuer", DEFAULT_ISSUER,
         str(artifact)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )


def test_sigstore_cli_accepts_sandbox_bundles(release: Release, tmp_path: Path) -> None:
    assert release.trusted_root is not None
    home = tmp_path / "home"
    home.mkdir()
    artifact = release.artifacts()[0]
    bundle = artifact.with_name(artifact.name + ".sigstore.json")
    ok = _sigstore_cli(release.trusted_root, artifact, bundle, DEFAULT_IDENTITY, tmp_path, home)
    assert ok.returncode == 0, ok.stderr
    wrong = _sigstore_cli(release.trusted_root, artifact, bundle, "mallory@example.com", tmp_path, home)
    assert wrong.returncode == 1
    assert not any(home.rglob("*")), "verifying with an explicit root wrote to HOME"


def test_sandbox_release_verifies_and_another_authority_does_not(release: Release, tmp_path: Path) -> None:
    assert release.trusted_root is not None
    kw: dict[str, Any] = {"identity": DEFAULT_IDENTITY, "issuer": DEFAULT_ISSUER}
    assert verify_artifacts(release.artifacts(), trusted_root=release.trusted_root, **kw).outcome \
        is Outcome.PASSED
    other = SigningAuthority.create("elsewhere").write_trusted_root(tmp_path / "other.json")
    verdict = verify_artifacts(release.artifacts(), trusted_root=other, **kw)
    assert verdict.outcome is Outcome.FAILED and verdict.measured == 0
    attestation = release.attestations()[0]
    assert verify_attestation(attestation, release.artifacts(), trusted_root=release.trusted_root,
                              **kw).outcome is Outcome.PASSED
    sbom = release.sbom()
    assert sbom is not None
    sbom_bundle = sbom.with_name(sbom.name + ".sigstore.json")
    assert verify_bundle(sbom, sbom_bundle, trusted_root=release.trusted_root, **kw).outcome is Outcome.PASSED


def test_canary_release_fails_on_the_broken_artifact_only(tmp_path: Path) -> None:
    canary = build_sandbox_release(tmp_path, canary=True)
    assert canary.trusted_root is not None
    verdict = verify_artifacts(canary.artifacts(), trusted_root=canary.trusted_root,
                               identity=DEFAULT_IDENTITY, issuer=DEFAULT_ISSUER)
    assert verdict.outcome is Outcome.FAILED
    failing = [i for i in verdict.evidence["items"] if i["outcome"] != "passed"]
    assert [Path(i["artifact"]).name for i in failing] == ["drillbook-sandbox-0.1.0.tgz"]
    assert failing[0]["error"] == "VerificationError"



def test_release_under_an_s3_prefix(release: Release, s3_server: S3Server, tmp_path: Path) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="releases")
    for path in sorted(release.directory.rglob("*")):
        if path.is_file():
            key = f"app/v0.1.0/{path.relative_to(release.directory).as_posix()}"
            client.put_object(Bucket="releases", Key=key, Body=path.read_bytes())
    spec = StoreSpec(name="release", url="s3://releases/app/v0.1.0/", endpoint_url=s3_server.endpoint_url,
                     access_key_id="testing", secret_access_key="testing")
    downloaded = open_release(spec, tmp_path)
    assert downloaded.trusted_root is None  # a downloaded release never brings its own root
    names = [p.relative_to(downloaded.directory).as_posix() for p in downloaded.artifacts()]
    assert names == [p.relative_to(release.directory).as_posix() for p in release.artifacts()]
    assert release.trusted_root is not None
    verdict = verify_artifacts(downloaded.artifacts(), trusted_root=release.trusted_root,
                               identity=DEFAULT_IDENTITY, issuer=DEFAULT_ISSUER)
    assert verdict.outcome is Outcome.PASSED, verdict.message
    # A key that climbs out of the prefix is refused, not written outside the download folder.
    client.put_object(Bucket="releases", Key="evil/../../escape.txt", Body=b"x")
    bad = StoreSpec(name="evil", url="s3://releases/evil/", endpoint_url=s3_server.endpoint_url,
                    access_key_id="testing", secret_access_key="testing")
    from drills.releases import ReleaseError

    with pytest.raises(ReleaseError):
        open_release(bad, tmp_path / "evil-download")


def _drillbook(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "drillbook.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env={**os.environ, **env}, check=False)


def test_drillbook_run_supply_chain_passes_and_canary_fails(
    tmp_path: Path, sandbox_cache_env: dict[str, str]
) -> None:
    env = dict(sandbox_cache_env)
    features = str(REPO / "features" / "supply_chain")
    passed = _drillbook("run", "--features", features, "--out", str(tmp_path / "ok"), env=env)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    canary = _drillbook("run", "--canary", "--features", features, "--out", str(tmp_path / "canary"), env=env)
    assert canary.returncode == 1, canary.stdout + canary.stderr
    run_dir = next(p for p in (tmp_path / "canary").iterdir() if p.is_dir() and not p.is_symlink())
    results = json.loads((run_dir / "results.json").read_text())
    outcomes = {s["id"]: s["outcome"] for s in results["scenarios"]}
    # Signatures, provenance and SBOM coverage catch the altered chart; the vulnerability scan does not care.
    assert outcomes == {"SUP-01": "failed", "SUP-02": "failed", "SUP-03": "failed", "SUP-04": "passed"}
    signatures = next(s for s in results["scenarios"] if s["id"] == "SUP-01")
    failed = [v for v in signatures["verdicts"] if v["outcome"] == "failed"]
    assert len(failed) == 1 and "drillbook-sandbox-0.1.0.tgz" in failed[0]["message"]
    assert "Bundle message digest mismatch" in failed[0]["message"]
