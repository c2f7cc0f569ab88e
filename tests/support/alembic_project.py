"""A real Alembic project written by the tests: alembic.ini, env.py and three revisions.

Run by the real ``alembic`` package (a test extra). env.py reads ``DATABASE_URL``,
which drillbook sets to a libpq ``postgresql://`` URL, and converts the scheme
to ``postgresql+psycopg://`` itself: SQLAlchemy needs the driver named, and only
the project knows its driver (drillbook does not guess).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

REVISIONS = ("a1f0c0de0001", "b2f0c0de0002", "c3f0c0de0003")
HEAD = REVISIONS[-1]

_INI = """\
[alembic]
script_location = %(here)s/migrations
"""

_ENV = '''\
import os

from alembic import context
from sqlalchemy import create_engine, pool

url = os.environ["DATABASE_URL"]
# drillbook hands a libpq URL; SQLAlchemy wants the driver in the scheme.
if url.startswith("postgresql://"):
    url = "postgresql+psycopg://" + url[len("postgresql://"):]

engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
'''

_REVISION = '''\
from alembic import op

revision = "{revision}"
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
{upgrade}


def downgrade():
{downgrade}
'''

_STEPS = (
    ("create accounts",
     'op.execute("CREATE TABLE accounts (id serial PRIMARY KEY, email text NOT NULL UNIQUE)")',
     'op.execute("DROP TABLE accounts")'),
    ("create orders",
     'op.execute("CREATE TABLE orders (id serial PRIMARY KEY, '
     'account_id integer NOT NULL REFERENCES accounts (id), total numeric(12, 2) NOT NULL)")',
     'op.execute("DROP TABLE orders")'),
    ("index orders by account",
     'op.execute("ALTER TABLE accounts ADD COLUMN created_at timestamptz NOT NULL DEFAULT now()")\n'
     'op.execute("CREATE INDEX orders_account_idx ON orders (account_id)")',
     'op.execute("DROP INDEX orders_account_idx")\n'
     'op.execute("ALTER TABLE accounts DROP COLUMN created_at")'),
)


def write_alembic_project(root: Path, *, forgetful_down: bool = False, failing_head: bool = False,
                          revisions: int = 3) -> Path:
    """An Alembic project in ``root``; ``forgetful_down``: revision 1's downgrade forgets its table;
    ``failing_head``: the last upgrade refers to a table that does not exist."""
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    (root / "alembic.ini").write_text(_INI, encoding="utf-8")
    (root / "migrations" / "env.py").write_text(_ENV, encoding="utf-8")
    for index, (name, upgrade, downgrade) in enumerate(_STEPS[:revisions]):
        if forgetful_down and index == 0:
            downgrade = "pass  # forgets DROP TABLE accounts"
        if failing_head and index == revisions - 1:
            upgrade = 'op.execute("ALTER TABLE no_such_table ADD COLUMN x integer")'
        text = _REVISION.format(revision=REVISIONS[index], down=REVISIONS[index - 1] if index else None,
                                upgrade=textwrap.indent(upgrade, "    "),
                                downgrade=textwrap.indent(downgrade, "    "))
        (versions / f"{REVISIONS[index]}_{name.replace(' ', '_')}.py").write_text(text, encoding="utf-8")
    return root
