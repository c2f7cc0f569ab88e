"""A normalised schema fingerprint from ``pg_catalog``, and a readable diff of two.

A :class:`SchemaSnapshot` maps one key per schema object (``table
public.accounts``, ``column public.accounts.email``, ``index public.x_idx``…)
to its normalised attributes. What is covered: schemas, extensions, tables
(kind, partitioning, inheritance, row-level security), columns (type, not
null, default, identity, generated, collation, position), constraints,
indexes, views and materialised views, functions, procedures and aggregates,
triggers, sequences (definition, not their current value), types (enums,
domains, composites, ranges), policies and rules.

Deliberately left out, because they differ between environments without the
schema differing: owners, ACLs, OIDs, tablespaces, statistics, comments,
sequence positions and every row of data.

Definitions come from the server's own deparsers (``pg_get_indexdef``,
``pg_get_constraintdef``, ``pg_get_viewdef``, ``pg_get_functiondef``…) under
``search_path = pg_catalog``, so every name is schema-qualified and the text
is the same whatever the session's search path was; the whole snapshot is one
query in one read-only transaction. Not a ``pg_dump`` diff: no dump-order
noise, no ``\\restrict`` keys, no ownership lines.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import pq

from .errors import DrillbookError
from .verdict import Verdict

# Lines of a diff shown in a verdict message; the evidence keeps all of them.
MESSAGE_DIFF_LINES = 8

_NOT_SYSTEM = (
    "{n}.nspname NOT IN ('pg_catalog', 'information_schema')"
    " AND {n}.nspname NOT LIKE 'pg\\_toast%' AND {n}.nspname NOT LIKE 'pg\\_temp\\_%'"
)


def _ns(alias: str) -> str:
    return _NOT_SYSTEM.format(n=alias)


def _not_extension_member(classid: str, oid: str) -> str:
    """Objects an extension created belong to the extension, not to the migrations."""
    return (f"NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{classid}'::regclass"
            f" AND e.objid = {oid} AND e.deptype = 'e')")


# Each part returns (key, attributes as jsonb). jsonb sorts keys, so two equal
# schemas give byte-identical attribute text.
_PARTS = [
    # schemas
    f"""SELECT 'schema ' || quote_ident(n.nspname), '{{}}'::jsonb
        FROM pg_namespace n WHERE {_ns('n')}""",
    # extensions
    """SELECT 'extension ' || quote_ident(x.extname),
              jsonb_build_object('version', x.extversion, 'schema', n.nspname)
        FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace""",
    # tables, views, materialised views, foreign tables
    f"""SELECT CASE c.relkind WHEN 'v' THEN 'view ' WHEN 'm' THEN 'materialized_view '
                              WHEN 'f' THEN 'foreign_table ' ELSE 'table ' END
                  || format('%I.%I', n.nspname, c.relname),
              jsonb_strip_nulls(jsonb_build_object(
                'kind', c.relkind::text,
                'unlogged', NULLIF(c.relpersistence = 'u', false),
                'partition_key', CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
                'partition_of', (SELECT format('%I.%I', pn.nspname, p.relname)
                                 FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                                 JOIN pg_namespace pn ON pn.oid = p.relnamespace
                                 WHERE i.inhrelid = c.oid AND c.relispartition),
                'partition_bound', CASE WHEN c.relispartition
                                        THEN pg_get_expr(c.relpartbound, c.oid) END,
                'inherits', (SELECT jsonb_agg(format('%I.%I', pn.nspname, p.relname)
                                              ORDER BY i.inhseqno)
                             FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                             JOIN pg_namespace pn ON pn.oid = p.relnamespace
                             WHERE i.inhrelid = c.oid AND NOT c.relispartition),
                'row_security', NULLIF(c.relrowsecurity, false),
                'force_row_security', NULLIF(c.relforcerowsecurity, false),
                'options', to_jsonb(c.reloptions),
                'definition', CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid, true) END))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {_ns('n')}
          AND {_not_extension_member('pg_class', 'c.oid')}""",
    # columns (of tables, views and standalone composite types)
    f"""SELECT 'column ' || format('%I.%I.%I', n.nspname, c.relname, a.attname),
              jsonb_strip_nulls(jsonb_build_object(
                'table', format('%I.%I', n.nspname, c.relname),
                'position', row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum),
                'type', format_type(a.atttypid, a.atttypmod),
                'not_null', a.attnotnull,
                'default', pg_get_expr(d.adbin, d.adrelid),
                'identity', NULLIF(a.attidentity::text, ''),
                'generated', NULLIF(a.attgenerated::text, ''),
                'collation', CASE WHEN a.attcollation <> t.typcollation
                                  THEN (SELECT collname FROM pg_collation WHERE oid = a.attcollation) END))
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
          AND {_ns('n')} AND {_not_extension_member('pg_class', 'c.oid')}""",
    # table constraints
    f"""SELECT 'constraint ' || format('%I.%I.%I', n.nspname, c.relname, k.conname),
              jsonb_build_object('table', format('%I.%I', n.nspname, c.relname),
                                 'type', k.contype::text,
                                 'definition', pg_get_constraintdef(k.oid, true))
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE k.conrelid <> 0 AND {_ns('n')}""",
    # indexes
    f"""SELECT 'index ' || format('%I.%I', n.nspname, ic.relname),
              jsonb_build_object('table', format('%I.%I', n.nspname, c.relname),
                                 'definition', pg_get_indexdef(i.indexrelid),
                                 'valid', i.indisvalid)
        FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = ic.relnamespace
        WHERE {_ns('n')} AND {_not_extension_member('pg_class', 'ic.oid')}""",
    # sequences: definition and owning column, never the current value
    f"""SELECT 'sequence ' || format('%I.%I', n.nspname, c.relname),
              jsonb_strip_nulls(jsonb_build_object(
                'type', format_type(s.seqtypid, NULL), 'start', s.seqstart,
                'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax,
                'cache', s.seqcache, 'cycle', s.seqcycle,
                'table', (SELECT format('%I.%I', tn.nspname, t.relname)
                          FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
                          JOIN pg_namespace tn ON tn.oid = t.relnamespace
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                            AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                          LIMIT 1),
                'owned_by', (SELECT format('%I.%I.%I', tn.nspname, t.relname, a.attname)
                             FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
                             JOIN pg_namespace tn ON tn.oid = t.relnamespace
                             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                             WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                               AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                             LIMIT 1)))
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_ns('n')} AND {_not_extension_member('pg_class', 'c.oid')}""",
    # triggers
    f"""SELECT 'trigger ' || format('%I.%I.%I', n.nspname, c.relname, g.tgname),
              jsonb_build_object('table', format('%I.%I', n.nspname, c.relname),
                                 'definition', pg_get_triggerdef(g.oid, true),
                                 'enabled', g.tgenabled::text)
        FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT g.tgisinternal AND {_ns('n')}""",
    # functions, procedures, aggregates
    f"""SELECT 'function ' || p.oid::regprocedure::text,
              jsonb_build_object(
                'kind', p.prokind::text,
                'definition', CASE WHEN p.prokind = 'a' THEN
                    (SELECT format('aggregate returns %s sfunc %s stype %s final %s init %s',
                                   format_type(p.prorettype, NULL), g.aggtransfn::regproc::text,
                                   format_type(g.aggtranstype, NULL), g.aggfinalfn::regproc::text,
                                   coalesce(g.agginitval, ''))
                     FROM pg_aggregate g WHERE g.aggfnoid = p.oid)
                  ELSE pg_get_functiondef(p.oid) END)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {_ns('n')} AND {_not_extension_member('pg_proc', 'p.oid')}""",
    # types: enums, domains, ranges, standalone composites (arrays and table row types are implied)
    f"""SELECT 'type ' || format('%I.%I', n.nspname, t.typname),
              jsonb_strip_nulls(jsonb_build_object(
                'kind', t.typtype::text,
                'labels', CASE WHEN t.typtype = 'e' THEN
                    (SELECT jsonb_agg(e.enumlabel ORDER BY e.enumsortorder)
                     FROM pg_enum e WHERE e.enumtypid = t.oid) END,
                'base', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
                'not_null', CASE WHEN t.typtype = 'd' THEN t.typnotnull END,
                'default', t.typdefault,
                'checks', CASE WHEN t.typtype = 'd' THEN
                    (SELECT jsonb_agg(pg_get_constraintdef(k.oid, true) ORDER BY k.conname)
                     FROM pg_constraint k WHERE k.contypid = t.oid) END,
                'subtype', (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r
                            WHERE r.rngtypid = t.oid)))
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE {_ns('n')} AND {_not_extension_member('pg_type', 't.oid')}
          AND (t.typtype IN ('e', 'd', 'r')
               OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))""",
    # row-level security policies
    f"""SELECT 'policy ' || format('%I.%I.%I', n.nspname, c.relname, p.polname),
              jsonb_strip_nulls(jsonb_build_object(
                'table', format('%I.%I', n.nspname, c.relname), 'command', p.polcmd::text,
                'permissive', p.polpermissive,
                'using', pg_get_expr(p.polqual, p.polrelid),
                'check', pg_get_expr(p.polwithcheck, p.polrelid)))
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_ns('n')}""",
    # rules other than the ones that implement views
    f"""SELECT 'rule ' || format('%I.%I.%I', n.nspname, c.relname, r.rulename),
              jsonb_build_object('table', format('%I.%I', n.nspname, c.relname),
                                 'definition', pg_get_ruledef(r.oid, true))
        FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE r.rulename <> '_RETURN' AND {_ns('n')}""",
]

SNAPSHOT_QUERY = "\nUNION ALL\n".join(f"({part})" for part in _PARTS)


class SchemaUnreadable(DrillbookError):
    """The catalog could not be read (the connection is busy or the server refused)."""

    default_hint = "snapshot on an idle connection with permission to read pg_catalog"


@dataclass(frozen=True)
class SchemaSnapshot:
    """Every schema object by key, with its normalised attributes."""

    objects: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON form: equal schemas, equal digests."""
        text = json.dumps(self.objects, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def counts(self) -> dict[str, int]:
        """How many objects of each kind (``table``, ``index``…)."""
        found: dict[str, int] = {}
        for key in self.objects:
            kind = key.split(" ", 1)[0]
            found[kind] = found.get(kind, 0) + 1
        return dict(sorted(found.items()))

    def without_tables(self, names: Iterable[str]) -> SchemaSnapshot:
        """The snapshot minus the named tables and everything that belongs to them.

        A name matches ``schema.table`` or, unqualified, a table of that name
        in any schema (e.g. a migration tool's own history table).
        """
        wanted = {name.strip() for name in names if name.strip()}
        if not wanted:
            return self

        def ignored(qualified: str) -> bool:
            return qualified in wanted or qualified.split(".", 1)[-1] in wanted

        kept: dict[str, Mapping[str, Any]] = {}
        for key, attrs in self.objects.items():
            kind, _, name = key.partition(" ")
            owner = attrs.get("table")
            if kind == "table" and ignored(name):
                continue
            if isinstance(owner, str) and ignored(owner):
                continue
            kept[key] = attrs
        # A tool's own schema (Atlas's atlas_schema_revisions.atlas_schema_revisions) goes with its
        # ignored table when nothing else is left in it; a schema still holding objects stays.
        emptied = {w.split(".", 1)[0] for w in wanted if "." in w}
        for schema in emptied:
            if not any(key.partition(" ")[2].startswith(f"{schema}.") for key in kept):
                kept.pop(f"schema {schema}", None)
        return SchemaSnapshot(kept)


def snapshot(conn: psycopg.Connection[Any]) -> SchemaSnapshot:
    """Read the schema of the connected database in one read-only transaction."""
    status = conn.info.transaction_status
    if status != pq.TransactionStatus.IDLE:
        raise SchemaUnreadable(
            f"cannot snapshot the schema: the connection is not idle ({status.name})",
        )
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        # Pinned so that every deparsed name is schema-qualified, whatever the caller's path.
        conn.execute("SET LOCAL search_path = pg_catalog")
        rows = conn.execute(SNAPSHOT_QUERY).fetchall()
    objects: dict[str, Mapping[str, Any]] = {}
    for key, attrs in rows:
        objects[str(key)] = dict(attrs or {})
    return SchemaSnapshot(dict(sorted(objects.items())))


@dataclass(frozen=True)
class Change:
    """One attribute of one object that differs between the two sides."""

    key: str
    attribute: str
    left: Any
    right: Any


@dataclass(frozen=True)
class SchemaDiff:
    """What exists only on one side, and what differs, between two snapshots."""

    left_name: str
    right_name: str
    only_left: tuple[str, ...] = ()
    only_right: tuple[str, ...] = ()
    changed: tuple[Change, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.only_left or self.only_right or self.changed)

    def items(self) -> set[tuple[str, str, str, str]]:
        """Each difference as a comparable tuple (for "is this difference new?")."""
        found = {("only_left", key, "", "") for key in self.only_left}
        found |= {("only_right", key, "", "") for key in self.only_right}
        found |= {("changed", c.key + "." + c.attribute, _text(c.left), _text(c.right))
                  for c in self.changed}
        return found

    def lines(self) -> list[str]:
        """A readable diff, one line per difference."""
        out = [f"only in {self.left_name}: {key}" for key in self.only_left]
        out += [f"only in {self.right_name}: {key}" for key in self.only_right]
        out += [f"{c.key}: {c.attribute} is {_text(c.left)} in {self.left_name}, "
                f"{_text(c.right)} in {self.right_name}" for c in self.changed]
        return out

    def to_evidence(self) -> dict[str, Any]:
        return {
            "left": self.left_name,
            "right": self.right_name,
            f"only_in_{_slug(self.left_name)}": list(self.only_left),
            f"only_in_{_slug(self.right_name)}": list(self.only_right),
            "changed": [{"object": c.key, "attribute": c.attribute,
                         self.left_name: c.left, self.right_name: c.right} for c in self.changed],
            "lines": self.lines(),
        }


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_") or "side"


def _text(value: Any) -> str:
    if value is None:
        return "absent"
    if isinstance(value, str):
        return repr(value) if len(value) <= 120 else repr(value[:117] + "...")
    return json.dumps(value, ensure_ascii=False)


def diff_schemas(left: SchemaSnapshot, right: SchemaSnapshot, *, left_name: str = "left",
                 right_name: str = "right") -> SchemaDiff:
    """Objects only on one side, then attribute differences of objects on both."""
    lk, rk = set(left.objects), set(right.objects)
    changed = []
    for key in sorted(lk & rk):
        a, b = left.objects[key], right.objects[key]
        for attribute in sorted(set(a) | set(b)):
            if a.get(attribute) != b.get(attribute):
                changed.append(Change(key, attribute, a.get(attribute), b.get(attribute)))
    return SchemaDiff(left_name, right_name, tuple(sorted(lk - rk)), tuple(sorted(rk - lk)),
                      tuple(changed))


def schemas_match(expected: SchemaSnapshot, actual: SchemaSnapshot, *, check_id: str,
                  expected_name: str, actual_name: str,
                  evidence: Mapping[str, Any] | None = None) -> Verdict:
    """Passed when the two snapshots are identical; failed with the readable diff otherwise."""
    diff = diff_schemas(expected, actual, left_name=expected_name, right_name=actual_name)
    info = {"fingerprint": {expected_name: expected.digest(), actual_name: actual.digest()},
            "objects": {expected_name: expected.counts(), actual_name: actual.counts()},
            **dict(evidence or {})}
    if diff.empty:
        return Verdict.passed(
            check_id, f"the schemas of {expected_name} and {actual_name} are identical "
                      f"({len(expected.objects)} objects, fingerprint {expected.digest()[:12]})",
            measured=actual.digest(), expected=expected.digest(), evidence=info,
        )
    lines = diff.lines()
    shown = "; ".join(lines[:MESSAGE_DIFF_LINES])
    more = f"; and {len(lines) - MESSAGE_DIFF_LINES} more" if len(lines) > MESSAGE_DIFF_LINES else ""
    return Verdict.failed(
        check_id, f"{len(lines)} schema differences between {expected_name} and {actual_name}: "
                  f"{shown}{more}",
        measured=actual.digest(), expected=expected.digest(),
        evidence={**info, "diff": diff.to_evidence()},
    )
