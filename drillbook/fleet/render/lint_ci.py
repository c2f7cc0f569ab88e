"""drillbook's lint rules for the GitHub Actions workflow and the GitLab pipeline (see lint.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .lint import (
    _BINS_ARG,
    _SECRETISH,
    GITHUB_MATRIX_MAX,
    GITLAB_PARALLEL_MAX,
    Issue,
    LintContext,
    _get,
    _list,
    rule,
)

# -- GitHub Actions --------------------------------------------------------------------------------

_SECRET_REF = re.compile(r"\$\{\{\s*secrets\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _jobs(doc: dict[str, Any]) -> dict[str, Any]:
    jobs = doc.get("jobs")
    return jobs if isinstance(jobs, dict) else {}


def _steps(job: Any) -> list[tuple[int, dict[str, Any]]]:
    return [(i, s) for i, s in enumerate(_list(_get(job, "steps"))) if isinstance(s, dict)]


def _needs(job: Any) -> list[str]:
    needs = _get(job, "needs")
    return [needs] if isinstance(needs, str) else [str(n) for n in _list(needs)]


@rule("GHA-JOBS", "github", "the workflow has the plan, shard and merge jobs")
def _gha_jobs(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    for name in ("plan", "shard", "merge"):
        if not isinstance(_jobs(doc).get(name), dict):
            yield f"jobs.{name}", "missing"


@rule("GHA-PLAN-OUTPUTS", "github", "the shard matrix is the plan job's output of indexes")
def _gha_plan_outputs(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    jobs = _jobs(doc)
    if not _get(jobs, "plan", "outputs", "indexes"):
        yield "jobs.plan.outputs.indexes", "missing: the shard matrix has nothing to read"
    if "plan" not in _needs(jobs.get("shard")):
        yield "jobs.shard.needs", f"got {_get(jobs, 'shard', 'needs')!r}, expected it to include 'plan'"
    matrix = _get(jobs, "shard", "strategy", "matrix", "index")
    if isinstance(matrix, str) and "needs.plan.outputs.indexes" not in matrix:
        yield (
            "jobs.shard.strategy.matrix.index",
            f"got {matrix!r}, expected fromJSON(needs.plan.outputs.indexes)",
        )


@rule("GHA-FAIL-FAST", "github", "fail-fast is false: one failing bin does not cancel the others")
def _gha_fail_fast(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    value = _get(_jobs(doc), "shard", "strategy", "fail-fast")
    if value is not False:
        yield (
            "jobs.shard.strategy.fail-fast",
            (
                f"got {value!r}, expected false (GitHub's default true "
                "cancels every running shard when one fails)"
            ),
        )


@rule("GHA-MAX-PARALLEL", "github", "max-parallel is 1 to the bin count")
def _gha_max_parallel(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    value = _get(_jobs(doc), "shard", "strategy", "max-parallel")
    bins = ctx.bins or GITHUB_MATRIX_MAX
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= bins:
        yield "jobs.shard.strategy.max-parallel", f"got {value!r}, expected 1 to {bins}"


@rule("GHA-MATRIX-SIZE", "github", "the matrix holds at most 256 entries and as many as the plan's bins")
def _gha_matrix_size(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    jobs = _jobs(doc)
    matrix = _get(jobs, "shard", "strategy", "matrix", "index")
    if isinstance(matrix, list) and len(matrix) > GITHUB_MATRIX_MAX:
        yield (
            "jobs.shard.strategy.matrix.index",
            f"got {len(matrix)} entries, expected at most {GITHUB_MATRIX_MAX}",
        )
    for i, step in _steps(jobs.get("plan")):
        match = _BINS_ARG.search(str(step.get("run", "")))
        if not match:
            continue
        bins = int(match.group(1))
        if bins > GITHUB_MATRIX_MAX:
            yield (
                f"jobs.plan.steps[{i}].run",
                f"plans --bins {bins}: a matrix holds at most {GITHUB_MATRIX_MAX}",
            )
        if ctx.bins is not None and bins != ctx.bins:
            yield f"jobs.plan.steps[{i}].run", f"plans --bins {bins}, expected {ctx.bins}"


@rule("GHA-MERGE-ALWAYS", "github", "the merge needs the shards and runs if: always()")
def _gha_merge_always(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    merge = _jobs(doc).get("merge")
    condition = str(_get(merge, "if") or "")
    if "always()" not in condition:
        yield (
            "jobs.merge.if",
            (
                f"got {_get(merge, 'if')!r}, expected always(): without it one failed "
                "shard skips the merge and no report says so"
            ),
        )
    if "shard" not in _needs(merge):
        yield "jobs.merge.needs", f"got {_get(merge, 'needs')!r}, expected it to include 'shard'"


@rule("GHA-ARTIFACT-UNIQUE", "github", "artifact names are unique; a matrix job's names carry matrix.index")
def _gha_artifacts(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    seen: dict[str, str] = {}
    for job_name, job in sorted(_jobs(doc).items()):
        in_matrix = _get(job, "strategy", "matrix") is not None
        for i, step in _steps(job):
            if not str(step.get("uses", "")).startswith("actions/upload-artifact"):
                continue
            field = f"jobs.{job_name}.steps[{i}].with.name"
            name = str(_get(step, "with", "name") or "artifact")
            if in_matrix and "matrix." not in name:
                yield field, f"got {name!r}: every matrix job would upload the same name (add matrix.index)"
            if name in seen:
                yield field, f"got {name!r}, already uploaded at {seen[name]}"
            seen.setdefault(name, field)


@rule("GHA-SHARD-INDEX", "github", "each shard passes its matrix.index as the shard index")
def _gha_shard_index(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    shard = _jobs(doc).get("shard")
    for _, step in _steps(shard):
        if "--plan" in str(step.get("run", "")):
            text = str(step.get("run", "")) + " " + " ".join(str(v) for v in (step.get("env") or {}).values())
            if "matrix.index" in text and "--shard-index" in text:
                return
    yield "jobs.shard.steps", "no step runs `drillbook run --plan … --shard-index` with matrix.index"


@rule("GHA-SECRETS", "github", "secrets come from secrets.NAME, never a value")
def _gha_secrets(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    def check(env: Any, field: str) -> Iterator[Issue]:
        for name, value in (env or {}).items() if isinstance(env, dict) else ():
            if (name in ctx.secret_names or _SECRETISH.search(str(name))) and not _SECRET_REF.fullmatch(
                str(value)
            ):
                yield f"{field}.{name}", f"set literally: expected ${{{{ secrets.{name} }}}}"

    yield from check(doc.get("env"), "env")
    for job_name, job in sorted(_jobs(doc).items()):
        yield from check(_get(job, "env"), f"jobs.{job_name}.env")
        for i, step in _steps(job):
            yield from check(step.get("env"), f"jobs.{job_name}.steps[{i}].env")


# -- GitLab CI -------------------------------------------------------------------------------------

_SHARD_INDEX = "$((CI_NODE_INDEX-1))"
_INFRA_RETRY = {
    "runner_system_failure",
    "stuck_or_timeout_failure",
    "api_failure",
    "scheduler_failure",
    "runner_unsupported",
    "stale_schedule",
    "archived_failure",
    "unmet_prerequisites",
    "data_integrity_failure",
    "unknown_failure",
}


def _script(job: Any) -> str:
    script = _get(job, "script")
    return "\n".join(str(s) for s in _list(script)) if isinstance(script, list) else str(script or "")


@rule("GL-JOBS", "gitlab", "the pipeline has the plan, shard and merge jobs")
def _gl_jobs(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    for name in ("drillbook-plan", "drillbook-shard", "drillbook-merge"):
        if not isinstance(doc.get(name), dict):
            yield name, "missing"


@rule("GL-PARALLEL-BINS", "gitlab", "parallel equals the plan's bins (1 to 200)")
def _gl_parallel(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    parallel = _get(doc, "drillbook-shard", "parallel")
    if (
        not isinstance(parallel, int)
        or isinstance(parallel, bool)
        or not 1 <= parallel <= GITLAB_PARALLEL_MAX
    ):
        yield "drillbook-shard.parallel", f"got {parallel!r}, expected 1 to {GITLAB_PARALLEL_MAX} bins"
        return
    if ctx.bins is not None and parallel != ctx.bins:
        yield "drillbook-shard.parallel", f"got {parallel}, expected {ctx.bins} (the plan's bins)"
    match = _BINS_ARG.search(_script(doc.get("drillbook-plan")))
    if match and int(match.group(1)) != parallel:
        yield (
            "drillbook-plan.script",
            f"plans --bins {match.group(1)} but the shard job runs parallel: {parallel}",
        )


@rule("GL-SHARD-INDEX", "gitlab", "the shard index is CI_NODE_INDEX-1 (GitLab counts from 1)")
def _gl_shard_index(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    script = _script(doc.get("drillbook-shard"))
    if _SHARD_INDEX not in script.replace(" ", ""):
        yield (
            "drillbook-shard.script",
            (f"expected --shard-index {_SHARD_INDEX}: CI_NODE_INDEX counts from 1, the plan's bins from 0"),
        )


@rule("GL-MERGE-ALWAYS", "gitlab", "the merge runs when: always, after the shards")
def _gl_merge(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    merge = doc.get("drillbook-merge")
    if _get(merge, "when") != "always":
        yield (
            "drillbook-merge.when",
            (f"got {_get(merge, 'when')!r}, expected 'always': otherwise one failed shard skips the merge"),
        )
    needs = [n if isinstance(n, str) else _get(n, "job") for n in _list(_get(merge, "needs"))]
    if _get(merge, "needs") is not None and "drillbook-shard" not in needs:
        yield "drillbook-merge.needs", f"got {needs!r}, expected it to include 'drillbook-shard'"


@rule("GL-ARTIFACT-UNIQUE", "gitlab", "artifact names are unique; the parallel job's carry CI_NODE_INDEX")
def _gl_artifacts(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    seen: dict[str, str] = {}
    for job_name, job in sorted(doc.items()):
        name = _get(job, "artifacts", "name")
        if not isinstance(name, str):
            continue
        if _get(job, "parallel") is not None and "CI_NODE_INDEX" not in name:
            yield (
                f"{job_name}.artifacts.name",
                f"got {name!r}: every parallel job would use it (add $CI_NODE_INDEX)",
            )
        if name in seen:
            yield f"{job_name}.artifacts.name", f"got {name!r}, already used by {seen[name]}"
        seen.setdefault(name, job_name)


@rule("GL-RETRY-INFRA", "gitlab", "a shard is retried for runner failures only, never for its exit 2")
def _gl_retry(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    retry = _get(doc, "drillbook-shard", "retry")
    if retry is None:
        return
    when = _get(retry, "when")
    reasons = {when} if isinstance(when, str) else {str(w) for w in _list(when)}
    if isinstance(retry, int) or not reasons or not reasons <= _INFRA_RETRY:
        bad = sorted(reasons - _INFRA_RETRY) or ["always (the default)"]
        yield (
            "drillbook-shard.retry.when",
            (
                f"retries on {', '.join(bad)}: a plan/config error (exit 2) would "
                "be retried; expected runner failures only"
            ),
        )


@rule("GL-SECRETS", "gitlab", "secrets are masked CI/CD variables, never set in the file")
def _gl_secrets(doc: dict[str, Any], ctx: LintContext) -> Iterator[Issue]:
    for scope, variables in [
        ("variables", doc.get("variables")),
        *((f"{n}.variables", _get(j, "variables")) for n, j in sorted(doc.items())),
    ]:
        for name in (variables or {}) if isinstance(variables, dict) else ():
            if name in ctx.secret_names or _SECRETISH.search(str(name)):
                yield f"{scope}.{name}", "set in the file: expected a masked CI/CD variable"
