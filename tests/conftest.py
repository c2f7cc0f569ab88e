"""Shared test wiring: where the sandbox's product cache lives for this test session."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

# A suite started as a background job (`bash .ci/run &`) inherits SIGINT ignored, and an ignored
# signal stays ignored across exec: every drillbook the tests spawn would then sleep through the
# Ctrl-C the interrupt tests send. A terminal's foreground job has it at its default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def sandbox_xdg_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An XDG cache home for this session: the sandbox product is built once, then reused."""
    return tmp_path_factory.getbasetemp() / "xdg-cache"


@pytest.fixture(scope="session")
def sandbox_cache_env(sandbox_xdg_cache: Path) -> dict[str, str]:
    """Environment for `drillbook` subprocesses so they share the session's sandbox cache."""
    return {"XDG_CACHE_HOME": str(sandbox_xdg_cache)}
