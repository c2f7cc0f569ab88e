"""Choosing and opening the environment a run uses (ARCHITECTURE.md, Environments)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from checks.errors import ConfigError, MissingPackage

Progress = Callable[[str], None]

# The Python package each environment needs beyond drillbook's always-imported core: a regular
# dependency since issue 11, but a venv built from an older pyproject (or pruned by hand) can
# still lack it, and that must be a named usage error, not pytest's INTERNALERROR.
_ENVIRONMENT_PACKAGES = {"containers": "testcontainers"}


def resolve_environment(choice: str, *, config_given: bool) -> str:
    """The environment a run will use, decided before any server starts (exit 2 when unusable).

    ``auto``: live with a config, containers when a Docker engine answers, else local. The
    chosen environment's package is imported here, so a missing one stops the run in its first
    second with :class:`MissingPackage` rather than inside pytest.
    """
    if choice == "auto":
        from drills.containers import select_provider

        choice = select_provider(config_given=config_given)
    require_environment_package(choice)
    return choice


def require_environment_package(choice: str) -> None:
    """Import the package environment ``choice`` needs; :class:`MissingPackage` names it if absent."""
    package = _ENVIRONMENT_PACKAGES.get(choice)
    if package is None:
        return
    try:
        importlib.import_module(package)
    except ImportError as exc:
        raise MissingPackage(
            f"the {choice} environment needs the Python package {package!r}, which is not "
            f"installed in this environment ({exc})",
            package=package,
            hint=f"run ./bootstrap again (it installs {package} from constraints.txt), or "
                 f"`.venv/bin/pip install -c constraints.txt {package}`; or choose --env local",
        ) from exc


def open_environment(*, choice: str, config_path: Path | None, progress: Progress) -> Any:
    """``auto``: live with a config, containers when Docker answers, else the local sandbox."""
    choice = resolve_environment(choice, config_given=config_path is not None)
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
