"""A GitLab CI pipeline: plan → ``parallel:`` shards → merge (FLEET.md §6, CI).

- ``drillbook-shard`` runs ``parallel: <bins>`` copies; GitLab numbers them
  ``CI_NODE_INDEX`` = 1…N, the plan's bins are 0…N-1, hence ``$((CI_NODE_INDEX-1))``;
- ``drillbook-merge`` runs ``when: always`` after the shards, so a failed shard still gives a
  merged report (its items as ``error``);
- a shard is retried once for runner failures only: exit 2 (plan/config error) is not;
- with a directory runs location (no ``--runs s3://…``) the ``runs/`` tree travels as artifacts
  (``drillbook-plan``, ``drillbook-shard-<n>``, ``drillbook-report``).

GitLab has no schedule in the file: create a pipeline schedule with the rendered cron (the
header says which). Secrets are the project's masked CI/CD variables; the file names none.
"""

from __future__ import annotations

from typing import Any

from .settings import RenderSettings
from .yamltext import dump, header

FILE = ".gitlab-ci.yml"
DRILLBOOK = ".venv/bin/drillbook"
DEFAULT_JOB_IMAGE = "python:3.11-bookworm"  # what ./bootstrap sets up on: Debian 12, Python 3.11, root
SHARD_INDEX = "$((CI_NODE_INDEX-1))"
GROUP = "$CI_PIPELINE_ID"
EXPIRE = "30 days"


def render(settings: RenderSettings, *, job_image: str | None = None) -> dict[str, str]:
    """``.gitlab-ci.yml`` for these settings (same settings, same bytes)."""
    secrets = ", ".join(settings.secret_names) or "(none named in the config)"
    comment = header(
        "gitlab",
        f"Pipeline schedule (CI/CD > Schedules, UTC): {settings.schedule}",
        f"Masked CI/CD variables needed: {secrets}.",
    )
    group = "$DRILLBOOK_RUNS/$DRILLBOOK_GROUP"
    variables: dict[str, str] = {
        "DRILLBOOK_RUNS": settings.group_dir,
        "DRILLBOOK_GROUP": GROUP,
        "DRILLBOOK_CONFIG": settings.config,
    }
    cadence = ""
    if settings.cadence:
        variables["DRILLBOOK_CADENCE"] = settings.cadence
        cadence = ' --cadence "$DRILLBOOK_CADENCE"'
    artifacts = not settings.runs_in_s3
    plan: dict[str, Any] = {
        "stage": "plan",
        "script": [
            f'{DRILLBOOK} plan --config "$DRILLBOOK_CONFIG"{cadence} --bins {settings.bins} --out "{group}/"'
        ],
    }
    if artifacts:
        plan["artifacts"] = {"name": "drillbook-plan", "paths": [f"{group}/plan.json"], "expire_in": EXPIRE}
    shard: dict[str, Any] = {
        "stage": "shard",
        "needs": ["drillbook-plan"],
        "parallel": settings.bins,
        # each retry is a job of its own: its files never overwrite an earlier attempt's
        "variables": {"DRILLBOOK_ATTEMPT": "$CI_JOB_ID"},
        "script": [
            f'{DRILLBOOK} run --config "$DRILLBOOK_CONFIG" --plan "{group}/plan.json" '
            f"--shard-index {SHARD_INDEX}"
        ],
        # Runner trouble is retried once; a script's exit 2 (plan/config error) is not.
        "retry": {"max": 1, "when": ["runner_system_failure", "stuck_or_timeout_failure", "api_failure"]},
        "timeout": "12h",
    }
    if artifacts:
        shard["artifacts"] = {
            "name": "drillbook-shard-$CI_NODE_INDEX",
            "when": "always",
            "paths": [f"{group}/shards/"],
            "expire_in": EXPIRE,
        }
    merge: dict[str, Any] = {
        "stage": "merge",
        "needs": [
            {"job": "drillbook-plan", "artifacts": artifacts},
            {"job": "drillbook-shard", "artifacts": artifacts},
        ],
        "when": "always",  # failed shards still get a merged report: their items as error
        "script": [f'{DRILLBOOK} report merge --config "$DRILLBOOK_CONFIG" "{group}/"'],
    }
    if artifacts:
        merge["artifacts"] = {
            "name": "drillbook-report",
            "when": "always",
            "expire_in": EXPIRE,
            "paths": [f"{group}/{name}" for name in ("results.json", "report.html", "junit.xml")],
            "reports": {"junit": f"{group}/junit.xml"},
        }
    pipeline: dict[str, Any] = {
        "workflow": {
            "rules": [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}, {"if": '$CI_PIPELINE_SOURCE == "web"'}]
        },
        "stages": ["plan", "shard", "merge"],
        "variables": variables,
        "default": {"image": job_image or DEFAULT_JOB_IMAGE, "before_script": ["./bootstrap"]},
        "drillbook-plan": plan,
        "drillbook-shard": shard,
        "drillbook-merge": merge,
    }
    return {FILE: dump([pipeline], comment=comment)}
