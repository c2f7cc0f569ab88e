"""Runbook packs: discovery, counting per cadence, and what every shipped pack must carry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pytest_bdd.parser import FeatureParser

from checks.errors import ConfigError
from drillbook.packs import (
    NO_CADENCE,
    known_packs,
    list_packs,
    pack_path,
    summarize,
    without_packs,
)
from drillbook.runner import RunOptions, _features_of
from drills.config import load_config

REPO = Path(__file__).resolve().parents[2]
FEATURES = REPO / "features"
SHIPPED = ("aureus-sentinel", "sark", "scrydon", "sentrascan", "sovra")

_DEMO = """\
@pack:demo
Feature: Demo
  @id:DEM-01 @daily @postgres
  Scenario: One daily
    Given the subject database "a"

  @id:DEM-02 @weekly @monthly
  Scenario: Weekly and monthly
    Given the subject database "a"

  @id:DEM-03
  Scenario: No cadence
    Given the subject database "a"

  @id:DEM-04 @continuous
  Scenario Outline: Per <x>
    Given the subject database "<x>"

    Examples:
      | x |
      | a |
      | b |
      | c |
"""


@pytest.fixture
def features_root(tmp_path: Path) -> Path:
    """A features/ folder with one area and two packs (one with no feature file at all)."""
    root = tmp_path / "features"
    (root / "backup").mkdir(parents=True)
    (root / "backup" / "b.feature").write_text("Feature: B\n  Scenario: S\n    Given x\n", encoding="utf-8")
    (root / "packs" / "demo").mkdir(parents=True)
    (root / "packs" / "demo" / "demo.feature").write_text(_DEMO, encoding="utf-8")
    (root / "packs" / "empty").mkdir()
    (root / "packs" / "empty" / "README.md").write_text("nothing yet\n", encoding="utf-8")
    return root


class TestPackDiscovery:
    def test_known_packs_are_folders_with_features(self, features_root: Path) -> None:
        """A pack folder without a .feature file is not a pack yet."""
        assert known_packs(features_root) == ["demo"]

    def test_unknown_pack_is_a_usage_error_naming_the_known_ones(self, features_root: Path) -> None:
        """`--pack nope` names every known pack and where they live."""
        with pytest.raises(ConfigError) as caught:
            pack_path(features_root, "nope")
        assert "unknown pack 'nope'" in caught.value.message
        assert "known packs: demo" in caught.value.message
        assert str(features_root / "packs") in caught.value.hint

    def test_default_features_leave_the_packs_out(self, features_root: Path) -> None:
        """A plain run collects every area but features/packs."""
        assert without_packs(features_root) == [features_root / "backup"]

    def test_without_a_packs_folder_the_default_is_features_itself(self, tmp_path: Path) -> None:
        assert without_packs(tmp_path) == [tmp_path]


class TestCountingPerCadence:
    def test_counts_scenarios_outline_rows_and_multiple_cadences(self, features_root: Path) -> None:
        """Outline rows count one each; a scenario with two cadences counts under both; none → `none`."""
        summary = summarize(features_root / "packs" / "demo")
        assert summary.scenarios == 6
        assert summary.by_cadence["daily"] == 1
        assert summary.by_cadence["weekly"] == 1
        assert summary.by_cadence["monthly"] == 1
        assert summary.by_cadence["continuous"] == 3
        assert summary.by_cadence[NO_CADENCE] == 1
        assert summary.by_cadence["quarterly"] == 0
        assert summary.ids == ["DEM-01", "DEM-02", "DEM-03", "DEM-04"]

    def test_packs_json_lists_every_pack(self, features_root: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
        """`drillbook packs --json`: one object per pack with its counts per cadence."""
        assert list_packs(features_root, as_json=True) == 0
        data = json.loads(capsys.readouterr().out)
        assert [p["pack"] for p in data] == ["demo"]
        assert data[0]["scenarios"] == 6
        assert data[0]["by_cadence"]["continuous"] == 3

    def test_packs_table_has_a_column_per_cadence(self, features_root: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
        assert list_packs(features_root, as_json=False) == 0
        header, row = capsys.readouterr().out.splitlines()[:2]
        assert header.split() == ["pack", "scenarios", "continuous", "daily", "weekly", "monthly",
                                  "quarterly", "annually", "none"]
        assert row.split() == ["demo", "6", "3", "1", "1", "1", "0", "0", "1"]


class TestRunSelection:
    def test_pack_selects_its_folder(self) -> None:
        assert _features_of(RunOptions(pack="sark")) == [FEATURES / "packs" / "sark"]

    def test_pack_and_features_together_are_refused(self) -> None:
        with pytest.raises(ConfigError, match="--pack and --features"):
            _features_of(RunOptions(pack="sark", features=[FEATURES / "backup"]))

    def test_plain_run_has_no_pack(self) -> None:
        chosen = _features_of(RunOptions())
        assert FEATURES / "backup" in chosen
        assert all("packs" not in path.parts for path in chosen)


# --- every shipped pack ------------------------------------------------------------------------------

_ID = re.compile(r"\b([A-Z]{2,5}-\d{2})\b")
_TARGET_STEPS = re.compile(
    r'^(?:the subject database|the backups in|the HTTP service|the Redis|the TLS endpoint|the Prometheus'
    r'|the release) "([^"]+)"'
)
# Targets the sandbox supplies that a live config does not name: the release is built in the run.
_NOT_IN_CONFIG: set[str] = set()


def _scenarios(pack: str) -> list[tuple[set[str], list[str]]]:
    """(tags, rendered step texts) of every run item of the pack."""
    found = []
    for path in sorted((FEATURES / "packs" / pack).rglob("*.feature")):
        feature = FeatureParser(str(path.parent), path.name).parse()
        for template in feature.scenarios.values():
            contexts = [ctx for ex in template.examples for ctx in ex.as_contexts()] or [{}]
            for context in contexts:
                rendered = template.render(context)
                found.append((set(template.tags) | set(feature.tags), [s.name for s in rendered.steps]))
    return found


def test_every_shipped_pack_is_known() -> None:
    assert set(SHIPPED) <= set(known_packs(FEATURES))


@pytest.mark.parametrize("pack", SHIPPED)
class TestShippedPack:
    def test_coverage_lists_exactly_the_scenario_ids_of_the_features(self, pack: str) -> None:
        """COVERAGE.md names every scenario id of the pack, and no id the features do not have."""
        in_features = set(summarize(FEATURES / "packs" / pack).ids)
        coverage = (FEATURES / "packs" / pack / "COVERAGE.md").read_text(encoding="utf-8")
        in_coverage = set(_ID.findall(coverage))
        assert in_features, f"{pack} has no scenario ids"
        assert in_features - in_coverage == set(), "scenarios missing from COVERAGE.md"
        assert in_coverage - in_features == set(), "COVERAGE.md names ids no feature has"

    def test_every_scenario_has_an_id_a_cadence_and_the_pack_tag(self, pack: str) -> None:
        for tags, steps in _scenarios(pack):
            assert any(t.startswith("id:") for t in tags), steps
            assert f"pack:{pack}" in tags, steps
            assert tags & {"continuous", "daily", "weekly", "monthly", "quarterly", "annually"}, tags

    def test_coverage_gives_a_reason_for_every_line_not_automated(self, pack: str) -> None:
        """Every table row of COVERAGE.md has a scenario id or says why it is not automatable here."""
        text = (FEATURES / "packs" / pack / "COVERAGE.md").read_text(encoding="utf-8")
        rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("|---")]
        for row in rows:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", row.strip()[1:-1])]
            if cells[0] in ("Runbook section → line", "Runbook line", "Guide section → line",
                            "Cadence in the runbook", "Cadence in the guide"):
                continue
            mapped = cells[1]
            assert _ID.search(mapped) or (mapped.startswith("not automatable here") and cells[2]) \
                or mapped.startswith("none automatable here"), row

    def test_example_config_loads_and_names_every_target_the_features_use(self, pack: str) -> None:
        config_path = FEATURES / "packs" / pack / "drillbook.example.toml"
        text = config_path.read_text(encoding="utf-8")
        environ = {name: (f"postgresql://drillbook@db.internal:5432/{name.lower()}" if name.endswith("DSN")
                          else "redis://redis.internal:6379/0" if "REDIS" in name else "secret")
                   for name in re.findall(r"\$\{([A-Z0-9_]+)\}", text)}
        load_config(config_path, environ=environ)
        configured = set(re.findall(r"^\[targets\.([A-Za-z0-9_.-]+)\]", text, flags=re.MULTILINE))
        used = {m.group(1) for _, steps in _scenarios(pack) for step in steps
                if (m := _TARGET_STEPS.match(step))}
        assert used - configured - _NOT_IN_CONFIG == set()

    def test_readme_describes_the_sandbox_and_the_canary(self, pack: str) -> None:
        text = (FEATURES / "packs" / pack / "README.md").read_text(encoding="utf-8")
        assert "sandbox" in text
        assert "--canary" in text


class TestCommandLine:
    def test_unknown_pack_exits_2_naming_the_known_packs(self) -> None:
        """`drillbook run --pack nope`: usage error before anything starts."""
        from tests.support.cli import drillbook

        proc = drillbook("run", "--pack", "nope", "--out", "/nonexistent-never-written", timeout=60)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "unknown pack 'nope'" in proc.stderr
        for pack in SHIPPED:
            assert pack in proc.stderr
        assert "drillbook run" not in proc.stdout  # nothing ran

    def test_packs_lists_the_shipped_packs_as_json(self) -> None:
        from tests.support.cli import drillbook

        proc = drillbook("packs", "--json", timeout=60)
        assert proc.returncode == 0, proc.stderr
        data = {p["pack"]: p for p in json.loads(proc.stdout)}
        assert set(data) == set(SHIPPED)
        for pack in SHIPPED:
            assert data[pack]["scenarios"] == summarize(FEATURES / "packs" / pack).scenarios
            assert sum(data[pack]["by_cadence"].values()) >= data[pack]["scenarios"]
