"""``[run] out`` / ``[run] strict`` take effect, flags override; usage errors come first (issue 11, item 6).

Each run here is the real ``drillbook`` command in a child process, on a feature whose scenario
checks nothing: it ends exit 1 with a results.json, and opens no environment (nothing to drill).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drillbook.runner import DEFAULT_OUT, RunOptions, run_settings
from drills.config import parse_config

REPO = Path(__file__).resolve().parents[2]


def drillbook(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "drillbook.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=env, check=False)


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    """A config with ``[run] out = "runs"`` and ``strict = true``, a feature, and a separate cwd."""
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "empty.feature").write_text("Feature: x\n  Scenario: nothing checked\n")
    (tmp_path / "drillbook.toml").write_text('[run]\nout = "runs"\nstrict = true\n')
    (tmp_path / "elsewhere").mkdir()
    return tmp_path


def only_results(out: Path) -> dict[str, object]:
    found = [p for p in out.glob("*/results.json") if not p.parent.is_symlink()]
    assert len(found) == 1, found
    data: dict[str, object] = json.loads(found[0].read_text(encoding="utf-8"))
    return data


class TestRunSettings:
    def test_config_values_apply_without_flags(self) -> None:
        """No --out / --strict: the config's [run] out (relative to its file) and strict."""
        config = parse_config('[run]\nout = "runs"\nstrict = true\n', path=Path("/etc/db/drillbook.toml"),
                              environ={})
        settings = run_settings(RunOptions(), config)
        assert settings.out == Path("/etc/db/runs")
        assert settings.strict is True

    def test_flags_override_the_config(self) -> None:
        """--out and --no-strict win over [run] out and [run] strict = true."""
        config = parse_config('[run]\nout = "runs"\nstrict = true\n', path=Path("/etc/db/drillbook.toml"),
                              environ={})
        settings = run_settings(RunOptions(out=Path("mine"), strict=False), config)
        assert settings.out == Path("mine")
        assert settings.strict is False

    def test_defaults_without_config(self) -> None:
        """Neither flag nor config: ./out and not strict."""
        settings = run_settings(RunOptions(), None)
        assert settings.out == DEFAULT_OUT
        assert settings.strict is False


class TestRunSettingsEndToEnd:
    def test_run_writes_where_the_config_says_and_strictly(self, suite: Path) -> None:
        """`drillbook run --config` from another directory writes under the config's [run] out, strict."""
        proc = drillbook("run", "--config", str(suite / "drillbook.toml"), "--features",
                         str(suite / "features"), cwd=suite / "elsewhere")
        assert proc.returncode == 1, proc.stdout + proc.stderr  # the scenario checked nothing
        assert not (suite / "elsewhere" / "out").exists()
        assert only_results(suite / "runs")["strict"] is True

    def test_flags_override_in_a_real_run(self, suite: Path) -> None:
        """--out and --no-strict on the command line win over the config."""
        out = suite / "flag-out"
        proc = drillbook("run", "--config", str(suite / "drillbook.toml"), "--features",
                         str(suite / "features"), "--out", str(out), "--no-strict", cwd=suite / "elsewhere")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert not (suite / "runs").exists()
        assert only_results(out)["strict"] is False


class TestUsageErrorsFirst:
    def test_invalid_key_pattern_is_exit_2_before_any_server(self, tmp_path: Path) -> None:
        """`verify backup --key-pattern` without %Y: exit 2 naming the option; no PostgreSQL started."""
        backups = tmp_path / "backups"
        backups.mkdir()
        (backups / "backup-20261201.dump").write_bytes(b"PGDMP")
        proc = drillbook("verify", "backup", str(backups), "--key-pattern", "backup-%Q.dump", cwd=tmp_path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "--key-pattern" in proc.stderr
        assert "'backup-%Q.dump'" in proc.stderr
        assert "hint:" in proc.stderr
        assert "starting a throwaway local PostgreSQL" not in proc.stderr
        assert "Traceback" not in proc.stderr
