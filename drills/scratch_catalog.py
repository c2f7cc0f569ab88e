"""What a configured scratch database holds: a catalog fingerprint, emptiness, and cleanup.

A database named ``scratch = true`` in the config belongs to someone: drillbook
may write to it only when it holds nothing, and must leave it exactly as it
found it. "Nothing" is more than "no tables": a schema, a function, an enum or
an extension is somebody's work too. So the catalog is read as a whole
(:func:`read_catalog`): the database's owner, ACL, comment and settings; every
schema with its owner, ACL and comment; the extensions; and every object of
every non-system schema and every database-wide object a role can create
(publications, languages, casts, large objects, foreign servers, …), each
named as ``pg_identify_object`` names it.

:func:`emptiness_findings` says what makes it non-empty; :func:`restore_catalog`
drops what a drill added (never ``DROP SCHEMA public``: its owner, ACL and OID
stay as they were) and puts back the schemas' owner, ACL and comment;
:func:`differences` compares two states, which is how cleanup proves itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql

# Shown per kind when refusing a non-empty scratch: enough to recognise, short enough to read.
_NAMES_SHOWN = 3
_DEFAULT_SCHEMAS = frozenset({"public"})
_DEFAULT_EXTENSIONS = frozenset({"plpgsql"})
# Cleanup repeats its drop pass while it makes progress (CASCADE removes dependants in any order).
_MAX_DROP_PASSES = 5

# Objects created by initdb have OIDs below FirstNormalObjectId; database-wide catalogs that also
# hold built-in rows (languages, casts, access methods) are read from there on.
_FIRST_NORMAL_OID = 16384

_USER_SCHEMAS = ("SELECT oid FROM pg_catalog.pg_namespace "
                 "WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'")

# Every catalog whose rows a non-superuser can create, with the column tying a row to a schema.
_NAMESPACED = (
    ("pg_class", "relnamespace"), ("pg_proc", "pronamespace"), ("pg_type", "typnamespace"),
    ("pg_operator", "oprnamespace"), ("pg_opclass", "opcnamespace"), ("pg_opfamily", "opfnamespace"),
    ("pg_collation", "collnamespace"), ("pg_conversion", "connamespace"),
    ("pg_ts_config", "cfgnamespace"), ("pg_ts_dict", "dictnamespace"), ("pg_ts_parser", "prsnamespace"),
    ("pg_ts_template", "tmplnamespace"), ("pg_statistic_ext", "stxnamespace"),
)
_DATABASE_WIDE = (
    "SELECT 'pg_catalog.pg_publication'::regclass, oid FROM pg_catalog.pg_publication",
    "SELECT 'pg_catalog.pg_event_trigger'::regclass, oid FROM pg_catalog.pg_event_trigger",
    *(f"SELECT 'pg_catalog.{table}'::regclass, oid FROM pg_catalog.{table} WHERE oid >= {_FIRST_NORMAL_OID}"
      for table in ("pg_language", "pg_cast", "pg_am")),
    "SELECT 'pg_catalog.pg_transform'::regclass, oid FROM pg_catalog.pg_transform",
    "SELECT 'pg_catalog.pg_foreign_data_wrapper'::regclass, oid FROM pg_catalog.pg_foreign_data_wrapper",
    "SELECT 'pg_catalog.pg_foreign_server'::regclass, oid FROM pg_catalog.pg_foreign_server",
    "SELECT 'pg_catalog.pg_default_acl'::regclass, oid FROM pg_catalog.pg_default_acl",
    "SELECT 'pg_catalog.pg_largeobject'::regclass, oid FROM pg_catalog.pg_largeobject_metadata",
    "SELECT 'pg_catalog.pg_subscription'::regclass, oid FROM pg_catalog.pg_subscription "
    "WHERE subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())",
)
_OBJECTS = (
    "WITH user_ns AS (" + _USER_SCHEMAS + "), objs(classid, objid) AS ("
    + " UNION ALL ".join(
        f"SELECT 'pg_catalog.{table}'::regclass, t.oid FROM pg_catalog.{table} t "
        f"WHERE t.{column} IN (SELECT oid FROM user_ns)" for table, column in _NAMESPACED)
    + " UNION ALL " + " UNION ALL ".join(_DATABASE_WIDE) + ") "
    # Objects that exist only as part of another (array and row types, a constraint's index) or of
    # an extension (its functions, operators) are that object: listing them would only repeat it.
    "SELECT i.type, coalesce(i.schema, ''), i.identity, EXISTS (SELECT 1 FROM pg_catalog.pg_depend d "
    "  WHERE d.classid = o.classid AND d.objid = o.objid AND d.objsubid = 0 AND d.deptype = 'a') "
    "FROM objs o CROSS JOIN LATERAL pg_catalog.pg_identify_object(o.classid, o.objid, 0) i "
    "WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = o.classid "
    "  AND d.objid = o.objid AND d.objsubid = 0 AND d.deptype IN ('i', 'e')) "
    "ORDER BY 1, 2, 3"
)
_SCHEMAS = (
    "SELECT n.nspname, pg_catalog.pg_get_userbyid(n.nspowner), n.nspacl::text, "
    "pg_catalog.obj_description(n.oid, 'pg_namespace') "
    "FROM pg_catalog.pg_namespace n WHERE n.oid IN (" + _USER_SCHEMAS + ") ORDER BY 1"
)
_EXTENSIONS = (
    "SELECT e.extname, e.extversion, n.nspname FROM pg_catalog.pg_extension e "
    "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace ORDER BY 1"
)
_DATABASE = (
    "SELECT pg_catalog.pg_get_userbyid(d.datdba), d.datacl::text, "
    "pg_catalog.shobj_description(d.oid, 'pg_database'), d.datconnlimit, d.datallowconn, "
    "coalesce((SELECT pg_catalog.array_agg(coalesce(pg_catalog.pg_get_userbyid(s.setrole), '') || ': ' "
    "  || pg_catalog.array_to_string(s.setconfig, ', ') ORDER BY s.setrole) "
    "  FROM pg_catalog.pg_db_role_setting s WHERE s.setdatabase = d.oid), '{}') "
    "FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()"
)

# pg_identify_object's type → the DROP statement's object kind (kinds missing here are left for
# :func:`differences` to report rather than guessed at).
_DROP_KIND = {
    "table": "TABLE", "view": "VIEW", "materialized view": "MATERIALIZED VIEW", "sequence": "SEQUENCE",
    "index": "INDEX", "foreign table": "FOREIGN TABLE", "composite type": "TYPE", "type": "TYPE",
    "function": "FUNCTION", "procedure": "PROCEDURE", "aggregate": "AGGREGATE", "operator": "OPERATOR",
    "operator class": "OPERATOR CLASS", "operator family": "OPERATOR FAMILY", "collation": "COLLATION",
    "conversion": "CONVERSION", "text search configuration": "TEXT SEARCH CONFIGURATION",
    "text search dictionary": "TEXT SEARCH DICTIONARY", "text search parser": "TEXT SEARCH PARSER",
    "text search template": "TEXT SEARCH TEMPLATE", "statistics object": "STATISTICS",
    "publication": "PUBLICATION", "cast": "CAST", "language": "LANGUAGE",
    "foreign-data wrapper": "FOREIGN DATA WRAPPER", "server": "SERVER", "access method": "ACCESS METHOD",
    "event trigger": "EVENT TRIGGER",
}


@dataclass(frozen=True, order=True)
class CatalogObject:
    """One object as ``pg_identify_object`` names it (``identity`` is quoted by the server)."""

    kind: str
    schema: str
    identity: str
    auto: bool = False  # exists because of another object (a column's sequence, a statistics object)


@dataclass(frozen=True)
class SchemaState:
    name: str
    owner: str
    acl: str | None
    comment: str | None


@dataclass(frozen=True)
class DatabaseState:
    owner: str
    acl: str | None
    comment: str | None
    connection_limit: int
    allow_connections: bool
    settings: tuple[str, ...]


@dataclass(frozen=True)
class CatalogState:
    """The parts of a database's catalog a drill could change; equal states mean "as found"."""

    database: DatabaseState
    schemas: tuple[SchemaState, ...]
    extensions: tuple[tuple[str, str, str], ...]  # name, version, schema
    objects: tuple[CatalogObject, ...]

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of this state (for evidence: before and after)."""
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_catalog(conn: psycopg.Connection[Any]) -> CatalogState:
    """Read the state of the database ``conn`` is connected to (any role can read all of it)."""
    row = conn.execute(_DATABASE).fetchone()
    if row is None:  # the database was dropped under us
        raise psycopg.OperationalError("the connected database is not in pg_database")
    database = DatabaseState(owner=row[0], acl=row[1], comment=row[2], connection_limit=int(row[3]),
                             allow_connections=bool(row[4]), settings=tuple(row[5]))
    schemas = tuple(SchemaState(*r) for r in conn.execute(_SCHEMAS).fetchall())
    extensions = tuple((str(a), str(b), str(c)) for a, b, c in conn.execute(_EXTENSIONS).fetchall())
    objects = tuple(CatalogObject(kind=k, schema=s, identity=i, auto=bool(a))
                    for k, s, i, a in conn.execute(_OBJECTS).fetchall())
    return CatalogState(database=database, schemas=schemas, extensions=extensions, objects=objects)


def emptiness_findings(state: CatalogState) -> dict[str, list[str]]:
    """What makes the database non-empty, by kind (``{"function": ["public.f(integer)"], ...}``).

    Empty: only the ``public`` schema (or none), no extension but ``plpgsql``,
    and no object in any schema nor any database-wide object.
    """
    found: dict[str, list[str]] = {}
    for schema in state.schemas:
        if schema.name not in _DEFAULT_SCHEMAS:
            found.setdefault("schema", []).append(schema.name)
    for name, _version, _schema in state.extensions:
        if name not in _DEFAULT_EXTENSIONS:
            found.setdefault("extension", []).append(name)
    for obj in state.objects:
        found.setdefault(obj.kind, []).append(obj.identity)
    return found


def describe_findings(found: dict[str, list[str]]) -> str:
    """``function: 3 (public.f(integer), …); schema: 1 (app)``: counts per kind and a few names."""
    parts = []
    for kind in sorted(found, key=lambda k: (-len(found[k]), k)):
        names = found[kind]
        shown = ", ".join(names[:_NAMES_SHOWN]) + (", …" if len(names) > _NAMES_SHOWN else "")
        parts.append(f"{kind}: {len(names)} ({shown})")
    return "; ".join(parts)


def differences(before: CatalogState, after: CatalogState) -> list[str]:
    """What changed between two states, one line per difference (empty when equal)."""
    lines = []
    if before.database != after.database:
        for name, old in asdict(before.database).items():
            new = getattr(after.database, name)
            if old != new:
                lines.append(f"database {name}: {old!r} → {new!r}")
    old_schemas = {s.name: s for s in before.schemas}
    new_schemas = {s.name: s for s in after.schemas}
    for name in sorted(old_schemas.keys() | new_schemas.keys()):
        old_s, new_s = old_schemas.get(name), new_schemas.get(name)
        if old_s == new_s:
            continue
        if old_s is None:
            lines.append(f"schema {name} added")
        elif new_s is None:
            lines.append(f"schema {name} removed")
        else:
            for field_name in ("owner", "acl", "comment"):
                if getattr(old_s, field_name) != getattr(new_s, field_name):
                    lines.append(f"schema {name} {field_name}: {getattr(old_s, field_name)!r} → "
                                 f"{getattr(new_s, field_name)!r}")
    for ext in sorted(set(after.extensions) - set(before.extensions)):
        lines.append(f"extension {ext[0]} {ext[1]} added")
    for ext in sorted(set(before.extensions) - set(after.extensions)):
        lines.append(f"extension {ext[0]} {ext[1]} removed")
    old_objects = {(o.kind, o.identity) for o in before.objects}
    new_objects = {(o.kind, o.identity) for o in after.objects}
    lines += [f"{kind} {identity} added" for kind, identity in sorted(new_objects - old_objects)]
    lines += [f"{kind} {identity} removed" for kind, identity in sorted(old_objects - new_objects)]
    return lines


def restore_catalog(conn: psycopg.Connection[Any], before: CatalogState) -> list[str]:
    """Drop what was added since ``before`` and put the schemas' owner, ACL and comment back.

    Returns the statements that failed (for the journal); the caller compares
    the result with ``before`` to know whether the database is as found.
    ``conn`` must be in autocommit mode: one failing DROP must not undo the others.
    """
    failures: list[str] = []

    def run(statement: sql.Composed) -> None:
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            failures.append(f"{statement.as_string(conn)}: {str(exc).strip()}")

    current = read_catalog(conn)
    kept_extensions = {e[0] for e in before.extensions}
    for name, _version, _schema in current.extensions:
        if name not in kept_extensions:
            run(sql.SQL("DROP EXTENSION IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    kept_schemas = {s.name for s in before.schemas}
    for schema in current.schemas:
        if schema.name not in kept_schemas:
            run(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema.name)))
    kept = {(o.kind, o.identity) for o in before.objects}
    for _ in range(_MAX_DROP_PASSES):
        added = [o for o in read_catalog(conn).objects if (o.kind, o.identity) not in kept]
        droppable = [o for o in added if o.kind in _DROP_KIND or o.kind == "large object"]
        if not droppable:
            break
        # Objects that exist for another's sake go with it: drop the independent ones first.
        for obj in sorted(droppable, key=lambda o: o.auto):
            run(_drop_statement(obj))
    for schema in before.schemas:
        now = next((s for s in read_catalog(conn).schemas if s.name == schema.name), None)
        if now is not None and now != schema:
            _restore_schema(conn, schema, now, run)
    return failures


def _drop_statement(obj: CatalogObject) -> sql.Composed:
    if obj.kind == "large object":
        return sql.SQL("SELECT pg_catalog.lo_unlink({}) WHERE EXISTS (SELECT 1 FROM "
                       "pg_catalog.pg_largeobject_metadata WHERE oid = {})").format(
            sql.Literal(int(obj.identity)), sql.Literal(int(obj.identity)))
    # The identity comes from pg_identify_object, which quotes every name in it (quote_identifier,
    # format_type_be_qualified): names chosen by the dump cannot break out of the statement.
    kind = sql.SQL(_DROP_KIND[obj.kind])
    return sql.SQL("DROP {} IF EXISTS {} CASCADE").format(kind, sql.SQL(obj.identity))


def _restore_schema(conn: psycopg.Connection[Any], want: SchemaState, now: SchemaState,
                    run: Any) -> None:
    """Owner, then ACL (revoke what is there, grant what was), then comment: back as captured."""
    schema = sql.Identifier(want.name)
    if now.owner != want.owner:
        run(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(schema, sql.Identifier(want.owner)))
    if now.acl != want.acl and want.acl is not None:
        grantees = _acl_grants(conn, now.acl)
        for grantee in sorted({g for g, _p, _o in grantees}):
            run(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {} CASCADE").format(schema, _grantee(grantee)))
        for grantee, privilege, grantable in _acl_grants(conn, want.acl):
            run(sql.SQL("GRANT {} ON SCHEMA {} TO {}{}").format(
                sql.SQL(privilege), schema, _grantee(grantee),
                sql.SQL(" WITH GRANT OPTION" if grantable else "")))
    if now.comment != want.comment:
        run(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(schema, sql.Literal(want.comment)))


def _acl_grants(conn: psycopg.Connection[Any], acl: str | None) -> Sequence[tuple[str, str, bool]]:
    """(grantee or "" for PUBLIC, privilege, grantable) of an ACL, as the server reads it."""
    if acl is None:
        return []
    rows = conn.execute(
        "SELECT coalesce(pg_catalog.pg_get_userbyid(NULLIF(a.grantee, 0)), ''), a.privilege_type, "
        "a.is_grantable FROM pg_catalog.aclexplode(%s::pg_catalog.aclitem[]) a "
        "WHERE a.privilege_type IN ('USAGE', 'CREATE')", (acl,),
    ).fetchall()
    return [(str(g), str(p), bool(o)) for g, p, o in rows]


def _grantee(name: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if name == "" else sql.Identifier(name)
