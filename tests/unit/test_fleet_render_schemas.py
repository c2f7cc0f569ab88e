"""Rendered fleet files against the engines' own schemas, offline (T1, T2).

``kubernetes-validate --strict`` carries the Kubernetes OpenAPI schemas of 1.25 to 1.37 in its
wheel; ``check-jsonschema`` carries GitHub's and GitLab's workflow schemas. Both are run as a
user runs them (their command lines), and once inside a network namespace with no network at
all (where ``unshare -n`` works, as root): CI needs nothing from outside. A subprocess of either
tool costs seconds on a loaded 2-core machine, so each test runs a tool once over several files
and reads its per-file lines.
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
    values: dict[str, Any] = {
        "engine": engine,
        "bins": 6,
        "parallel": 3,
        "image": None,
        "schedule": None,
        "runs": "s3://drills/runs" if engine == "k8s" else None,
        "config": Path("drillbook.toml"),
        "secret": None,
        "name": None,
        "cadence": None,
        "secret_names": ("ORDERS_DSN",),
    }
    values.update(over)
    out = tmp / engine / str(len(list(tmp.glob(f"{engine}/*"))))
    out.mkdir(parents=True)
    paths = []
    for name, text in sorted(render_files(settings_from(**values)).items()):
        (out / name).write_text(text)
        paths.append(out / name)
    return paths


def rewrite(path: Path, label: str, mutate: Any) -> Path:
    """A copy of ``path`` named ``label-NAME`` with ``mutate`` applied to its one document."""
    [doc] = load(path.read_text())
    doc = copy.deepcopy(doc)
    mutate(doc)
    broken = path.with_name(f"{label}-{path.name}")
    broken.write_text(yaml.safe_dump(doc, sort_keys=False))
    return broken


def kubernetes_validate(
    *files: Path, versions: tuple[str, ...] = SUPPORTED, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    flags = [arg for version in versions for arg in ("-k", version)]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "kubernetes_validate", "--strict", *flags, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def check_jsonschema(
    schema: str, *files: Path, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *prefix,
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            f"vendor.{schema}",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    result = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False, timeout=30)
    return result.returncode == 0


# `unshare -n`: a new network namespace holding only a loopback interface that is down.
NO_NETWORK: tuple[str, ...] | None = ("unshare", "-n") if _unshare_works() else None
OFFLINE: tuple[str, ...] = NO_NETWORK or ()  # elsewhere the positive cases run with the network there


class TestKubernetesSchemas:
    def test_cronjob_and_job_pass_strict_for_1_29_to_1_34_offline(self, tmp_path: Path) -> None:
        files = render(engine="k8s", tmp=tmp_path, cadence="monthly")
        result = kubernetes_validate(*files, prefix=OFFLINE)
        assert result.returncode == 0, result.stdout + result.stderr
        passed = [line for line in result.stdout.splitlines() if line.startswith("INFO") and "passed" in line]
        assert len(passed) == len(files) * len(SUPPORTED)
        assert {line.rsplit("version ", 1)[1] for line in passed} == set(SUPPORTED)
        assert "WARN" not in result.stdout and "ERROR" not in result.stdout

    def test_what_strict_validation_catches_and_misses(self, tmp_path: Path) -> None:
        """Caught: a misspelt field (1.34), and the version skew (1.27 has no rule shape for FailIndex:
        the docs say 1.29 or newer). Missed: `Indexd` and a FailIndex rule without backoffLimitPerIndex
        both pass, which is why drillbook's lint rules exist (test_fleet_render_lint.py)."""
        [cron, _] = render(engine="k8s", tmp=tmp_path)
        misspelt = rewrite(cron, "misspelt", lambda d: d["spec"]["jobTemplate"]["spec"].update(completionz=6))
        typo = rewrite(
            cron, "typo", lambda d: d["spec"]["jobTemplate"]["spec"].update(completionMode="Indexd")
        )
        no_backoff = rewrite(
            typo, "nobackoff", lambda d: d["spec"]["jobTemplate"]["spec"].pop("backoffLimitPerIndex")
        )
        result = kubernetes_validate(cron, misspelt, typo, no_backoff, versions=("1.27", "1.34"))
        lines = result.stdout.splitlines()

        def verdict(path: Path, version: str) -> str:
            [line] = [line for line in lines if f" {path} " in line and f"version {version}" in line]
            return line

        assert result.returncode == 1
        assert verdict(cron, "1.34").startswith("INFO") and "passed" in verdict(cron, "1.34")
        assert verdict(cron, "1.27").startswith("ERROR") and "podFailurePolicy" in verdict(cron, "1.27")
        assert verdict(misspelt, "1.34").startswith("ERROR")
        assert "'completionz' was unexpected" in verdict(misspelt, "1.34")
        assert verdict(typo, "1.34").startswith("INFO")
        assert verdict(no_backoff, "1.34").startswith("INFO")


class TestWorkflowSchemas:
    @pytest.mark.parametrize(
        ("engine", "schema", "breakage", "where"),
        [
            (
                "github",
                "github-workflows",
                lambda d: d["jobs"]["merge"].update({"runs_on": "ubuntu-latest"}),
                "jobs.merge",
            ),
            ("gitlab", "gitlab-ci", lambda d: d["drillbook-shard"].update(parallel=201), "drillbook-shard"),
        ],
        ids=["github", "gitlab"],
    )
    def test_rendered_files_pass_offline_and_a_violation_is_named(
        self, tmp_path: Path, engine: str, schema: str, breakage: Any, where: str
    ) -> None:
        """Both runs modes (artifacts, S3) pass the vendor schema with no network; a broken copy fails,
        and only it is named."""
        [artifacts] = render(engine=engine, tmp=tmp_path, cadence="monthly")
        [s3] = render(engine=engine, tmp=tmp_path, runs="s3://drills/runs", bins=200, parallel=8)
        result = check_jsonschema(schema, artifacts, s3, prefix=OFFLINE)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ok -- validation done" in result.stdout
        broken = rewrite(s3, "broken", breakage)
        result = check_jsonschema(schema, artifacts, broken)
        output = result.stdout + result.stderr
        assert result.returncode == 1
        assert str(broken) in output and where in output
        assert str(artifacts) not in output
