"""drillbook's lint rules for rendered fleet files: each rule with a negative fixture (T1, T2).

Each fixture is a rendered file with one field broken the way a hand edit or a bad render
would break it; the rule must name that field. Some of these breakages pass the engines' own
schemas (see test_fleet_render_schemas.py), which is why the rules exist.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from drillbook.fleet.render import LintContext, lint, render_files
from drillbook.fleet.render.lint import RULES
from drillbook.fleet.render.settings import settings_from
from drillbook.fleet.render.yamltext import load

BINS = 6
SECRETS = ("ORDERS_DSN",)
FILES = {"k8s": "cronjob.yaml", "github": "drillbook-fleet.yml", "gitlab": ".gitlab-ci.yml"}


def rendered(engine: str) -> dict[str, Any]:
    """The one document of a clean render (bins 6, parallel 3, runs as a directory where allowed)."""
    chosen = settings_from(
        engine=engine,
        bins=BINS,
        parallel=3,
        image=None,
        schedule=None,
        runs="s3://drills/runs" if engine == "k8s" else None,
        config=Path("drillbook.toml"),
        secret=None,
        name=None,
        cadence=None,
        secret_names=SECRETS,
    )
    [document] = load(render_files(chosen)[FILES[engine]])
    assert isinstance(document, dict)
    return document


def job(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["jobTemplate"]["spec"]
    return spec


def pod(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job(doc)["template"]["spec"]
    return spec


def drill(doc: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod(doc)["containers"][0]
    return container


def shard_step(doc: dict[str, Any]) -> dict[str, Any]:
    [step] = [s for s in doc["jobs"]["shard"]["steps"] if "--plan" in s.get("run", "")]
    assert isinstance(step, dict)
    return step


def _set(
    path: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: Any
) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        path(doc)[key] = value

    return mutate


def _delete(path: Callable[[dict[str, Any]], dict[str, Any]], key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        del path(doc)[key]

    return mutate


def _rules_where(keep: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        policy = job(doc)["podFailurePolicy"]
        policy["rules"] = [r for r in policy["rules"] if keep(r)]

    return mutate


def _no_tmp_mount(doc: dict[str, Any]) -> None:
    drill(doc)["volumeMounts"] = [m for m in drill(doc)["volumeMounts"] if m["mountPath"] != "/tmp"]


def _literal_secret(doc: dict[str, Any]) -> None:
    drill(doc)["env"].append({"name": "ORDERS_DSN", "value": "postgresql://drill:pw@db/orders"})


def _no_shard_index(doc: dict[str, Any]) -> None:
    step = shard_step(doc)
    step["env"].pop("DRILLBOOK_SHARD_INDEX")
    step["run"] = step["run"].split(" --shard-index")[0]


# (rule id, engine, what breaks, the field the finding must name)
CASES: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
    ("K8S-KIND", "k8s", _set(lambda d: d, "kind", "CronJobs"), "kind"),
    (
        "K8S-COMPLETION-MODE",
        "k8s",
        _set(job, "completionMode", "Indexd"),
        "spec.jobTemplate.spec.completionMode",
    ),
    ("K8S-COMPLETIONS-BINS", "k8s", _set(job, "completions", 5), "spec.jobTemplate.spec.completions"),
    ("K8S-PARALLELISM", "k8s", _set(job, "parallelism", 9), "spec.jobTemplate.spec.parallelism"),
    (
        "K8S-POLICY-ACTION",
        "k8s",
        lambda d: job(d)["podFailurePolicy"]["rules"][1].update(action="FailIdx"),
        "spec.jobTemplate.spec.podFailurePolicy.rules[1].action",
    ),
    (
        "K8S-FAILINDEX-BACKOFF",
        "k8s",
        _delete(job, "backoffLimitPerIndex"),
        "spec.jobTemplate.spec.backoffLimitPerIndex",
    ),
    (
        "K8S-EXIT2-FAILINDEX",
        "k8s",
        _rules_where(lambda r: r.get("onExitCodes", {}).get("containerName") != "drill"),
        "spec.jobTemplate.spec.podFailurePolicy.rules",
    ),
    (
        "K8S-DISRUPTION-IGNORE",
        "k8s",
        _rules_where(lambda r: r["action"] != "Ignore"),
        "spec.jobTemplate.spec.podFailurePolicy.rules",
    ),
    (
        "K8S-MAX-FAILED-INDEXES",
        "k8s",
        _set(job, "maxFailedIndexes", 1),
        "spec.jobTemplate.spec.maxFailedIndexes",
    ),
    (
        "K8S-RESTART-NEVER",
        "k8s",
        _set(pod, "restartPolicy", "OnFailure"),
        "spec.jobTemplate.spec.template.spec.restartPolicy",
    ),
    (
        "K8S-READ-ONLY-ROOT",
        "k8s",
        lambda d: drill(d)["securityContext"].update(readOnlyRootFilesystem=False),
        "spec.jobTemplate.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem",
    ),
    (
        "K8S-SCRATCH-EMPTYDIR",
        "k8s",
        _no_tmp_mount,
        "spec.jobTemplate.spec.template.spec.containers[0].volumeMounts",
    ),
    (
        "K8S-SECRETS-ENVFROM",
        "k8s",
        _literal_secret,
        "spec.jobTemplate.spec.template.spec.containers[0].env[4].value",
    ),
    (
        "K8S-NO-SERVICE-ACCOUNT",
        "k8s",
        _set(pod, "automountServiceAccountToken", True),
        "spec.jobTemplate.spec.template.spec.automountServiceAccountToken",
    ),
    (
        "K8S-CONCURRENCY",
        "k8s",
        _set(lambda d: d["spec"], "concurrencyPolicy", "Allow"),
        "spec.concurrencyPolicy",
    ),
    ("GHA-JOBS", "github", _delete(lambda d: d["jobs"], "merge"), "jobs.merge"),
    (
        "GHA-PLAN-OUTPUTS",
        "github",
        _delete(lambda d: d["jobs"]["plan"], "outputs"),
        "jobs.plan.outputs.indexes",
    ),
    (
        "GHA-FAIL-FAST",
        "github",
        _delete(lambda d: d["jobs"]["shard"]["strategy"], "fail-fast"),
        "jobs.shard.strategy.fail-fast",
    ),
    (
        "GHA-MAX-PARALLEL",
        "github",
        _set(lambda d: d["jobs"]["shard"]["strategy"], "max-parallel", 0),
        "jobs.shard.strategy.max-parallel",
    ),
    (
        "GHA-MATRIX-SIZE",
        "github",
        _set(lambda d: d["jobs"]["shard"]["strategy"]["matrix"], "index", list(range(257))),
        "jobs.shard.strategy.matrix.index",
    ),
    ("GHA-MERGE-ALWAYS", "github", _delete(lambda d: d["jobs"]["merge"], "if"), "jobs.merge.if"),
    (
        "GHA-ARTIFACT-UNIQUE",
        "github",
        _set(lambda d: d["jobs"]["shard"]["steps"][-1]["with"], "name", "drillbook-shard"),
        "jobs.shard.steps[4].with.name",
    ),
    ("GHA-SHARD-INDEX", "github", _no_shard_index, "jobs.shard.steps"),
    (
        "GHA-SECRETS",
        "github",
        _set(lambda d: shard_step(d)["env"], "ORDERS_DSN", "postgresql://x:pw@db/o"),
        "jobs.shard.steps[3].env.ORDERS_DSN",
    ),
    ("GL-JOBS", "gitlab", _delete(lambda d: d, "drillbook-merge"), "drillbook-merge"),
    (
        "GL-PARALLEL-BINS",
        "gitlab",
        _set(lambda d: d["drillbook-shard"], "parallel", 5),
        "drillbook-shard.parallel",
    ),
    (
        "GL-SHARD-INDEX",
        "gitlab",
        _set(
            lambda d: d["drillbook-shard"],
            "script",
            [
                '.venv/bin/drillbook run --plan "$DRILLBOOK_RUNS/$DRILLBOOK_GROUP/plan.json" '
                "--shard-index $CI_NODE_INDEX"
            ],
        ),
        "drillbook-shard.script",
    ),
    (
        "GL-MERGE-ALWAYS",
        "gitlab",
        _set(lambda d: d["drillbook-merge"], "when", "on_success"),
        "drillbook-merge.when",
    ),
    (
        "GL-ARTIFACT-UNIQUE",
        "gitlab",
        _set(lambda d: d["drillbook-shard"]["artifacts"], "name", "drillbook-shard"),
        "drillbook-shard.artifacts.name",
    ),
    (
        "GL-RETRY-INFRA",
        "gitlab",
        _set(lambda d: d["drillbook-shard"], "retry", 2),
        "drillbook-shard.retry.when",
    ),
    (
        "GL-SECRETS",
        "gitlab",
        _set(lambda d: d["variables"], "ORDERS_DSN", "postgresql://x:pw@db/o"),
        "variables.ORDERS_DSN",
    ),
]


def broken(engine: str, mutate: Callable[[dict[str, Any]], None]) -> dict[str, str]:
    doc = copy.deepcopy(rendered(engine))
    mutate(doc)
    return {FILES[engine]: yaml.safe_dump(doc, sort_keys=False)}


class TestRules:
    @pytest.mark.parametrize(("rule_id", "engine", "mutate", "field"), CASES, ids=[c[0] for c in CASES])
    def test_the_rule_names_the_broken_field(
        self, rule_id: str, engine: str, mutate: Callable[[dict[str, Any]], None], field: str
    ) -> None:
        findings = lint(engine, broken(engine, mutate), LintContext(bins=BINS, secret_names=SECRETS))
        assert (rule_id, field) in {(f.rule, f.field) for f in findings}, [str(f) for f in findings]
        [finding] = [f for f in findings if f.rule == rule_id and f.field == field]
        assert str(finding).startswith(f"{FILES[engine]}: {rule_id} {field}: ")

    def test_every_rule_has_a_negative_fixture(self) -> None:
        assert {r.id for r in RULES} == {c[0] for c in CASES}

    @pytest.mark.parametrize("engine", sorted(FILES))
    def test_a_clean_render_has_no_finding(self, engine: str) -> None:
        assert (
            lint(engine, broken(engine, lambda d: None), LintContext(bins=BINS, secret_names=SECRETS)) == []
        )

    def test_the_messages_say_what_was_found_and_expected(self) -> None:
        [finding] = [
            f
            for f in lint("k8s", broken("k8s", _set(job, "completionMode", "Indexd")), LintContext())
            if f.rule == "K8S-COMPLETION-MODE"
        ]
        assert finding.message.startswith("got 'Indexd', expected 'Indexed'")

    def test_a_file_that_is_not_yaml_is_a_finding(self) -> None:
        [finding] = lint("gitlab", {".gitlab-ci.yml": "a: [1\n"}, LintContext())
        assert (finding.rule, finding.field) == ("YAML", "(document)")
