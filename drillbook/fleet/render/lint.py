"""drillbook's own rules for rendered manifests and workflows: what the schemas miss.

``kubernetes-validate --strict`` and ``check-jsonschema`` check the *shape* of a document. They
accept ``completionMode: Indexd`` (a free string in the schema), a ``FailIndex`` rule without
``backoffLimitPerIndex`` (the API server refuses it, the schema does not), ``completions`` that
differ from the plan's bins, a matrix with ``fail-fast`` left at its default ``true``, or a
merge job that is skipped as soon as one shard fails. Each of those silently loses or never
reports work items, so each is a rule here.

A rule is a function registered with an id, the engine it applies to and a one-line summary;
it yields ``(field, message)`` pairs where ``field`` is the dotted path in the document and
the message says what it found and what it expected. :func:`lint` runs every rule of an engine
over rendered files and returns :class:`Finding` objects; ``drillbook fleet render`` refuses
(exit 2) to write output with any finding, and every rule has a negative test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from .settings import MAX_BINS
from .yamltext import load

Issue = tuple[str, str]  # (field, message)


@dataclass(frozen=True)
class LintContext:
    """What the rendered files must agree with: the plan's bin count and the secrets' names."""

    bins: int | None = None
    secret_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    """One rule broken in one file, at one field."""

    rule: str
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.rule} {self.field}: {self.message}"


@dataclass(frozen=True)
class Rule:
    id: str
    engine: str
    summary: str
    check: Callable[[dict[str, Any], LintContext], Iterator[Issue]]


RULES: list[Rule] = []
# A name that holds a credential when it is set literally in a manifest or workflow.
_SECRETISH = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|DSN|CREDENTIAL|PRIVATE_KEY|ACCESS_KEY)", re.I)
_BINS_ARG = re.compile(r"--bins[ =](\d+)")
GITHUB_MATRIX_MAX = MAX_BINS["github"]
GITLAB_PARALLEL_MAX = MAX_BINS["gitlab"]


def rule(
    rule_id: str, engine: str, summary: str
) -> Callable[
    [Callable[[dict[str, Any], LintContext], Iterator[Issue]]],
    Callable[[dict[str, Any], LintContext], Iterator[Issue]],
]:
    """Register a check under ``rule_id`` for ``engine``."""

    def register(
        check: Callable[[dict[str, Any], LintContext], Iterator[Issue]],
    ) -> Callable[[dict[str, Any], LintContext], Iterator[Issue]]:
        RULES.append(Rule(rule_id, engine, summary, check))
        return check

    return register


def lint(engine: str, files: Mapping[str, str], context: LintContext) -> list[Finding]:
    """Every finding of every rule of ``engine`` over the rendered ``files`` (name -> text)."""
    findings: list[Finding] = []
    for name, text in sorted(files.items()):
        try:
            documents = load(text)
        except yaml.YAMLError as exc:
            findings.append(Finding("YAML", name, "(document)", f"not YAML: {exc}"))
            continue
        for document in documents:
            if not isinstance(document, dict):
                findings.append(
                    Finding(
                        "YAML", name, "(document)", f"got a {type(document).__name__}, expected a mapping"
                    )
                )
                continue
            for entry in RULES:
                if entry.engine == engine:
                    findings.extend(
                        Finding(entry.id, name, field, message)
                        for field, message in entry.check(document, context)
                    )
    return findings


def _get(data: Any, *path: str | int) -> Any:
    """``data[path0][path1]…`` or None where any step is missing."""
    for key in path:
        if isinstance(data, dict) and isinstance(key, str):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# -- Kubernetes ------------------------------------------------------------------------------------

_POLICY_ACTIONS = ("FailJob", "FailIndex", "Ignore", "Count")


def _job(doc: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(dotted prefix, Job spec) of a CronJob or a Job; None for other kinds."""
    if doc.get("kind") == "CronJob":
        spec = _get(doc, "spec", "jobTemplate", "spec")
        return ("spec.jobTemplate.spec", spec) if isinstance(spec, dict) else ("spec.jobTemplate.spec", {})
    if doc.get("kind") == "Job":
        spec = doc.get("spec")
        return ("spec", spec) if isinstance(spec, dict) else ("spec", {})
    return None


def _containers(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    pod = _get(spec, "template", "spec") or {}
    found: list[tuple[str, dict[str, Any]]] = []
    for kind in ("initContainers", "containers"):
        for i, container in enumerate(_list(pod.get(kind))):
            if isinstance(container, dict):
                found.append((f"template.spec.{kind}[{i}]", container))
    return found


@rule("K8S-KIND", "k8s", "a fleet manifest is a batch/v1 CronJob or Job")
def _k8s_kind(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    # kubernetes-validate only *warns* about a kind it has no schema for, and passes the file.
    if doc.get("kind") not in ("CronJob", "Job"):
        yield "kind", f"got {doc.get('kind')!r}, expected 'CronJob' or 'Job'"
    elif doc.get("apiVersion") != "batch/v1":
        yield "apiVersion", f"got {doc.get('apiVersion')!r}, expected 'batch/v1'"


@rule("K8S-COMPLETION-MODE", "k8s", "completionMode is Indexed (the shard index is the completion index)")
def _k8s_completion_mode(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    if (job := _job(doc)) and job[1].get("completionMode") != "Indexed":
        yield (
            f"{job[0]}.completionMode",
            (
                f"got {job[1].get('completionMode')!r}, expected 'Indexed' "
                "(NonIndexed pods get no JOB_COMPLETION_INDEX)"
            ),
        )


@rule("K8S-COMPLETIONS-BINS", "k8s", "completions equals the plan's bins (and the plan's --bins)")
def _k8s_completions(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    if not (job := _job(doc)):
        return
    prefix, spec = job
    completions = spec.get("completions")
    if not isinstance(completions, int) or isinstance(completions, bool) or completions < 1:
        yield f"{prefix}.completions", f"got {completions!r}, expected a positive number of bins"
        return
    if ctx.bins is not None and completions != ctx.bins:
        yield f"{prefix}.completions", f"got {completions}, expected {ctx.bins} (the plan's bins)"
    for field, container in _containers(spec):
        args = " ".join(str(a) for a in _list(container.get("args")))
        match = _BINS_ARG.search(args)
        if match and int(match.group(1)) != completions:
            yield (
                f"{prefix}.{field}.args",
                f"plans --bins {match.group(1)} but completions is "
                f"{completions}: bins past the last index would never run",
            )


@rule("K8S-PARALLELISM", "k8s", "parallelism is 1 to completions")
def _k8s_parallelism(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    if not (job := _job(doc)):
        return
    prefix, spec = job
    parallelism, completions = spec.get("parallelism"), spec.get("completions")
    if (
        not isinstance(parallelism, int)
        or parallelism < 1
        or (isinstance(completions, int) and parallelism > completions)
    ):
        yield f"{prefix}.parallelism", f"got {parallelism!r}, expected 1 to completions ({completions!r})"


@rule("K8S-POLICY-ACTION", "k8s", "podFailurePolicy actions are FailJob, FailIndex, Ignore or Count")
def _k8s_policy_action(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    if not (job := _job(doc)):
        return
    for i, entry in enumerate(_list(_get(job[1], "podFailurePolicy", "rules"))):
        action = _get(entry, "action")
        if action not in _POLICY_ACTIONS:
            yield (
                f"{job[0]}.podFailurePolicy.rules[{i}].action",
                f"got {action!r}, expected one of {', '.join(_POLICY_ACTIONS)}",
            )


@rule("K8S-FAILINDEX-BACKOFF", "k8s", "a FailIndex rule needs backoffLimitPerIndex")
def _k8s_failindex_backoff(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    if not (job := _job(doc)):
        return
    prefix, spec = job
    rules = _list(_get(spec, "podFailurePolicy", "rules"))
    if any(_get(r, "action") == "FailIndex" for r in rules) and not isinstance(
        spec.get("backoffLimitPerIndex"), int
    ):
        yield (
            f"{prefix}.backoffLimitPerIndex",
            "missing: the API server refuses a FailIndex rule without it (expected e.g. 1)",
        )


@rule("K8S-EXIT2-FAILINDEX", "k8s", "exit 2 (plan/config error) of the drill container fails its index")
def _k8s_exit2(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    if not (job := _job(doc)):
        return
    prefix, spec = job
    names = {str(c.get("name")) for _, c in _containers(spec)}
    covered = False
    for i, entry in enumerate(_list(_get(spec, "podFailurePolicy", "rules"))):
        codes = _get(entry, "onExitCodes")
        if not isinstance(codes, dict):
            continue
        name = codes.get("containerName")
        if name is not None and name not in names:
            yield (
                f"{prefix}.podFailurePolicy.rules[{i}].onExitCodes.containerName",
                f"got {name!r}, expected one of the pod's containers ({', '.join(sorted(names))})",
            )
        if (
            _get(entry, "action") == "FailIndex"
            and codes.get("operator") == "In"
            and 2 in _list(codes.get("values"))
            and name in (None, "drill")
        ):
            covered = True
    if not covered:
        yield (
            f"{prefix}.podFailurePolicy.rules",
            "no FailIndex rule for exit code 2 of container 'drill': a plan error would be retried",
        )


@rule("K8S-DISRUPTION-IGNORE", "k8s", "a disruption (eviction, preemption) does not spend the retry")
def _k8s_disruption(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    if not (job := _job(doc)):
        return
    ignored = any(
        _get(r, "action") == "Ignore"
        and any(
            _get(c, "type") == "DisruptionTarget" and _get(c, "status") == "True"
            for c in _list(_get(r, "onPodConditions"))
        )
        for r in _list(_get(job[1], "podFailurePolicy", "rules"))
    )
    if not ignored:
        yield (
            f"{job[0]}.podFailurePolicy.rules",
            "no Ignore rule on pod condition DisruptionTarget=True: a node drain would use up a bin's retry",
        )


@rule(
    "K8S-MAX-FAILED-INDEXES", "k8s", "maxFailedIndexes equals completions: a failed bin never stops the rest"
)
def _k8s_max_failed(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    if (job := _job(doc)) and job[1].get("maxFailedIndexes") != job[1].get("completions"):
        yield (
            f"{job[0]}.maxFailedIndexes",
            f"got {job[1].get('maxFailedIndexes')!r}, expected completions ({job[1].get('completions')!r})",
        )


@rule("K8S-RESTART-NEVER", "k8s", "restartPolicy is Never (podFailurePolicy requires it)")
def _k8s_restart(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    if (job := _job(doc)) and _get(job[1], "template", "spec", "restartPolicy") != "Never":
        yield (
            f"{job[0]}.template.spec.restartPolicy",
            f"got {_get(job[1], 'template', 'spec', 'restartPolicy')!r}, expected 'Never'",
        )


@rule("K8S-READ-ONLY-ROOT", "k8s", "every container runs as non-root on a read-only root filesystem")
def _k8s_read_only(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    if not (job := _job(doc)):
        return
    prefix, spec = job
    pod_non_root = _get(spec, "template", "spec", "securityContext", "runAsNonRoot") is True
    for field, container in _containers(spec):
        security = container.get("securityContext") or {}
        if security.get("readOnlyRootFilesystem") is not True:
            yield (
                f"{prefix}.{field}.securityContext.readOnlyRootFilesystem",
                f"got {security.get('readOnlyRootFilesystem')!r}, expected true",
            )
        if not (pod_non_root or security.get("runAsNonRoot") is True):
            yield f"{prefix}.{field}.securityContext.runAsNonRoot", "not set: expected true"


@rule("K8S-SCRATCH-EMPTYDIR", "k8s", "/scratch and /tmp are emptyDir volumes in every container")
def _k8s_scratch(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    if not (job := _job(doc)):
        return
    prefix, spec = job
    empty = {
        v.get("name")
        for v in _list(_get(spec, "template", "spec", "volumes"))
        if isinstance(v, dict) and "emptyDir" in v
    }
    for field, container in _containers(spec):
        mounted = {
            m.get("mountPath"): m.get("name")
            for m in _list(container.get("volumeMounts"))
            if isinstance(m, dict)
        }
        for path in ("/scratch", "/tmp"):  # noqa: S108 - paths inside the pod, checked not used
            if mounted.get(path) not in empty:
                yield (
                    f"{prefix}.{field}.volumeMounts",
                    f"{path} is not an emptyDir mount: the read-only root leaves nowhere to write",
                )


@rule("K8S-SECRETS-ENVFROM", "k8s", "secrets come from a Secret through envFrom, never as a value")
def _k8s_secrets(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    if not (job := _job(doc)):
        return
    prefix, spec = job
    for field, container in _containers(spec):
        for i, env in enumerate(_list(container.get("env"))):
            name = str(_get(env, "name"))
            if "value" in env and (name in ctx.secret_names or _SECRETISH.search(name)):
                yield (
                    f"{prefix}.{field}.env[{i}].value",
                    f"{name} is set literally: expected it from the Secret",
                )
        if not any(_get(e, "secretRef", "name") for e in _list(container.get("envFrom"))):
            yield f"{prefix}.{field}.envFrom", "no secretRef: the shard would run without its secrets"


@rule("K8S-NO-SERVICE-ACCOUNT", "k8s", "the pods need no ServiceAccount and mount no API token")
def _k8s_service_account(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    if not (job := _job(doc)):
        return
    pod = _get(job[1], "template", "spec") or {}
    if pod.get("automountServiceAccountToken") is not False:
        yield (
            f"{job[0]}.template.spec.automountServiceAccountToken",
            f"got {pod.get('automountServiceAccountToken')!r}, expected false (shards never call the API)",
        )
    if "serviceAccountName" in pod:
        yield f"{job[0]}.template.spec.serviceAccountName", "set: expected none (no RBAC is needed)"


@rule("K8S-CONCURRENCY", "k8s", "a CronJob starts one fleet run at a time")
def _k8s_concurrency(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    if doc.get("kind") == "CronJob" and _get(doc, "spec", "concurrencyPolicy") != "Forbid":
        yield "spec.concurrencyPolicy", f"got {_get(doc, 'spec', 'concurrencyPolicy')!r}, expected 'Forbid'"


from . import lint_ci as _lint_ci  # noqa: E402,F401 - registers the GitHub and GitLab rules
