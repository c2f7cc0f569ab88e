"""tests/support/docker_engine.py without an engine: cache keys, staleness, and refusing politely."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support import docker_engine
from tests.support.docker_engine import RECIPES, Recipe


def _recipe(image: str) -> Recipe:
    return next(recipe for recipe in RECIPES if recipe.image == image)


class TestRecipeKey:
    def test_same_recipe_same_key(self) -> None:
        """The key is a pure function of the recipe and the suite: a second run finds the tarball."""
        recipe = _recipe("postgres:15")
        assert recipe.key("bookworm") == dataclasses.replace(recipe).key("bookworm")

    @pytest.mark.parametrize("change", [
        {"packages": ("postgresql-16",)},
        {"changes": ('CMD ["postgres", "-c", "fsync=off"]',)},
        {"files": {"usr/local/bin/docker-entrypoint.sh": ("#!/bin/sh\nexec \"$@\"\n", 0o755)}},
    ], ids=["packages", "import-changes", "entrypoint"])
    def test_anything_that_shapes_the_image_changes_the_key(self, change: dict[str, object]) -> None:
        """Packages, CMD/ENV/EXPOSE changes and the entrypoint's text are all in the key."""
        recipe = _recipe("postgres:15")
        assert dataclasses.replace(recipe, **change).key("bookworm") != recipe.key("bookworm")  # type: ignore[arg-type]

    def test_the_suite_is_in_the_key(self) -> None:
        recipe = _recipe("redis:7")
        assert recipe.key("bookworm") != recipe.key("trixie")


class TestStaleness:
    def test_missing_tarball_is_stale(self, tmp_path: Path) -> None:
        assert docker_engine._stale(_recipe("redis:7"), tmp_path / "redis-7-x.tar")

    def test_a_debian_only_image_is_fresh_once_built(self, tmp_path: Path) -> None:
        tar = tmp_path / "redis-7-x.tar"
        tar.write_bytes(b"")
        assert not docker_engine._stale(_recipe("redis:7"), tar)

    def test_a_python_image_follows_the_pins_of_what_it_holds(self, tmp_path: Path) -> None:
        """Rebuilt when constraints.txt pins one of its distributions differently; other pins do not count."""
        moto = _recipe("motoserver/moto:latest")
        tar = tmp_path / "moto.tar"
        tar.write_bytes(b"")
        pinned = docker_engine._constraints()
        pins = {"moto": pinned["moto"], "not-in-constraints": "1"}
        docker_engine._pins_file(tar).write_text(json.dumps(pins))
        assert not docker_engine._stale(moto, tar)
        docker_engine._pins_file(tar).write_text(json.dumps({"moto": "0.0.1"}))
        assert docker_engine._stale(moto, tar)

    def test_a_python_image_without_its_pins_is_rebuilt(self, tmp_path: Path) -> None:
        tar = tmp_path / "moto.tar"
        tar.write_bytes(b"")
        assert docker_engine._stale(_recipe("motoserver/moto:latest"), tar)

    def test_installed_distributions_are_read_by_normalised_name(self, tmp_path: Path) -> None:
        (tmp_path / "flask_cors-6.0.5.dist-info").mkdir()
        (tmp_path / "PyYAML-6.0.3.dist-info").mkdir()
        assert docker_engine._installed(tmp_path) == {"flask-cors": "6.0.5", "pyyaml": "6.0.3"}


class TestUp:
    @pytest.mark.skipif(shutil.which("runuser") is None, reason="needs runuser to drop root")
    def test_not_root_is_unavailable_with_the_reason(self) -> None:
        """Run as a user who is not root: exit 3, the reason in STATE/unavailable, nothing started."""
        scratch = Path(tempfile.mkdtemp(prefix="drillbook-engine-test-", dir="/tmp"))
        try:
            scratch.chmod(0o777)
            state = scratch / "state"
            # A copy the other user can read whatever the checkout's permissions (stdlib only).
            script = scratch / "docker_engine.py"
            shutil.copy(docker_engine.__file__, script)
            script.chmod(0o644)
            as_nobody = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
            result = subprocess.run([*as_nobody, "python3", str(script), "up", str(state)],
                                    capture_output=True, text=True, timeout=60, check=False,
                                    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
            assert result.returncode == docker_engine.UNAVAILABLE, result.stderr
            assert (state / "unavailable").read_text() == "not root: starting dockerd needs root"
            assert sorted(path.name for path in state.iterdir()) == ["unavailable"]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
