"""Whether the ``docker``-marked tests can run here, and the containers a drillbook process left.

``./bootstrap test`` starts a throwaway engine when it can (tests/support/docker_engine.py)
and, when it cannot, exports the reason as ``DRILLBOOK_DOCKER_UNAVAILABLE``: the skip says it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from drills.containers import docker_engine_answers
from drills.containers_env import OWNER_LABEL


def skip_reason() -> str | None:
    """None when an engine answers ``GET /_ping``; else why the docker tests skip."""
    if docker_engine_answers():
        return None
    why = os.environ.get("DRILLBOOK_DOCKER_UNAVAILABLE")
    if why:
        return f"no Docker engine: {why}"
    where = os.environ.get("DOCKER_HOST") or "/var/run/docker.sock"
    return (f"no Docker engine answers GET /_ping at {where} "
            "(./bootstrap test starts one when run as root)")


def requires_docker() -> pytest.MarkDecorator:
    reason = skip_reason()
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def drillbook_containers(client: Any, *, pid: int | None = None) -> list[Any]:
    """Containers (running or not) labelled as started by drillbook; by one process when ``pid``."""
    labels = [f"{OWNER_LABEL}=containers"]
    if pid is not None:
        labels.append(f"org.drillbook.pid={pid}")
    return list(client.containers.list(all=True, filters={"label": labels}))
