"""Every runbook pack on the sandbox, green; failing for the right reasons with --canary.

Real servers only: `drillbook run --pack X` in a subprocess starts the local sandbox
(PostgreSQL, Redis, moto, the products' HTTPS services and Debian's Prometheus).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checks.errors import ConfigError
from drills.local import LocalEnvironment
from tests.support.cli import drillbook, private_tmpdir

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None,
                       reason="Debian's `prometheus` package is not installed (./bootstrap installs it)"),
]

PACKS = ("aureus-sentinel", "sark", "scrydon", "sentrascan", "sovra")

# What --canary breaks in each pack: failing scenario id → words its failure message must hold.
CANARY: dict[str, dict[str, tuple[str, ...]]] = {
    "sark": {
        "SARK-01": ("`status` is 'degraded'",),
        "SARK-02": ("http_requests_total", "expected less than 0.01"),
        "SARK-06": ("ALERTS", "= 1, expected exactly 0"),
        "SARK-20": ("siem:event_queue", "12,500 items", "above 10,000"),
        "SARK-21": ("siem:failed_events", "37 items"),
        "SARK-22": ("siem:circuit_breaker:state",),
        "SARK-24": ("hit ratio", "floor 95 %"),
    },
    "sentrascan": {
        "SSC-01": ("`status` is 'degraded', expected 'ok'",),
        "SSC-04": ("scan_id", "1 duplicated"),
        "SSC-10": ("scan_status = 'running'", "longer than 1h"),
    },
    "sovra": {
        "SOV-02": ("nodes", "'offline'"),
        "SOV-04": ("'error' events in the last 1 day", "expected at most 10"),
        "SOV-06": ("sovra-edge", "expired"),
        "SOV-07": ("certificates", "status = 'active'"),
        "SOV-10": ("'0 3 * * *'", "have nothing within 30 min"),
        "SOV-30": ("sovra_api_requests_total", "expected at least 0.999"),
        "SOV-31": ("histogram_quantile", "expected less than 0.1"),
        "SOV-32": ("sovra_edge_heartbeat_seconds", "expected less than 60"),
        "SOV-34": ("edge_nodes", "status = 'online'"),
        "SOV-40": ("cert.rotate", "'0 2 * * *'", "have nothing within 30 min"),
    },
    "scrydon": {
        "SCR-01": ("license_heartbeats.heartbeat_at", "limit 25h"),
        "SCR-02": ("'*_FAILED' events in the last 7 days", "expected at most 30"),
        "SCR-10": ("does not verify",),
    },
    "aureus-sentinel": {
        "AUR-01": ("HTTP 503, expected 200",),
        "AUR-03": ("http_requests_total", "expected less than 0.01"),
    },
}


def _run(pack: str, out: Path, env: dict[str, str], *extra: str) -> dict[str, Any]:
    tmpdir = private_tmpdir("drillbook-packs-tmp-")
    try:
        proc = drillbook("run", "--pack", pack, "--out", str(out), *extra,
                         env={**env, "TMPDIR": str(tmpdir)}, timeout=300)
    finally:
        leftovers = [p.name for p in tmpdir.iterdir()]
        shutil.rmtree(tmpdir, ignore_errors=True)
    results = json.loads((out / "latest" / "results.json").read_text(encoding="utf-8"))
    return {"proc": proc, "results": results, "leftovers": leftovers}


@pytest.fixture(scope="module", params=PACKS)
def pack_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              sandbox_cache_env: dict[str, str]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """One green and one --canary run of a pack (module scope: each pack runs twice in all)."""
    pack = request.param
    green = _run(pack, tmp_path_factory.mktemp(f"{pack}-green"), sandbox_cache_env)
    canary = _run(pack, tmp_path_factory.mktemp(f"{pack}-canary"), sandbox_cache_env, "--canary")
    yield pack, green, canary


def _failing(results: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for scenario in results["scenarios"]:
        if scenario["outcome"] in ("failed", "error"):
            messages = [v["message"] for v in scenario["verdicts"] if v["outcome"] in ("failed", "error")]
            found.setdefault(scenario["id"], []).extend(messages or [scenario["failure"] or ""])
    return found


class TestPacksOnTheSandbox:
    def test_the_pack_runs_green(self, pack_runs: tuple[str, dict[str, Any], dict[str, Any]]) -> None:
        """`drillbook run --pack X` exits 0: every scenario passed (or is not applicable, with its reason)."""
        pack, green, _ = pack_runs
        proc = green["proc"]
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"features/packs/{pack}" in proc.stdout
        outcomes = {s["id"]: s["outcome"] for s in green["results"]["scenarios"]}
        assert set(outcomes.values()) <= {"passed", "not_applicable"}, outcomes
        assert all(s["pack"] == pack for s in green["results"]["scenarios"])

    def test_the_pack_runs_every_scenario_of_its_features(
            self, pack_runs: tuple[str, dict[str, Any], dict[str, Any]]) -> None:
        from drillbook.packs import summarize
        from tests.support.cli import REPO

        pack, green, _ = pack_runs
        expected = summarize(REPO / "features" / "packs" / pack)
        assert len(green["results"]["scenarios"]) == expected.scenarios
        assert {s["id"] for s in green["results"]["scenarios"]} == set(expected.ids)

    def test_canary_fails_the_documented_checks_for_the_documented_reasons(
            self, pack_runs: tuple[str, dict[str, Any], dict[str, Any]]) -> None:
        """--canary: exit 1, exactly the canary's scenarios fail, each message names what is wrong."""
        pack, _, canary = pack_runs
        proc = canary["proc"]
        assert proc.returncode == 1, proc.stdout + proc.stderr
        failing = _failing(canary["results"])
        assert set(failing) == set(CANARY[pack]), failing
        for ident, words in CANARY[pack].items():
            text = "\n".join(failing[ident])
            for word in words:
                assert word in text, f"{ident}: {word!r} not in {text!r}"

    def test_nothing_is_left_behind(self, pack_runs: tuple[str, dict[str, Any], dict[str, Any]]) -> None:
        """The sandbox's temp dir (servers, Prometheus TSDB, certificates, dumps) is gone after each run."""
        _, green, canary = pack_runs
        assert green["leftovers"] == [] and canary["leftovers"] == []


class TestProductTargets:
    def test_unknown_product_targets_name_the_known_ones(self, local_env: LocalEnvironment) -> None:
        with pytest.raises(ConfigError, match="known: sark-api, sentrascan-api"):
            local_env.http("nope")
        with pytest.raises(ConfigError, match="sovra-prometheus"):
            local_env.prometheus("nope")
        with pytest.raises(ConfigError, match="sark-redis"):
            local_env.redis("nope")

    def test_https_targets_carry_the_sandbox_ca(self, local_env: LocalEnvironment) -> None:
        target = local_env.http("sovra-api")
        assert target.url.startswith("https://localhost:")
        assert target.ca_file is not None and target.ca_file.exists()
        assert local_env.http("sentrascan-api").url.startswith("http://localhost:")
        tls = local_env.tls("sovra-edge")
        assert tls.host == "localhost" and tls.ca_file == target.ca_file

    def test_product_databases_are_schemas_of_the_packs_database(self, local_env: LocalEnvironment) -> None:
        import psycopg

        with psycopg.connect(local_env.postgres("sentrascan").dsn) as conn:
            row = conn.execute("SELECT current_database(), current_schema(), count(*) FROM scans").fetchone()
        assert row is not None and row[:2] == ("packs", "sentrascan") and row[2] >= 600

    def test_close_stops_prometheus_and_the_services(self, sandbox_xdg_cache: Path) -> None:
        env = LocalEnvironment.start(cache_dir=sandbox_xdg_cache / "drillbook")
        try:
            env.prometheus("sovra-prometheus")
            assert env.products is not None and env.products.prometheus_server is not None
            pid = env.products.prometheus_server.pid
            assert pid is not None
        finally:
            env.close()
        assert env.leftovers() == []
        import psutil

        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


class TestInterruptingAPack:
    def test_ctrl_c_stops_prometheus_and_every_server(self, sandbox_cache_env: dict[str, str]) -> None:
        """Ctrl-C in the middle of a pack (Prometheus up, services serving): exit 1, nothing left."""
        from tests.support.cli import Spawned, processes_mentioning

        tmpdir = private_tmpdir("drillbook-packs-int-")
        spawned = Spawned("run", "--pack", "sovra", "--out", str(tmpdir / "out"),
                          env={**sandbox_cache_env, "TMPDIR": str(tmpdir)})
        try:
            spawned.wait_for_line(lambda line: "SOV-0" in line, timeout=120)
            assert any("prometheus" in p for p in processes_mentioning(str(tmpdir)))
            spawned.interrupt_group()
            assert spawned.wait(60) == 1
            assert "interrupted" in spawned.stderr
            assert processes_mentioning(str(tmpdir)) == []
            assert [p.name for p in tmpdir.iterdir() if p.name != "out"] == []
        finally:
            if spawned.proc.poll() is None:
                spawned.kill()
            shutil.rmtree(tmpdir, ignore_errors=True)
