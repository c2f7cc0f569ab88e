"""The Docker engine the ``docker``-marked tests use, whether it answers, and what drillbook left on it.

``./bootstrap test`` starts a throwaway engine when it can (tests/support/docker_engine.py)
and exports its address as ``DRILLBOOK_TEST_DOCKER_HOST`` — not ``DOCKER_HOST``: with
``DOCKER_HOST`` answering, every other test's ``drillbook run`` would auto-select the
containers environment instead of the local sandbox the suite is written against. The
docker tests point ``DOCKER_HOST`` at it themselves (:func:`pointed_at_test_engine`).
When bootstrap cannot start one it exports the reason as ``DRILLBOOK_DOCKER_UNAVAILABLE``,
and the skips say it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from drills.containers import docker_engine_answers
from drills.containers_env import OWNER_LABEL


def engine_host() -> str | None:
    """``DRILLBOOK_TEST_DOCKER_HOST`` (bootstrap's engine), else ``DOCKER_HOST``, else None (the default
    socket)."""
    return os.environ.get("DRILLBOOK_TEST_DOCKER_HOST") or os.environ.get("DOCKER_HOST") or None


def skip_reason() -> str | None:
    """None when the test engine answers ``GET /_ping``; else why the docker tests skip."""
    host = engine_host()
    if docker_engine_answers(docker_host=host):
        return None
    why = os.environ.get("DRILLBOOK_DOCKER_UNAVAILABLE")
    if why:
        return f"no Docker engine: {why}"
    return (f"no Docker engine answers GET /_ping at {host or 'unix:///var/run/docker.sock'} "
            "(./bootstrap test starts one when run as root)")


def requires_docker() -> pytest.MarkDecorator:
    reason = skip_reason()
    return pytest.mark.skipif(reason is not None, reason=reason or "")


@contextmanager
def pointed_at_test_engine() -> Iterator[None]:
    """``DOCKER_HOST`` set to the test engine, for this process and the drillbook it spawns; then restored."""
    with pytest.MonkeyPatch.context() as patch:
        host = engine_host()
        if host:
            patch.setenv("DOCKER_HOST", host)
        yield


def left_behind(client: Any) -> list[Any]:
    """drillbook containers whose process has ended: what a finished run left behind.

    Tests run on several pytest-xdist workers at once, so another module's live containers may
    exist meanwhile; they belong to a process that is still running and are not leftovers.
    """
    import psutil

    gone = []
    for container in drillbook_containers(client):
        pid = (container.labels or {}).get("org.drillbook.pid", "")
        if not pid.isdigit() or not psutil.pid_exists(int(pid)):
            gone.append(container)
    return gone


def drillbook_containers(client: Any, *, pid: int | None = None) -> list[Any]:
    """Containers (running or not) labelled as started by drillbook; by one process when ``pid``."""
    labels = [f"{OWNER_LABEL}=containers"]
    if pid is not None:
        labels.append(f"org.drillbook.pid={pid}")
    return list(client.containers.list(all=True, filters={"label": labels}))
