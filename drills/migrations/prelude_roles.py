"""The roles a prelude creates: taken out of the script, checked, and created by drillbook itself.

A team's init script often creates roles (``CREATE ROLE app_reader;``) that the migrations then
``GRANT … TO``. The replay role may not create roles: with CREATEROLE it could grant itself
``pg_execute_server_program`` (PostgreSQL 15) and run commands on the server. So the prelude's
``CREATE ROLE`` / ``CREATE USER`` / ``CREATE GROUP`` statements are parsed here (pglast, as the
rest of the replay) into :class:`RoleSpec` and run by the scratch cluster's admin connection in
one safe form (:meth:`RoleSpec.statement`):

- always ``NOLOGIN`` (a ``LOGIN``, ``PASSWORD``, ``CONNECTION LIMIT`` or ``VALID UNTIL`` is
  dropped and said in the evidence: nobody logs in as these roles);
- never SUPERUSER, CREATEDB, CREATEROLE, REPLICATION or BYPASSRLS: a prelude asking for one is
  refused, naming the file, the line and the option;
- ``IN ROLE`` / ``ROLE`` / ``ADMIN`` may only name roles the same prelude created before
  (never ``pg_execute_server_program``, never the replay role);
- a name that exists on the cluster is refused (by the scratch's ``create_roles``: names are
  cluster-wide and an existing role is never touched).

The rest of the script runs as the replay role, as before, with the same line numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from psycopg import sql

from .model import MigrationFailed, Statement
from .statements import Script

# Role attributes that reach beyond one database: a prelude asking for one is refused.
_REFUSED = {"superuser": "SUPERUSER", "createdb": "CREATEDB", "createrole": "CREATEROLE",
            "isreplication": "REPLICATION", "bypassrls": "BYPASSRLS"}
# Options that only matter to a role that logs in: dropped, since drillbook's roles never do.
_DROPPED = {"canlogin": "LOGIN", "password": "PASSWORD", "connectionlimit": "CONNECTION LIMIT",
            "validUntil": "VALID UNTIL", "sysid": "SYSID"}
# Membership options, by what each means for the new role.
_MEMBERSHIP = {"addroleto": "IN ROLE", "rolemembers": "ROLE", "adminmembers": "ADMIN"}

PRELUDE_HINT = ("a prelude may create plain roles (NOLOGIN, no SUPERUSER, CREATEDB, CREATEROLE, "
                "REPLICATION or BYPASSRLS) that are members only of roles it created itself")


class RoleRefused(MigrationFailed):
    """A prelude's role statement drillbook will not run: names the file, line and reason."""

    default_hint = PRELUDE_HINT


@dataclass(frozen=True)
class RoleSpec:
    """One role a prelude creates, as drillbook will create it."""

    name: str
    line: int
    inherit: bool = True
    in_roles: tuple[str, ...] = ()      # IN ROLE / IN GROUP: the new role becomes their member
    members: tuple[str, ...] = ()       # ROLE / USER: these become members of the new role
    admins: tuple[str, ...] = ()        # ADMIN: members with the admin option
    dropped: tuple[str, ...] = ()       # options left out (LOGIN, PASSWORD, …), for the evidence

    def statement(self) -> sql.Composed:
        """The ``CREATE ROLE`` drillbook runs: every dangerous attribute spelled out as off."""
        parts: list[sql.Composable] = [
            sql.SQL("CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                    "NOBYPASSRLS ").format(sql.Identifier(self.name)),
            sql.SQL("INHERIT" if self.inherit else "NOINHERIT")]
        for keyword, names in (("IN ROLE", self.in_roles), ("ROLE", self.members),
                               ("ADMIN", self.admins)):
            if names:
                parts.append(sql.SQL(f" {keyword} ") + sql.SQL(", ").join(map(sql.Identifier, names)))
        return sql.Composed(parts)

    def note(self) -> str | None:
        """What was left out of this role, for the evidence (never a password's value)."""
        if not self.dropped:
            return None
        return f"role {self.name}: {', '.join(self.dropped)} ignored (drillbook's roles never log in)"


# The scratch's ``create_roles(target, specs)``: creates them, returns their names.
RoleCreator = Callable[[Any, Sequence[RoleSpec]], list[str]]


def role_creator(scratch: object) -> RoleCreator | None:
    """The scratch's ``create_roles`` (drillbook's own clusters; a configured scratch refuses)."""
    creator = getattr(scratch, "create_roles", None)
    return creator if callable(creator) else None


def take_roles(script: Script, file: str) -> tuple[list[RoleSpec], Script]:
    """The prelude's role statements as specs, and the script without them (lines unchanged).

    A script pglast could not split is sent whole, as before: the server judges it (and refuses
    any ``CREATE ROLE`` in it as the replay role).
    """
    if not script.statements:
        return [], script
    specs: list[RoleSpec] = []
    rest: list[Statement] = []
    for statement in script.statements:
        spec = _role_spec(statement, file, created={s.name for s in specs})
        if spec is None:
            rest.append(statement)
        else:
            specs.append(spec)
    if not specs:
        return [], script
    return specs, replace(script, statements=tuple(rest))


def _role_spec(statement: Statement, file: str, *, created: set[str]) -> RoleSpec | None:
    from pglast import parser

    try:
        tree = json.loads(parser.parse_sql_json(statement.text))
    except parser.ParseError:
        return None  # split once already; the server judges what pglast cannot re-read
    stmts = tree.get("stmts", [])
    body = stmts[0].get("stmt", {}).get("CreateRoleStmt") if len(stmts) == 1 else None
    if body is None:
        return None
    data = statement.text.encode("utf-8")

    def line_of(location: int) -> int:
        return statement.line + data[: max(location, 0)].count(b"\n")

    name = str(body.get("role", ""))
    where = f"{file}:{statement.line}"
    if name.startswith("pg_"):
        raise RoleRefused(f"{where}: the prelude creates role {name!r}: names starting with pg_ are "
                          "PostgreSQL's own", file=file, line=statement.line, role=name)
    if name in created:
        raise RoleRefused(f"{where}: the prelude creates role {name!r} twice", file=file,
                          line=statement.line, role=name)
    inherit = True
    dropped: list[str] = []
    lists: dict[str, list[str]] = {key: [] for key in _MEMBERSHIP}
    for item in body.get("options", []) or []:
        option = item.get("DefElem", {})
        key = str(option.get("defname", ""))
        line = line_of(int(option.get("location", 0)))
        value = option.get("arg")
        if key in _REFUSED:
            if _boolean(value):
                raise RoleRefused(
                    f"{file}:{line}: the prelude asks for role {name!r} with {_REFUSED[key]}: "
                    "refused, a role with it could reach beyond the scratch database",
                    file=file, line=line, role=name, option=_REFUSED[key])
        elif key in _DROPPED:
            if key != "canlogin" or _boolean(value):
                dropped.append(_DROPPED[key])
        elif key == "inherit":
            inherit = _boolean(value)
        elif key in _MEMBERSHIP:
            for role, named in _role_names(value):
                if not named or role not in created:
                    raise RoleRefused(
                        f"{file}:{line}: the prelude makes role {name!r} {_membership(key, role)}, "
                        f"which this prelude did not create before: refused (only roles it created "
                        "may be named there)", file=file, line=line, role=name, option=_MEMBERSHIP[key])
                lists[key].append(role)
        else:
            raise RoleRefused(f"{file}:{line}: the prelude gives role {name!r} the option {key!r}, "
                              "which drillbook does not know: refused", file=file, line=line,
                              role=name, option=key)
    return RoleSpec(name, statement.line, inherit=inherit, in_roles=tuple(lists["addroleto"]),
                    members=tuple(lists["rolemembers"]), admins=tuple(lists["adminmembers"]),
                    dropped=tuple(dict.fromkeys(dropped)))


def _boolean(value: Any) -> bool:
    """A DefElem's boolean (``CREATEDB`` → true, ``NOCREATEDB`` → false)."""
    if isinstance(value, dict) and "Boolean" in value:
        return bool(value["Boolean"].get("boolval", False))
    if isinstance(value, dict) and "Integer" in value:
        return bool(value["Integer"].get("ival", 0))
    return value is None or bool(value)


def _role_names(value: Any) -> list[tuple[str, bool]]:
    """A role list as (name, named): ``CURRENT_USER``, ``SESSION_USER``… are not names (False)."""
    names = []
    for item in (value or {}).get("List", {}).get("items", []):
        spec = item.get("RoleSpec", {})
        if spec.get("roletype") == "ROLESPEC_CSTRING":
            names.append((str(spec.get("rolename", "")), True))
        else:
            names.append((str(spec.get("roletype", "")).removeprefix("ROLESPEC_"), False))
    return names


def _membership(key: str, role: str) -> str:
    if key == "addroleto":
        return f"a member of {role!r} (IN ROLE)"
    return f"the role of member {role!r} ({_MEMBERSHIP[key]})"
