"""The prelude's role statements, as drillbook reads them (pglast): hypothesis over names and options."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drills.migrations.model import Part
from drills.migrations.prelude_roles import RoleRefused, RoleSpec, take_roles
from drills.migrations.statements import Script, read_script

NAMES = st.from_regex(r"app_[a-z][a-z0-9_]{0,20}", fullmatch=True)
HARMLESS = st.lists(st.sampled_from(["LOGIN", "NOLOGIN", "PASSWORD 'secret-x'", "CONNECTION LIMIT 3",
                                     "VALID UNTIL '2031-01-01'", "INHERIT", "NOINHERIT", "NOSUPERUSER",
                                     "NOCREATEDB", "NOCREATEROLE", "NOREPLICATION", "NOBYPASSRLS"]),
                    max_size=5)
REFUSED = st.sampled_from(["SUPERUSER", "CREATEDB", "CREATEROLE", "REPLICATION", "BYPASSRLS"])


def _take(text: str) -> tuple[list[RoleSpec], Script]:
    return take_roles(read_script(Part(Path("init.sql"), text=text)), "init.sql")


@settings(deadline=None)
@given(name=NAMES, options=HARMLESS, kind=st.sampled_from(["ROLE", "USER", "GROUP"]))
def test_harmless_options_give_a_nologin_role(name: str, options: list[str], kind: str) -> None:
    """Any mix of harmless options: the role drillbook runs is NOLOGIN and nothing more."""
    text = f"CREATE SCHEMA app;\n\nCREATE {kind} {name} WITH {' '.join(options)};\nSET search_path TO app;\n"
    specs, rest = _take(text)
    assert [(s.name, s.line) for s in specs] == [(name, 3)]
    assert [s.line for s in rest.statements or ()] == [1, 4]
    shown = specs[0].statement().as_string(None)
    assert "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS" in shown
    assert "secret" not in shown and "secret" not in (specs[0].note() or "")
    if "LOGIN" in options:
        assert "LOGIN" in (specs[0].note() or "")


@settings(deadline=None)
@given(name=NAMES, before=HARMLESS, refused=REFUSED, blank=st.integers(0, 3))
def test_a_refused_option_names_its_line(name: str, before: list[str], refused: str, blank: int) -> None:
    """SUPERUSER and the like, wherever they stand: refused naming the option's own line."""
    text = "SELECT 1;\n" + "\n" * blank + f"CREATE ROLE {name} {' '.join(before)}\n  {refused};\n"
    with pytest.raises(RoleRefused) as info:
        _take(text)
    assert f"init.sql:{3 + blank}:" in str(info.value) and refused in str(info.value)


def test_membership_only_among_the_preludes_own_roles() -> None:
    specs, _ = _take("CREATE ROLE a;\nCREATE ROLE b IN ROLE a ROLE a ADMIN a;\n")
    assert specs[1].in_roles == ("a",) and specs[1].members == ("a",) and specs[1].admins == ("a",)
    for bad in ("IN ROLE pg_read_server_files", "IN GROUP c", "ROLE SESSION_USER", "ADMIN postgres"):
        with pytest.raises(RoleRefused, match=r"init.sql:2:"):
            _take(f"CREATE ROLE a;\nCREATE ROLE b {bad};\nCREATE ROLE c;\n")


def test_no_role_statement_leaves_the_script_as_it_was() -> None:
    script = read_script(Part(Path("init.sql"), text="CREATE USER MAPPING FOR CURRENT_USER SERVER s;\n"
                                                     "CREATE SCHEMA app;\n"))
    assert take_roles(script, "init.sql") == ([], script)
