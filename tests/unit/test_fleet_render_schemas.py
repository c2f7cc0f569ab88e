"""Rendered fleet files against the engines' own schemas, offline (T1, T2).

``kubernetes-validate --strict`` carries the Kubernetes OpenAPI schemas of 1.25 to 1.37 in its
wheel; ``check-jsonschema`` carries GitHub's and GitLab's workflow schemas. Both are run as a
user runs them (their command lines), and once inside a network namespace with no network at
all, to prove CI needs nothing from outside.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from drillbook.fleet.render import render_files
from drillbook.fleet.render.settings import settings_from
from drillbook.fleet.render.yamltext import load

SUPPORTED = ("1.29", "1.30", "1.31", "1.32", "1.33", "1.34")
TIMEOUT_S = 180


def render(engine: str, tmp: Path, **over: Any) -> list[Path]:
    values: dict[str, Any] = {"engine": engine, "bins": 6, "parallel": 3, "image": None, "schedule": None,
                              "runs": "s3://drills/runs" if engine == "k8s" else None,
                              "config": Path("drillbook.toml"), "secret": None, "name": None, "cadence": None,
                              "secret_names": ("ORDERS_DSN",)}
    values.update(over)
    out = tmp / engine / str(len(list(tmp.glob(f"{engine}/*"))))
    out.mkdir(parents=True)
    paths = []
    for name, text in sorted(render_files(settings_from(**values)).items()):
        (out / name).write_text(text)
        paths.append(out / name)
    return paths


def rewrite(path: Path, mutate: Any) -> Path:
    [doc] = load(path.read_text())
    doc = copy.deepcopy(doc)
    mutate(doc)
    broken = path.with_name("broken-" + path.name)
    broken.write_text(yaml.safe_dump(doc, sort_keys=False))
    return broken


def kubernetes_validate(*files: Path, versions: tuple[str, ...] = SUPPORTED,
                        prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    flags = [arg for version in versions for arg in ("-k", version)]
    return subprocess.run([*prefix, sys.executable, "-m", "kubernetes_validate", "--strict", *flags,
                           *map(str, files)], capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def check_jsonschema(schema: str, *files: Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                           f"vendor.{schema}", *map(str, files)],
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


class TestKubernetesSchemas:
    def test_cronjob_and_job_pass_strict_for_1_29_to_1_34(self, tmp_path: Path) -> None:
        files = render(engine="k8s", tmp=tmp_path) + render(engine="k8s", tmp=tmp_path, bins=1, parallel=1,
                                                            cadence="monthly")
        result = kubernetes_validate(*files)
        assert result.returncode == 0, result.stdout + result.stderr
        passed = [line for line in result.stdout.splitlines() if line.startswith("INFO") and "passed" in line]
        assert len(passed) == len(files) * len(SUPPORTED)
        assert {line.rsplit("version ", 1)[1] for line in passed} == set(SUPPORTED)
        assert "WARN" not in result.stdout and "ERROR" not in result.stdout

    def test_a_misspelt_field_fails_strict_naming_it(self, tmp_path: Path) -> None:
        [cron, _] = render(engine="k8s", tmp=tmp_path)
        broken = rewrite(cron, lambda d: d["spec"]["jobTemplate"]["spec"].update(completionz=6))
        result = kubernetes_validate(broken, versions=("1.34",))
        assert result.returncode == 1
        assert "'completionz' was unexpected" in result.stdout

    def test_kubernetes_1_27_lacks_what_the_job_needs(self, tmp_path: Path) -> None:
        """The version skew case: 1.27's schema has no FailIndex-era podFailurePolicy rule shape, so the
        same manifest fails there (the docs say 1.29 or newer)."""
        files = render(engine="k8s", tmp=tmp_path)
        result = kubernetes_validate(files[0], versions=("1.27",))
        assert result.returncode == 1
        assert "podFailurePolicy" in result.stdout

    def test_what_the_schema_misses_is_why_lint_exists(self, tmp_path: Path) -> None:
        """`Indexd` and a FailIndex rule without backoffLimitPerIndex both pass strict validation; an
        unknown kind only warns. drillbook's lint rules catch each (test_fleet_render_lint.py)."""
        [cron, _] = render(engine="k8s", tmp=tmp_path)
        typo = rewrite(cron, lambda d: d["spec"]["jobTemplate"]["spec"].update(completionMode="Indexd"))
        no_backoff = rewrite(typo, lambda d: d["spec"]["jobTemplate"]["spec"].pop("backoffLimitPerIndex"))
        result = kubernetes_validate(typo, no_backoff, versions=("1.34",))
        assert result.returncode == 0, result.stdout


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    result = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False, timeout=30)
    return result.returncode == 0


# `unshare -n`: a new network namespace holding only a loopback interface that is down.
NO_NETWORK: tuple[str, ...] | None = ("unshare", "-n") if _unshare_works() else None


class TestWorkflowSchemas:
    @pytest.mark.parametrize("runs", [None, "s3://drills/runs"], ids=["artifacts", "s3"])
    def test_github_and_gitlab_files_pass_their_schemas(self, tmp_path: Path, runs: str | None) -> None:
        github = render(engine="github", tmp=tmp_path, runs=runs, cadence="monthly")
        gitlab = render(engine="gitlab", tmp=tmp_path, runs=runs, bins=200, parallel=8)
        for schema, files in (("github-workflows", github), ("gitlab-ci", gitlab)):
            result = check_jsonschema(schema, *files)
            assert result.returncode == 0, result.stdout + result.stderr
            assert "ok -- validation done" in result.stdout

    def test_schema_violations_are_named(self, tmp_path: Path) -> None:
        [gitlab] = render(engine="gitlab", tmp=tmp_path)
        broken = rewrite(gitlab, lambda d: d["drillbook-shard"].update(parallel=201))
        result = check_jsonschema("gitlab-ci", broken)
        assert result.returncode == 1
        assert "drillbook-shard" in result.stdout + result.stderr
        [github] = render(engine="github", tmp=tmp_path)
        broken = rewrite(github, lambda d: d["jobs"]["merge"].update({"runs_on": "ubuntu-latest"}))
        result = check_jsonschema("github-workflows", broken)
        assert result.returncode == 1
        assert "jobs.merge" in result.stdout + result.stderr or "$.jobs.merge" in result.stdout + result.stderr


@pytest.mark.skipif(NO_NETWORK is None, reason="cannot make a network namespace here (unshare -n needs root)")
def test_both_validators_work_with_no_network_at_all(tmp_path: Path) -> None:
    """In a network namespace with no interface up, both tools validate from what their wheels carry."""
    assert NO_NETWORK is not None
    k8s = kubernetes_validate(*render(engine="k8s", tmp=tmp_path), versions=("1.29", "1.34"), prefix=NO_NETWORK)
    assert k8s.returncode == 0 and "WARN" not in k8s.stdout, k8s.stdout + k8s.stderr
    ci = check_jsonschema("gitlab-ci", *render(engine="gitlab", tmp=tmp_path), prefix=NO_NETWORK)
    assert ci.returncode == 0, ci.stdout + ci.stderr
    gh = check_jsonschema("github-workflows", *render(engine="github", tmp=tmp_path), prefix=NO_NETWORK)
    assert gh.returncode == 0, gh.stdout + gh.stderr
