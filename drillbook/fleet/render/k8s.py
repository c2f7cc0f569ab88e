"""A CronJob whose Job is Indexed: one pod per bin of the plan (FLEET.md §6).

Shape and why:

- ``completionMode: Indexed``, ``completions`` = the plan's bins: pod *i* gets
  ``JOB_COMPLETION_INDEX=i``, which ``drillbook run --plan`` reads as its shard index. The plan
  is packed into exactly ``--bins`` bins, so both numbers come from one value here.
- ``backoffLimitPerIndex: 1`` and ``maxFailedIndexes`` = completions: one retry per bin for an
  infrastructure failure, and a failed bin never stops the others (the merge reports its items
  as ``error``).
- ``podFailurePolicy``: exit 2 (plan or config error) fails the index at once, since a retry
  cannot help; a disruption (eviction, preemption, node drain) does not spend the retry.
- Each pod first runs ``drillbook plan`` as an init container: create-only, so the first pod's
  plan wins and the others read it. The group is the Job's UID (the same label on every pod).
- No ServiceAccount: the pods never call the Kubernetes API (the group id comes through the
  downward API), so no token is mounted and no RBAC is needed.
- Read-only root filesystem, non-root user; the only writable places are two ``emptyDir``
  volumes, ``/scratch`` (restores, the attempt directory) and ``/tmp``.
- Secrets come from one Secret through ``envFrom``: the manifest names it, never a value.

Two files: ``cronjob.yaml`` (the schedule) and ``job.yaml`` (the same Job for a one-off run,
``kubectl create -f job.yaml``; ``kubectl create job --from=cronjob/NAME`` works as well).
"""

from __future__ import annotations

from typing import Any

from .settings import RenderSettings
from .yamltext import dump, header

CONTAINER = "drill"
PLANNER = "plan"
SHARD_EXIT_CONFIG = 2  # `drillbook run --plan`: plan/config error, retrying will not help
APP_DIR = "/app"  # where deploy/Dockerfile puts the suite (features, drillbook.toml)
SCRATCH = "/scratch"
UID = 10001  # deploy/Dockerfile's drillbook user
# Bounds of one fleet run (the design study's values): 12 h for every bin, the finished Job
# kept a week for its logs, a missed schedule started within an hour or not at all.
ACTIVE_DEADLINE_S = 12 * 3600
TTL_AFTER_FINISHED_S = 7 * 24 * 3600
STARTING_DEADLINE_S = 3600
GRACE_S = 30  # SIGTERM to SIGKILL: the shard stops its servers and exits (T9 measures it)
LABELS = {"app.kubernetes.io/name": "drillbook", "app.kubernetes.io/component": "fleet-shard"}
BINS_ANNOTATION = "drillbook.io/bins"
GROUP_LABEL = "metadata.labels['batch.kubernetes.io/controller-uid']"


def render(settings: RenderSettings) -> dict[str, str]:
    """``cronjob.yaml`` and ``job.yaml`` for these settings (same settings, same bytes)."""
    secrets = ", ".join(settings.secret_names) or "(none named in the config)"
    comment = header(
        "k8s",
        f"The Secret {settings.secret!r} must hold: {secrets}",
        "(plus the S3 credentials of the runs location, e.g. AWS_ACCESS_KEY_ID).",
    )
    metadata = {
        "name": settings.name,
        "labels": dict(LABELS),
        "annotations": {BINS_ANNOTATION: str(settings.bins)},
    }
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata,
        "spec": {
            "schedule": settings.schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",  # one fleet run per cadence at a time
            "startingDeadlineSeconds": STARTING_DEADLINE_S,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"metadata": {"labels": dict(LABELS)}, "spec": job_spec(settings)},
        },
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        # A fixed name (kubernetes-validate cannot read generateName-only objects): delete the
        # finished Job, or use `kubectl create job --from=cronjob/NAME`, to run again.
        "metadata": {
            "name": f"{settings.name}-once",
            "labels": dict(LABELS),
            "annotations": {BINS_ANNOTATION: str(settings.bins)},
        },
        "spec": job_spec(settings),
    }
    return {
        "cronjob.yaml": dump([cron], comment=comment),
        "job.yaml": dump([job], comment=comment + "# A one-off run: kubectl create -f job.yaml\n"),
    }


def job_spec(settings: RenderSettings) -> dict[str, Any]:
    """The Indexed Job: completions = bins, one retry per bin, exit 2 fails its index only."""
    return {
        "completionMode": "Indexed",
        "completions": settings.bins,
        "parallelism": settings.parallel,
        "backoffLimitPerIndex": 1,
        "maxFailedIndexes": settings.bins,
        "activeDeadlineSeconds": ACTIVE_DEADLINE_S,
        "ttlSecondsAfterFinished": TTL_AFTER_FINISHED_S,
        "podFailurePolicy": {
            "rules": [
                *(
                    {
                        "action": "FailIndex",
                        "onExitCodes": {
                            "containerName": name,
                            "operator": "In",
                            "values": [SHARD_EXIT_CONFIG],
                        },
                    }
                    for name in (PLANNER, CONTAINER)
                ),
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]
        },
        "template": {"metadata": {"labels": dict(LABELS)}, "spec": _pod_spec(settings)},
    }


def _pod_spec(settings: RenderSettings) -> dict[str, Any]:
    plan_url = f"{settings.group_dir}/$(GROUP)/"
    planner = _container(
        settings,
        PLANNER,
        [
            "plan",
            "--config",
            settings.config,
            *_cadence(settings),
            "--bins",
            str(settings.bins),
            "--out",
            plan_url,
        ],
    )
    drill = _container(
        settings,
        CONTAINER,
        ["run", "--config", settings.config, "--plan", f"{plan_url}plan.json", "--out", f"{SCRATCH}/out"],
    )
    # The attempt directory is named after the pod: a retried pod never overwrites an earlier
    # attempt's files (FLEET.md §4.4).
    drill["env"].insert(
        1, {"name": "DRILLBOOK_ATTEMPT", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}
    )
    drill["resources"] = {
        "requests": {"cpu": "1", "memory": "2Gi", "ephemeral-storage": "20Gi"},
        "limits": {"memory": "4Gi", "ephemeral-storage": "40Gi"},
    }
    return {
        "restartPolicy": "Never",  # podFailurePolicy requires it; the Job controller retries
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": GRACE_S,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [planner],
        "containers": [drill],
        "volumes": [
            {"name": "scratch", "emptyDir": {"sizeLimit": "40Gi"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        ],
    }


def _cadence(settings: RenderSettings) -> list[str]:
    return ["--cadence", settings.cadence] if settings.cadence else []


def _container(settings: RenderSettings, name: str, args: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "image": settings.image,
        "args": args,  # the image's entrypoint is `drillbook`; JOB_COMPLETION_INDEX is the shard index
        "workingDir": APP_DIR,
        "env": [
            {"name": "GROUP", "valueFrom": {"fieldRef": {"fieldPath": GROUP_LABEL}}},
            {"name": "TMPDIR", "value": "/tmp"},  # noqa: S108 - the pod's own emptyDir, not a shared /tmp
            {"name": "HOME", "value": SCRATCH},
        ],
        "envFrom": [{"secretRef": {"name": settings.secret}}],
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH}, {"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
    }
