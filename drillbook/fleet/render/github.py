"""A GitHub Actions workflow: plan → a matrix of shards → merge (FLEET.md §6, CI).

- ``plan`` writes the plan (``--bins`` bins) and outputs the JSON list of shard indexes;
- ``shard`` is a matrix over those indexes with ``fail-fast: false`` (one failing bin must not
  cancel the others) and ``max-parallel`` = the fleet's concurrency budget; each job passes its
  ``matrix.index`` as the shard index;
- ``merge`` needs ``shard`` and runs ``if: always()``, so failed or cancelled shards still give
  a merged report (their items as ``error``).

Results go to the runs location: with ``--runs s3://…`` every job reads and writes it directly;
otherwise a ``runs/`` directory travels as artifacts (the plan as ``drillbook-plan``, each
shard's commit as ``drillbook-shard-<index>``, the merged report as ``drillbook-report``).

Values from the command line reach the shell only through ``env:`` (never spliced into a
``run:`` line), and the config's secrets are mapped from ``secrets.NAME``, never written.
"""

from __future__ import annotations

from typing import Any

from .settings import RenderSettings
from .yamltext import dump, header

FILE = "drillbook-fleet.yml"
GROUP = "${{ github.run_id }}"  # one group per workflow run; a re-run of failed jobs resumes it
DRILLBOOK = ".venv/bin/drillbook"
CHECKOUT = "actions/checkout@v4"
UPLOAD = "actions/upload-artifact@v4"
DOWNLOAD = "actions/download-artifact@v4"
SHARD_TIMEOUT_MIN = 720
RETENTION_DAYS = 30


def render(settings: RenderSettings, *, job_image: str | None = None) -> dict[str, str]:
    """``drillbook-fleet.yml`` (put it under ``.github/workflows/``); ``job_image``: run every job
    in that container (``./bootstrap`` sets up in it) instead of on the runner itself."""
    comment = header(
        "github",
        "Copy to .github/workflows/. Repository secrets needed: "
        + (", ".join(settings.secret_names) or "(none named in the config)")
        + ".",
    )
    env: dict[str, str] = {
        "DRILLBOOK_RUNS": settings.group_dir,
        "DRILLBOOK_GROUP": GROUP,
        "DRILLBOOK_CONFIG": settings.config,
    }
    if settings.cadence:
        env["DRILLBOOK_CADENCE"] = settings.cadence
    workflow: dict[str, Any] = {
        "name": f"drillbook fleet ({settings.name})",
        "on": {"schedule": [{"cron": settings.schedule}], "workflow_dispatch": {}},
        "permissions": {"contents": "read"},
        # One fleet run of this workflow at a time; a second start waits rather than cancels.
        "concurrency": {"group": settings.name, "cancel-in-progress": False},
        "env": env,
        "jobs": {"plan": _plan(settings), "shard": _shard(settings), "merge": _merge(settings)},
    }
    if job_image:
        for job in workflow["jobs"].values():
            job["container"] = job_image
    return {FILE: dump([workflow], comment=comment)}


def _secrets_env(settings: RenderSettings) -> dict[str, str]:
    return {name: f"${{{{ secrets.{name} }}}}" for name in settings.secret_names}


def _with_env(step: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """``step`` with ``env:`` placed before ``run:`` when there is any."""
    if not env:
        return step
    run = step.pop("run")
    return {**step, "env": env, "run": run}


def _setup(settings: RenderSettings) -> list[dict[str, Any]]:
    return [
        {"uses": CHECKOUT},
        {"name": "Set up drillbook (locked dependencies, PostgreSQL binaries)", "run": "./bootstrap"},
    ]


def _plan(settings: RenderSettings) -> dict[str, Any]:
    cadence = ' --cadence "$DRILLBOOK_CADENCE"' if settings.cadence else ""
    steps = [
        *_setup(settings),
        _with_env(
            {
                "id": "plan",
                "name": f"Plan {settings.bins} bins",
                "run": f'{DRILLBOOK} plan --config "$DRILLBOOK_CONFIG"{cadence} --bins {settings.bins} '
                '--out "$DRILLBOOK_RUNS/$DRILLBOOK_GROUP/" --github-output',
            },
            _secrets_env(settings),
        ),
    ]
    if not settings.runs_in_s3:
        steps.append(
            _upload("drillbook-plan", "${{ env.DRILLBOOK_RUNS }}/${{ env.DRILLBOOK_GROUP }}/plan.json")
        )
    return {
        "runs-on": "ubuntu-latest",
        "timeout-minutes": 30,
        "outputs": {"indexes": "${{ steps.plan.outputs.indexes }}"},
        "steps": steps,
    }


def _shard(settings: RenderSettings) -> dict[str, Any]:
    steps = _setup(settings)
    if not settings.runs_in_s3:
        steps.append(
            {
                "uses": DOWNLOAD,
                "with": {
                    "name": "drillbook-plan",
                    "path": "${{ env.DRILLBOOK_RUNS }}/${{ env.DRILLBOOK_GROUP }}/",
                },
            }
        )
    steps.append(
        {
            "name": "Run shard ${{ matrix.index }}",
            # The index reaches the shell as an environment variable, not spliced into the line.
            "env": {
                "DRILLBOOK_SHARD_INDEX": "${{ matrix.index }}",
                # a re-run of a failed job is a new attempt: its files never overwrite the earlier one's
                "DRILLBOOK_ATTEMPT": "${{ github.run_attempt }}",
                **_secrets_env(settings),
            },
            "run": f'{DRILLBOOK} run --config "$DRILLBOOK_CONFIG" '
            '--plan "$DRILLBOOK_RUNS/$DRILLBOOK_GROUP/plan.json" --shard-index "$DRILLBOOK_SHARD_INDEX"',
        }
    )
    if not settings.runs_in_s3:
        steps.append(
            {
                **_upload(
                    "drillbook-shard-${{ matrix.index }}",
                    "${{ env.DRILLBOOK_RUNS }}/${{ env.DRILLBOOK_GROUP }}/shards/",
                    # a shard that died before committing has nothing to carry:
                    # the merge names its items; the upload need not fail too
                    missing="warn",
                ),
                "if": "always()",
            }
        )
    return {
        "needs": "plan",
        "runs-on": "ubuntu-latest",
        "timeout-minutes": SHARD_TIMEOUT_MIN,
        "strategy": {
            "fail-fast": False,
            "max-parallel": settings.parallel,
            "matrix": {"index": "${{ fromJSON(needs.plan.outputs.indexes) }}"},
        },
        "steps": steps,
    }


def _merge(settings: RenderSettings) -> dict[str, Any]:
    group = "${{ env.DRILLBOOK_RUNS }}/${{ env.DRILLBOOK_GROUP }}"
    steps = _setup(settings)
    if not settings.runs_in_s3:
        steps += [
            {"uses": DOWNLOAD, "with": {"name": "drillbook-plan", "path": f"{group}/"}},
            {
                "uses": DOWNLOAD,
                "with": {"pattern": "drillbook-shard-*", "merge-multiple": True, "path": f"{group}/shards/"},
            },
        ]
    steps.append(
        _with_env(
            {
                "name": "Merge the shards into one report and one ledger batch",
                "run": f'{DRILLBOOK} report merge --config "$DRILLBOOK_CONFIG" '
                '"$DRILLBOOK_RUNS/$DRILLBOOK_GROUP/"',
            },
            _secrets_env(settings),
        )
    )
    if not settings.runs_in_s3:
        steps.append(
            {
                **_upload(
                    "drillbook-report",
                    "\n".join(f"{group}/{name}" for name in ("results.json", "report.html", "junit.xml")),
                ),
                "if": "always()",
            }
        )
    return {
        "needs": ["plan", "shard"],
        # always(): a failed or cancelled shard still gets its items reported as error.
        "if": "${{ always() && needs.plan.result == 'success' }}",
        "runs-on": "ubuntu-latest",
        "timeout-minutes": 60,
        "steps": steps,
    }


def _upload(name: str, path: str, *, missing: str = "error") -> dict[str, Any]:
    return {
        "uses": UPLOAD,
        "with": {"name": name, "path": path, "retention-days": RETENTION_DAYS, "if-no-files-found": missing},
    }
