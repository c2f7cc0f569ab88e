"""The fleet sandbox (drillbook/fleet/sandbox.py): what it seeds, how the canary breaks it, what it leaves.

One canary sandbox of 8 members (every fault once) is shared by the module; the cleanup tests
start small ones of their own in a private directory, so "nothing left" is checked precisely.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from checks.backups import backup_freshness
from checks.compare import compare_databases
from checks.errors import ChecksumMismatch, NoBackupFound
from checks.verdict import Outcome
from drillbook.fleet.sandbox import FleetSandbox, sandbox_fleet
from drills import reaper
from drills.config import load_config, parse_config
from drills.local import LocalScratch
from drills.restore import RestoreDrill, newest_in_store
from drills.sandbox import members
from drills.sandbox.members import Fault
from drills.targets import Role
from tests.support.cli import REPO, drillbook, private_tmpdir, processes_mentioning

pytestmark = pytest.mark.integration

N = 8
HEALTHY = "member-01"


@pytest.fixture(scope="module")
def parent_dir() -> Iterator[Path]:
    """The directory the sandbox makes its temp dir in (the `workdir` argument), private to the module."""
    path = private_tmpdir("drillbook-fleet-test-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def fleet(parent_dir: Path, sandbox_xdg_cache: Path) -> Iterator[FleetSandbox]:
    sandbox = FleetSandbox.start(N, canary=True, workdir=parent_dir,
                                 cache_dir=sandbox_xdg_cache / "drillbook")
    try:
        yield sandbox
    finally:
        sandbox.close()


@pytest.fixture(scope="module")
def fleet_toml(fleet: FleetSandbox) -> dict[str, Any]:
    return tomllib.loads(fleet.config_path.read_text(encoding="utf-8"))


def _member(fleet: FleetSandbox, name: str) -> members.SeededMember:
    return next(m for m in fleet.members if m.plan.name == name)


def _targets(fleet_toml: dict[str, Any], name: str) -> Any:
    """One member's targets as drills.config reads ``[targets.X]``: a Config of that member alone."""
    entry = next(m for m in fleet_toml["fleet"]["members"] if m["name"] == name)
    text = "\n".join(f"[targets.{target}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in table.items())
                     for target, table in entry["targets"].items())
    return parse_config(text, path=None, environ={})


class TestSeeded:
    def test_the_server_holds_n_member_databases_of_different_sizes(self, fleet: FleetSandbox) -> None:
        """member-01…member-08 exist on the server with the rows the sandbox reports, sizes varied."""
        assert fleet.server is not None
        with psycopg.connect(fleet.server.dsn(), connect_timeout=10) as conn:
            names = [r[0] for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'member-%' ORDER BY 1")]
        assert names == [f"member-{i:02d}" for i in range(1, N + 1)]
        for member in fleet.members:
            with psycopg.connect(fleet.server.dsn(member.plan.name), connect_timeout=10) as conn:
                row = conn.execute("SELECT count(*) FROM orders").fetchone()
            assert row is not None and row[0] == member.rows["orders"] == member.plan.orders
        sizes = sorted(m.plan.orders for m in fleet.members)
        assert sizes[-1] >= 3 * sizes[0]

    def test_each_healthy_member_has_its_nightly_history_with_checksums(self, fleet: FleetSandbox) -> None:
        """Three nights of `pg_dump -Fc`, named by the time taken, sidecars matching, mtimes = key times."""
        for member in fleet.members:
            if member.plan.fault in (Fault.STALE, Fault.MISSING, Fault.CORRUPT):
                continue
            files = sorted(p.name for p in member.store.iterdir())
            times = members.backup_times(datetime.now(UTC))
            dumps = [t.strftime(member.plan.key_pattern) for t in times]
            assert files == sorted([*dumps, *(d + ".sha256" for d in dumps)])
            for taken, dump in zip(times, dumps, strict=True):
                path = member.store / dump
                assert path.read_bytes()[:5] == b"PGDMP"
                sidecar = (member.store / (dump + ".sha256")).read_text().split()[0]
                assert sidecar == hashlib.sha256(path.read_bytes()).hexdigest()
                assert path.stat().st_mtime == taken.timestamp()

    def test_the_newest_backup_holds_exactly_the_rows_created_before_it(
        self, fleet: FleetSandbox, scratch_cluster: LocalScratch
    ) -> None:
        """A healthy member restores and compares clean, though the subject has rows newer than it."""
        member = _member(fleet, HEALTHY)
        config = load_config(fleet.member_config(HEALTHY))
        with RestoreDrill(config.stores["nightly"], scratch_cluster) as drill:
            result = drill.run()
            assert result.target is not None
            restored = result.target
            with psycopg.connect(restored.dsn) as conn:
                row = conn.execute("SELECT count(*) FROM orders").fetchone()
            assert row is not None and 0 < row[0] < member.rows["orders"]
            verdict = compare_databases(lambda: psycopg.connect(config.postgres["production"].dsn),
                                        lambda: psycopg.connect(restored.dsn), cutoff=result.backup_time)
        assert verdict.outcome is Outcome.PASSED, verdict.message

    def test_production_is_read_only(self, fleet: FleetSandbox) -> None:
        """The member's `production` DSN reads, and refuses to write (the sandbox's read-only role)."""
        dsn = fleet.production_dsn(_member(fleet, HEALTHY).plan)
        assert "drillbook_reader@" in dsn
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM accounts").fetchone() is not None
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("DELETE FROM accounts")


class TestConfig:
    def test_fleet_table_has_every_member_with_labels_over_three_hosts(
        self, fleet_toml: dict[str, Any]
    ) -> None:
        """[fleet] host_cap and one [[fleet.members]] per member, tier/host labels, two targets each."""
        fleet_table = fleet_toml["fleet"]
        assert fleet_table["host_cap"] == 2
        entries = fleet_table["members"]
        assert [e["name"] for e in entries] == [f"member-{i:02d}" for i in range(1, N + 1)]
        assert {e["labels"]["host"] for e in entries} == {"pg-a", "pg-b", "pg-c"}
        assert {e["labels"]["tier"] for e in entries} == {"1", "2"}
        assert all(set(e["targets"]) == {"production", "nightly"} for e in entries)

    def test_member_targets_are_what_drills_config_accepts(self, fleet: FleetSandbox,
                                                           fleet_toml: dict[str, Any]) -> None:
        """Every member's targets parse as [targets.X] with drills.config: a subject and a directory store."""
        for member in fleet.members:
            config = _targets(fleet_toml, member.plan.name)
            assert config.postgres["production"].dsn == fleet.production_dsn(member.plan)
            assert config.postgres["production"].role is Role.SUBJECT
            store = config.stores["nightly"]
            assert store.url == str(member.store) and store.key_pattern == member.plan.key_pattern

    def test_single_member_configs_load_with_the_same_targets(self, fleet: FleetSandbox,
                                                              fleet_toml: dict[str, Any]) -> None:
        for member in fleet.members:
            single = load_config(fleet.member_config(member.plan.name))
            expected = _targets(fleet_toml, member.plan.name).redacted()["targets"]
            assert single.redacted()["targets"] == expected

    def test_the_leads_inventory_reads_it(self, fleet: FleetSandbox) -> None:
        """drillbook.fleet.inventory.load_fleet (issue 14's inventory) sees the members and their hosts."""
        from drillbook.fleet.inventory import load_fleet

        loaded = load_fleet(fleet.config_path)
        assert [m.name for m in loaded.members] == [m.plan.name for m in fleet.members]
        assert [m.host for m in loaded.members] == [m.plan.host for m in fleet.members]
        assert loaded.host_cap == 2
        assert loaded.members[0].targets["nightly"]["key_pattern"] == "member-01-%Y%m%d-%H%M.dump"

    def test_the_config_names_the_broken_members(self, fleet: FleetSandbox) -> None:
        text = fleet.config_path.read_text(encoding="utf-8")
        for name, fault in fleet.broken().items():
            assert f"#   {name}: {fault.value}" in text


class TestCanary:
    def test_five_members_are_broken_each_in_its_own_way(self, fleet: FleetSandbox) -> None:
        assert fleet.broken() == {"member-02": Fault.STALE, "member-03": Fault.CORRUPT,
                                  "member-05": Fault.MISSING, "member-06": Fault.DRIFT,
                                  "member-08": Fault.UNREACHABLE}

    def test_stale_member_fails_freshness_where_a_healthy_one_passes(self, fleet: FleetSandbox) -> None:
        now = datetime.now(UTC)
        for name, outcome in (("member-02", Outcome.FAILED), (HEALTHY, Outcome.PASSED)):
            _, taken, _ = newest_in_store(load_config(fleet.member_config(name)).stores["nightly"])
            verdict = backup_freshness(taken, now=now, max_age=timedelta(hours=26))
            assert verdict.outcome is outcome, verdict.message
        _, taken, _ = newest_in_store(load_config(fleet.member_config("member-02")).stores["nightly"])
        assert now - taken > timedelta(days=2)

    def test_corrupt_member_is_refused_by_its_checksum_before_restoring(
        self, fleet: FleetSandbox, scratch_cluster: LocalScratch
    ) -> None:
        store = load_config(fleet.member_config("member-03")).stores["nightly"]
        with RestoreDrill(store, scratch_cluster) as drill, pytest.raises(ChecksumMismatch,
                                                                          match="not restored"):
            drill.run()
        assert scratch_cluster.databases() == []

    def test_missing_member_has_no_backup_to_find(self, fleet: FleetSandbox) -> None:
        store = load_config(fleet.member_config("member-05")).stores["nightly"]
        with pytest.raises(NoBackupFound, match="0 objects seen"):
            newest_in_store(store)

    def test_drifted_member_fails_the_content_comparison_at_the_changed_row(
        self, fleet: FleetSandbox, scratch_cluster: LocalScratch
    ) -> None:
        config = load_config(fleet.member_config("member-06"))
        with RestoreDrill(config.stores["nightly"], scratch_cluster) as drill:
            result = drill.run()
            assert result.target is not None
            restored = result.target
            verdict = compare_databases(lambda: psycopg.connect(config.postgres["production"].dsn),
                                        lambda: psycopg.connect(restored.dsn), cutoff=result.backup_time)
        assert verdict.outcome is Outcome.FAILED
        assert "public.orders: first difference at id = 1" in verdict.message

    def test_unreachable_member_refuses_connections(self, fleet: FleetSandbox) -> None:
        dsn = load_config(fleet.member_config("member-08")).postgres["production"].dsn
        with pytest.raises(psycopg.OperationalError, match="refused"):
            psycopg.connect(dsn, connect_timeout=5)


class TestFeaturesPerMember:
    """The fleet features for one member at a time through the member runner (a child `drillbook run`)."""

    @pytest.mark.parametrize(("member", "expected"), [
        (HEALTHY, {"FLT-01": "passed", "FLT-02": "passed", "FLT-03": "passed"}),
        ("member-03", {"FLT-01": "failed", "FLT-02": "failed", "FLT-03": "passed"}),
        ("member-08", {"FLT-01": "passed", "FLT-02": "error", "FLT-03": "passed"}),
    ])
    def test_verdicts(self, fleet: FleetSandbox, tmp_path: Path, sandbox_cache_env: dict[str, str],
                      member: str, expected: dict[str, str]) -> None:
        """Healthy passes all; corrupt fails both restores, not the listing; unreachable: compare errors."""
        from drillbook.fleet.execute import run_member

        run_dir = run_member(config=fleet.config_path, member=member, scenario_ids=sorted(expected),
                             features=[REPO / "features" / "fleet"], out=tmp_path, run_id="r1",
                             extra_env=sandbox_cache_env, timeout=300)
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        assert {s["id"]: s["outcome"] for s in results["scenarios"]} == expected
        assert {s["member"] for s in results["scenarios"]} == {member}


class TestCleanup:
    def test_close_leaves_no_process_no_dir_and_no_record(self, tmp_path: Path,
                                                          sandbox_xdg_cache: Path) -> None:
        """After close: the server is gone, the temp dir too, and the reaper has nothing to reap."""
        parent = private_tmpdir("drillbook-fleet-test-")
        try:
            sandbox = FleetSandbox.start(2, canary=True, workdir=parent,
                                         cache_dir=sandbox_xdg_cache / "drillbook")
            workdir = sandbox.workdir
            record = sandbox._run_record.file
            assert workdir.parent == parent and workdir.name.startswith("drillbook-fleet-")
            assert processes_mentioning(str(workdir)), "the server runs from the sandbox's temp dir"
            assert record.exists()
            sandbox.close()
            assert sandbox.leftovers() == []
            assert processes_mentioning(str(parent)) == []
            assert list(parent.iterdir()) == []
            assert not record.exists()
        finally:
            shutil.rmtree(parent, ignore_errors=True)

    def test_context_manager_cleans_up_when_the_body_raises(self, sandbox_cache_env: dict[str, str]) -> None:
        parent = private_tmpdir("drillbook-fleet-test-")
        lines: list[str] = []
        try:
            with pytest.raises(RuntimeError, match="body failed"), \
                    sandbox_fleet(1, canary=True, workdir=parent, progress=lines.append) as config:
                assert config.is_file() and config.parent.parent == parent
                raise RuntimeError("body failed")
            assert processes_mentioning(str(parent)) == []
            assert list(parent.iterdir()) == []
            assert any(re.match(r"canary: member-01 is broken \(stale: ", line) for line in lines), lines
        finally:
            shutil.rmtree(parent, ignore_errors=True)

    def test_reaper_removes_what_a_killed_sandbox_left(self, sandbox_cache_env: dict[str, str],
                                                      sandbox_xdg_cache: Path) -> None:
        """kill -9 of the sandbox's owner: the next reap stops its server and removes its temp dir."""
        parent = private_tmpdir("drillbook-fleet-test-")
        code = ("import sys, time; from pathlib import Path; "
                "from drillbook.fleet.sandbox import FleetSandbox; "
                "s = FleetSandbox.start(1, canary=False, workdir=Path(sys.argv[1])); "
                "print(s.workdir, flush=True); time.sleep(600)")
        owner = subprocess.Popen([sys.executable, "-c", code, str(parent)], stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, **sandbox_cache_env}, cwd=REPO)
        try:
            assert owner.stdout is not None
            workdir = Path(owner.stdout.readline().strip())
            assert workdir.parent == parent
            assert processes_mentioning(str(workdir))
            owner.kill()
            owner.wait(30)
            lines = reaper.Registry(sandbox_xdg_cache / "drillbook" / "running").reap()
            assert any(line.startswith("reaped PostgreSQL (fleet)") for line in lines), lines
            assert f"removed temp dir {workdir} left by drillbook pid {owner.pid}" in lines
            assert processes_mentioning(str(parent)) == []
            assert list(parent.iterdir()) == []
        finally:
            if owner.poll() is None:
                owner.kill()
            shutil.rmtree(parent, ignore_errors=True)


class TestSandboxUp:
    def test_up_detached_prints_the_config_and_down_removes_everything(
        self, tmp_path: Path, sandbox_cache_env: dict[str, str]
    ) -> None:
        """`sandbox up --sandbox-members 3 --detach` prints a config that loads; `down` leaves nothing."""
        tmpdir = private_tmpdir("drillbook-fleet-test-")
        state = tmp_path / "sb.json"
        env = {**sandbox_cache_env, "TMPDIR": str(tmpdir)}
        try:
            up = drillbook("sandbox", "up", "--detach", "--sandbox-members", "3", "--state", str(state),
                           env=env, timeout=180)
            assert up.returncode == 0, up.stdout + up.stderr
            config = Path(re.search(r"^  config\s+(\S+)$", up.stdout, re.MULTILINE).group(1))  # type: ignore[union-attr]
            assert config.parent.parent == tmpdir
            entries = tomllib.loads(config.read_text(encoding="utf-8"))["fleet"]["members"]
            assert [e["name"] for e in entries] == ["member-01", "member-02", "member-03"]
            with psycopg.connect(entries[2]["targets"]["production"]["dsn"], connect_timeout=10) as conn:
                assert conn.execute("SELECT count(*) FROM orders").fetchone() is not None
            down = drillbook("sandbox", "down", "--state", str(state), env=env, timeout=90)
            assert down.returncode == 0, down.stdout + down.stderr
            assert processes_mentioning(str(tmpdir)) == []
            assert list(tmpdir.iterdir()) == []
        finally:
            if state.exists():
                drillbook("sandbox", "down", "--state", str(state), env=env, timeout=90)
            shutil.rmtree(tmpdir, ignore_errors=True)

    @pytest.mark.parametrize("count", ["0", "501"])
    def test_a_bad_member_count_is_a_usage_error(self, tmp_path: Path, count: str) -> None:
        run = drillbook("sandbox", "up", "--sandbox-members", count, "--state", str(tmp_path / "sb.json"))
        assert run.returncode == 2
        assert "--sandbox-members must be a number from 1 to 500" in run.stderr
        assert not (tmp_path / "sb.json").exists()
