"""drills.fleet: members listed or generated, bound over the shared targets, selected by labels."""

from __future__ import annotations

import contextlib
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checks.errors import ConfigError
from drillbook.fleet.inventory import load_fleet, select_members
from drills.config import load_config
from drills.fleet import parse_fleet

BASE = """
[targets.production]
kind = "postgres"
dsn = "postgresql://shared@db.invalid/app"

[targets.scratch]
kind = "postgres"
dsn = "postgresql://scratch@scratch.invalid/empty"
scratch = true
"""

FLEET = """
[fleet]
host_cap = 3

[[fleet.members]]
name = "orders-eu"
labels = { tier = "1", host = "pg-eu-3" }
[fleet.members.targets.production]
kind = "postgres"
dsn = "postgresql://reader:${ORDERS_PW}@pg-eu-3.invalid/orders"
[fleet.members.targets.nightly]
kind = "directory"
path = "backups/orders-eu"
key_pattern = "orders-%Y%m%d.dump"

[[fleet.pattern]]
names = ["db-001", "db-002"]
labels = { tier = "2", host = "pg-shared-{member}" }
[fleet.pattern.targets.production]
kind = "postgres"
dsn = "postgresql://reader@pg-shared.invalid/{member}"
"""


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "drillbook.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_members_listed_and_generated(tmp_path: Path) -> None:
    fleet = load_fleet(_config(tmp_path, BASE + FLEET))
    assert [m.name for m in fleet.members] == ["db-001", "db-002", "orders-eu"]
    assert fleet.host_cap == 3
    db1 = fleet.member("db-001")
    assert db1.labels == {"tier": "2", "host": "pg-shared-db-001"}
    assert db1.targets["production"]["dsn"].endswith("/db-001")
    assert fleet.member("orders-eu").host == "pg-eu-3"


def test_a_member_binds_its_targets_over_the_shared_ones(tmp_path: Path) -> None:
    path = _config(tmp_path, BASE + FLEET)
    shared = load_config(path, environ={})
    assert shared.member is None
    assert "shared@db.invalid" in shared.postgres["production"].dsn
    bound = load_config(path, environ={"ORDERS_PW": "s3cret-pw"}, member="orders-eu")
    assert bound.member == "orders-eu"
    assert bound.postgres["production"].dsn == "postgresql://reader:s3cret-pw@pg-eu-3.invalid/orders"
    assert bound.postgres["scratch"].dsn.startswith("postgresql://scratch@")  # shared target kept
    assert bound.stores["nightly"].url == str((tmp_path / "backups/orders-eu").resolve())


def test_the_member_comes_from_the_environment_too(tmp_path: Path) -> None:
    """A member's child run binds it in every load (the steps load the config themselves)."""
    path = _config(tmp_path, BASE + FLEET)
    bound = load_config(path, environ={"DRILLBOOK_MEMBER": "db-002"})
    assert bound.postgres["production"].dsn.endswith("/db-002")


def test_a_secret_of_a_member_is_masked(tmp_path: Path) -> None:
    from checks import redact

    path = _config(tmp_path, BASE + FLEET)
    load_config(path, environ={"ORDERS_PW": "hunter2-fleet"}, member="orders-eu")
    assert "hunter2-fleet" not in redact.redact("connecting with hunter2-fleet")


def test_an_unknown_member_is_named(tmp_path: Path) -> None:
    path = _config(tmp_path, BASE + FLEET)
    with pytest.raises(ConfigError, match="no fleet member named 'orders-us'"):
        load_config(path, environ={}, member="orders-us")


def test_a_member_without_a_fleet_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no \[fleet\] table"):
        load_config(_config(tmp_path, BASE), environ={}, member="x")


def test_fleet_toml_beside_the_config(tmp_path: Path) -> None:
    path = _config(tmp_path, BASE)
    (tmp_path / "fleet.toml").write_text(FLEET, encoding="utf-8")
    assert len(load_fleet(path).members) == 3
    both = _config(tmp_path, BASE + FLEET)
    with pytest.raises(ConfigError, match="both define the fleet"):
        load_fleet(both)


def test_discovery_makes_one_member_per_folder(tmp_path: Path) -> None:
    for name in ("billing", "orders", "users"):
        (tmp_path / "backups" / name).mkdir(parents=True)
    (tmp_path / "backups" / "README").write_text("not a member", encoding="utf-8")
    text = BASE + """
[[fleet.pattern]]
discover = "backups"
[fleet.pattern.targets.nightly]
kind = "directory"
path = "backups/{member}"
"""
    fleet = load_fleet(_config(tmp_path, text))
    assert [m.name for m in fleet.members] == ["billing", "orders", "users"]
    assert fleet.member("users").targets["nightly"]["path"] == "backups/users"


@pytest.mark.parametrize(("fragment", "message"), [
    ('[fleet]\nhost_cap = 0\n[[fleet.members]]\nname = "a"\n[fleet.members.targets.p]\nkind = "postgres"\n'
     'dsn = "postgresql://x@y/z"\n', "host_cap"),
    ('[fleet]\n[[fleet.members]]\nname = "a b"\n[fleet.members.targets.p]\nkind = "postgres"\n'
     'dsn = "postgresql://x@y/z"\n', "member name"),
    ('[fleet]\n[[fleet.members]]\nname = "a"\n', "binds no target"),
    ('[fleet]\ncolour = "blue"\n', "unknown key `fleet.colour`"),
    ('[fleet]\n[[fleet.pattern]]\nlabels = {}\n', "exactly one of `names` or `discover`"),
    ('[fleet]\n', "the fleet has no members"),
    ('[fleet]\n[[fleet.pattern]]\nnames = ["a", "a"]\n[fleet.pattern.targets.p]\nkind = "postgres"\n'
     'dsn = "postgresql://x@y/{member}"\n', "more than once"),
])
def test_a_bad_fleet_is_named(tmp_path: Path, fragment: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_fleet(_config(tmp_path, BASE + fragment))


def test_selection_by_labels_and_names(tmp_path: Path) -> None:
    fleet = load_fleet(_config(tmp_path, BASE + FLEET))
    assert [m.name for m in select_members(fleet, "tier=2")] == ["db-001", "db-002"]
    assert [m.name for m in select_members(fleet, "tier=1,host=pg-eu-*")] == ["orders-eu"]
    assert [m.name for m in select_members(fleet, "db-00*")] == ["db-001", "db-002"]
    assert len(select_members(fleet, None)) == 3
    with pytest.raises(ConfigError, match="matches no member"):
        select_members(fleet, "tier=9")


_names = st.text(alphabet=string.ascii_lowercase + string.digits + "-_.", min_size=1, max_size=20).filter(
    lambda s: s[0].isalnum())


@settings(max_examples=60, deadline=None)
@given(names=st.lists(_names, min_size=1, max_size=12, unique=True), cap=st.integers(1, 9))
def test_parsing_any_generated_fleet_keeps_every_member_once(names: list[str], cap: int) -> None:
    table = {"host_cap": cap, "pattern": [{"names": names, "labels": {"host": "h-{member}"},
                                           "targets": {"p": {"kind": "postgres", "dsn": "x/{member}"}}}]}
    fleet = parse_fleet(table, Path("fleet.toml"))
    assert sorted(m.name for m in fleet.members) == sorted(names)
    assert all(m.targets["p"]["dsn"] == f"x/{m.name}" for m in fleet.members)
    assert parse_fleet(table, Path("fleet.toml")).digest == fleet.digest


@settings(max_examples=80, deadline=None)
@given(raw=st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12))
def test_any_malformed_fleet_is_a_config_error_never_a_crash(raw: object) -> None:
    table = raw if isinstance(raw, dict) else {"members": raw}
    with contextlib.suppress(ConfigError):
        parse_fleet(table, Path("fleet.toml"))


def test_fleet_members_lists_names_labels_and_target_kinds_never_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from drillbook.cli import main

    monkeypatch.setenv("ORDERS_PW", "never-printed-pw")
    path = _config(tmp_path, BASE + FLEET)
    assert main(["fleet", "members", "--config", str(path), "--members", "tier=1"]) == 0
    out = capsys.readouterr().out
    assert "orders-eu" in out and "host=pg-eu-3" in out and "nightly (directory)" in out
    assert "db-001" not in out
    assert "pg-eu-3.invalid" not in out and "never-printed-pw" not in out
    assert main(["fleet", "members", "--config", str(path), "--members", "tier=9"]) == 2


def test_a_name_with_a_trailing_newline_is_not_a_member_name(tmp_path: Path) -> None:
    """``$`` matches before a final newline: a discovered folder ``evil\\n`` must not become a member."""
    (tmp_path / "backups" / "evil\n").mkdir(parents=True)
    text = BASE + '[[fleet.pattern]]\ndiscover = "backups"\n[fleet.pattern.targets.nightly]\n' \
                  'kind = "directory"\npath = "backups/{member}"\n'
    with pytest.raises(ConfigError, match="member name"):
        load_fleet(_config(tmp_path, text))
