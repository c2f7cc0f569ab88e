"""Every layout in features (issue 12, item 6): `drillbook run` on Gherkin that names the folders.

The features do not change with the tool: the same sentences replay a goose, a dbmate, a Diesel,
a sqitch (chained after the project it requires) and a Liquibase folder, round-trip those with a
way down, and a wrong order of the sqitch folders is an error naming the plan line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_layouts_plan_based import AUDIT
from tests.support.cli import drillbook
from tests.support.plan_projects import CHANGELOGS, FLIPR, write

pytestmark = pytest.mark.integration

GOOSE = {
    "00001_widgets.sql": "-- +goose Up\nCREATE TABLE widgets (id bigint PRIMARY KEY, name text);\n"
                         "-- +goose StatementBegin\nCREATE FUNCTION widget_name(w bigint) RETURNS text\n"
                         "LANGUAGE plpgsql AS $$ BEGIN\n"
                         "RETURN (SELECT name FROM widgets WHERE id = w); END; $$;\n"
                         "-- +goose StatementEnd\n\n-- +goose Down\nDROP FUNCTION widget_name(bigint);\n"
                         "DROP TABLE widgets;\n",
    "00002_parts.sql": "-- +goose Up\nCREATE TABLE parts (widget bigint REFERENCES widgets);\n"
                       "-- +goose Down\nDROP TABLE parts;\n",
}
DBMATE = {
    "20240101120000_widgets.sql": "-- migrate:up\nCREATE TABLE widgets (id bigint PRIMARY KEY);\n\n"
                                  "-- migrate:down\nDROP TABLE widgets;\n",
    "20240102120000_index.sql": "-- migrate:up transaction:false\n"
                                "CREATE INDEX CONCURRENTLY widgets_id ON widgets (id);\n\n"
                                "-- migrate:down\nDROP INDEX widgets_id;\n",
}
DIESEL = {
    "2022-04-26-153628_widgets/up.sql": "CREATE TABLE widgets (id bigint PRIMARY KEY);\n",
    "2022-04-26-153628_widgets/down.sql": "DROP TABLE widgets;\n",
    "2022-05-01-090000_parts/up.sql": "CREATE TABLE parts (widget bigint REFERENCES widgets);\n",
    "2022-05-01-090000_parts/down.sql": "DROP TABLE parts;\n",
}

SCENARIO = """
  @id:{id} @monthly
  Scenario: the {tool} migrations replay and roll back
    Given the migrations in "{folder}"
    When the migrations are replayed up, down and up again
    Then the round trip leaves an identical schema at every version
"""

FEATURE = "Feature: migrations of every tool\n" + "".join(
    SCENARIO.format(id=f"LAY-0{i}", tool=tool, folder=folder)
    for i, (tool, folder) in enumerate([("goose", "goose"), ("dbmate", "dbmate"), ("Diesel", "diesel")], 1)
) + """
  @id:LAY-04 @monthly
  Scenario: the sqitch projects replay in order, each change verified
    Given the migrations in these folders, in order:
      | folder |
      | flipr  |
      | audit  |
    When the migrations are replayed into a scratch database
    Then every migration step applies within 30 seconds

  @id:LAY-05 @monthly
  Scenario: the Liquibase changelogs replay
    Given the migrations in "liquibase"
    When the migrations are replayed into a scratch database
    Then the replay completes within 1 minute

  @id:LAY-06 @monthly
  Scenario: a project given before the one it requires
    Given the migrations in these folders, in order:
      | folder |
      | audit  |
      | flipr  |
    When the migrations are replayed into a scratch database
"""


def test_every_layout_replays_through_the_same_sentences(tmp_path: Path,
                                                          sandbox_cache_env: dict[str, str]) -> None:
    features = tmp_path / "features"
    for name, files in (("goose", GOOSE), ("dbmate", DBMATE), ("diesel", DIESEL), ("flipr", FLIPR),
                        ("audit", AUDIT), ("liquibase", CHANGELOGS)):
        write(files, features / name)
    (features / "layouts.feature").write_text(FEATURE, encoding="utf-8")
    out = tmp_path / "out"
    done = drillbook("run", "--features", str(features), "--out", str(out), env=sandbox_cache_env,
                     timeout=300)
    results = json.loads((out / "latest" / "results.json").read_text())
    outcomes = {s["id"]: s["outcome"] for s in results["scenarios"]}
    assert outcomes == {"LAY-01": "passed", "LAY-02": "passed", "LAY-03": "passed", "LAY-04": "passed",
                        "LAY-05": "passed", "LAY-06": "error"}, done.stdout + done.stderr
    assert done.returncode == 1
    by_id = {s["id"]: s for s in results["scenarios"]}
    layout = {v["id"]: v for v in by_id["LAY-04"]["verdicts"]}
    steps = layout["migrations.replay"]["evidence"]["steps"]
    assert steps[-1]["verified"] == "audit/verify/audit.sql"
    wrong_order = json.dumps(by_id["LAY-06"]["verdicts"])
    assert "sqitch.plan:4: audit requires flipr:users" in wrong_order
