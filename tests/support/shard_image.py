"""The fleet shard image (deploy/Dockerfile) built on the test engine, which reaches no registry.

deploy/Dockerfile starts ``FROM python:3.11-slim-bookworm``. As with the other official images
(tests/support/docker_engine.py), a stand-in of that base is built here from Debian packages:
Python 3.11 with pip, plus what the Dockerfile would otherwise fetch with apt-get
(postgresql-15, redis-server), and drillbook's runtime dependencies (pinned by
constraints.txt) installed by this machine's pip, since containers have no route out. The
Dockerfile itself then runs unchanged: its apt step finds the servers there, and its pip step
builds drillbook from the copied suite with ``--no-index`` and a wheel of setuptools (the build
backend) placed in the build context. The base is cached like the other images.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from tests.support import docker_engine
from tests.support.docker_engine import REPO, Recipe

BASE = "python:3.11-slim-bookworm"
IMAGE = "drillbook-shard:test"
BUILD_TIMEOUT_S = 900


def _runtime_requirements() -> tuple[str, ...]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return tuple(project["dependencies"])


BASE_RECIPE = Recipe(
    image=BASE,
    packages=("python3", "python3-pip", "postgresql-15", "redis-server"),
    # Debian marks its Python externally managed (PEP 668); the official image does not.
    remove=("usr/lib/python3.11/EXTERNALLY-MANAGED", "var/lib/postgresql/15", "etc/postgresql/15"),
    pip=_runtime_requirements(),
    changes=(
        f"ENV PATH={docker_engine._PATH}",
        "ENV PYTHONPATH=/opt/python",
        "ENV LANG=C.UTF-8",
        'CMD ["python3"]',
    ),
)


def build_base(docker_host: str) -> None:
    """The stand-in base on the engine (its rootfs built once, cached by recipe hash).

    Not ``provide_images``: that prunes every cached tarball but the ones it was given.
    """
    mirror, suite = docker_engine.debian_source()
    cache = docker_engine.cache_dir()
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    tar = cache / f"{docker_engine._slug(BASE)}-{BASE_RECIPE.key(suite)}.tar"
    rebuilt = docker_engine._stale(BASE_RECIPE, tar)
    if rebuilt:
        for old in cache.glob(f"{docker_engine._slug(BASE)}-*.tar"):
            old.unlink()
        docker_engine.prefetch_debs([BASE_RECIPE], mirror, suite, debs)
        docker_engine.build_rootfs_tar(BASE_RECIPE, mirror, suite, tar, debs)
    known = subprocess.run(
        [docker_engine._docker_cli(), "-H", docker_host, "image", "inspect", "--format", "{{.Id}}", BASE],
        capture_output=True,
        text=True,
        check=False,
    )
    if known.returncode != 0 or rebuilt:
        docker_engine.import_image(BASE_RECIPE, tar, docker_host)


def build_shard_image(docker_host: str, *, tag: str = IMAGE) -> str:
    """``docker build -f deploy/Dockerfile`` of the suite's tracked files; returns the build log."""
    with tempfile.TemporaryDirectory(prefix="drillbook-shard-ctx-") as tmp:
        context = Path(tmp)
        tracked = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        for relative in tracked:
            source = REPO / relative
            if source.is_file() and not relative.startswith(("tests/", "bench/")):
                (context / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, context / relative)
        wheels = context / ".wheels"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                str(wheels),
                "setuptools>=77",
                # Debian's Python is 3.11.2: redis wants async-timeout below 3.11.3, which this
                # machine's newer 3.11 never installed into the base
                "async-timeout>=4.0.3",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
        result = subprocess.run(
            [
                docker_engine._docker_cli(),
                "-H",
                docker_host,
                "build",
                "-f",
                "deploy/Dockerfile",
                "-t",
                tag,
                "--build-arg",
                f"BASE={BASE}",
                "--build-arg",
                "PIP_INSTALL_OPTIONS=--no-index --find-links /app/.wheels",
                str(context),
            ],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"docker build failed ({result.returncode}):\n{result.stdout[-3000:]}"
                f"\n{result.stderr[-3000:]}"
            )
        return result.stdout + result.stderr
