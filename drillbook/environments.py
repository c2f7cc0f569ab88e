"""Choosing and opening the environment a run uses (ARCHITECTURE.md, Environments)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from checks.errors import ConfigError

Progress = Callable[[str], None]


def open_environment(*, choice: str, config_path: Path | None, progress: Progress) -> Any:
    """``auto``: live with a config, containers when Docker answers, else the local sandbox."""
    if choice == "auto":
        from drills.containers import select_provider

        choice = select_provider(config_given=config_path is not None)
    if choice == "live":
        if config_path is None:
            raise ConfigError("the live environment needs a config file (--config drillbook.toml)")
        from drills.config import load_config
        from drills.live import LiveEnvironment

        config = load_config(config_path)
        return LiveEnvironment(config, local_scratch=lambda: _local_scratch(progress))
    if choice == "containers":
        from drills.containers_env import ContainersEnvironment

        images: dict[str, str] = {}
        if config_path is not None:
            # A config given with --env containers supplies images ([containers.<target>] image).
            from drills.config import load_config

            images = dict(load_config(config_path).container_images)
        progress("starting the containers environment (testcontainers)")
        return ContainersEnvironment.start(progress=progress, images=images, canary=canary_requested())
    if choice == "local":
        from drills.local import LocalEnvironment

        progress("starting the local sandbox (PostgreSQL, Redis, S3, the products' services)")
        return LocalEnvironment.start(progress=progress, canary=canary_requested())
    raise ConfigError(f"unknown environment {choice!r} (use auto, local, live or containers)")


def _local_scratch(progress: Progress) -> Any:
    from drills.local import LocalScratch

    progress("starting a throwaway local PostgreSQL for scratch databases")
    return LocalScratch.start(progress=progress)


def canary_requested() -> bool:
    """``drillbook run --canary`` (DRILLBOOK_CANARY=1): the sandbox seeds its failing variants."""
    import os

    return os.environ.get("DRILLBOOK_CANARY", "").strip().lower() in {"1", "true", "yes"}
