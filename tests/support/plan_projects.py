"""Projects written by the real tools, and what the tools recorded for them (issue 12).

The sqitch projects were made with sqitch 1.3.1 (``sqitch init/add/tag/rework``) and deployed
with ``sqitch deploy --verify`` to PostgreSQL 15; ``SQITCH_CHANGES`` are the rows it wrote to
``sqitch.changes``. The Liquibase changelogs were applied by Liquibase 4.28.0 (``LIQUIBASE_9``)
and 4.4.0 (``LIQUIBASE_8``), one file at a time (``liquibase update --changelog-file=FILE``);
the rows are what each wrote to ``databasechangelog``. File contents are byte for byte the
files the tools read: the hashes depend on them.
"""

from __future__ import annotations

from pathlib import Path

FLIPR: dict[str, str] = {'deploy/appschema.sql': '-- Deploy flipr:appschema to pg\n'
                         '\n'
                         'BEGIN;\n'
                         '\n'
                         'CREATE SCHEMA flipr;\n'
                         '\n'
                         'COMMIT;\n',
 'deploy/functions/count_users.sql': 'CREATE FUNCTION flipr.count_users() RETURNS bigint LANGUAGE '
                                     'sql STABLE AS $$ SELECT count(*) FROM flipr.users $$;\n',
 'deploy/insert_user.sql': '-- Deploy flipr:insert_user to pg\n'
                           '-- requires: users\n'
                           '-- requires: appschema\n'
                           '\n'
                           'BEGIN;\n'
                           '\n'
                           'CREATE EXTENSION IF NOT EXISTS pgcrypto;\n'
                           '\n'
                           'CREATE OR REPLACE FUNCTION flipr.insert_user(\n'
                           '    nickname TEXT,\n'
                           '    password TEXT\n'
                           ') RETURNS VOID LANGUAGE SQL SECURITY DEFINER AS $$\n'
                           "    INSERT INTO flipr.users values($1, crypt($2, gen_salt('md5')));\n"
                           '$$;\n'
                           '\n'
                           'COMMIT;\n',
 'deploy/insert_user@v1.0.0-dev1.sql': '-- Deploy flipr:insert_user to pg\n'
                                       'BEGIN;\n'
                                       '\n'
                                       'CREATE OR REPLACE FUNCTION flipr.insert_user(\n'
                                       '    nickname TEXT,\n'
                                       '    password TEXT\n'
                                       ') RETURNS VOID LANGUAGE SQL SECURITY DEFINER AS $$\n'
                                       '    INSERT INTO flipr.users VALUES($1, md5($2));\n'
                                       '$$;\n'
                                       '\n'
                                       'COMMIT;\n',
 'deploy/users.sql': '-- Deploy flipr:users to pg\n'
                     '-- requires: appschema\n'
                     '\n'
                     'BEGIN;\n'
                     '\n'
                     'CREATE TABLE flipr.users (\n'
                     '    nickname  TEXT        PRIMARY KEY,\n'
                     '    password  TEXT        NOT NULL,\n'
                     '    timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW()\n'
                     ');\n'
                     '\n'
                     'COMMIT;\n',
 'revert/appschema.sql': '-- Revert flipr:appschema from pg\n'
                         '\n'
                         'BEGIN;\n'
                         '\n'
                         'DROP SCHEMA flipr;\n'
                         '\n'
                         'COMMIT;\n',
 'revert/functions/count_users.sql': 'DROP FUNCTION flipr.count_users();\n',
 'revert/insert_user.sql': '-- Revert flipr:insert_user from pg\n'
                           '\n'
                           'BEGIN;\n'
                           '\n'
                           'CREATE OR REPLACE FUNCTION flipr.insert_user(\n'
                           '    nickname TEXT,\n'
                           '    password TEXT\n'
                           ') RETURNS VOID LANGUAGE SQL SECURITY DEFINER AS $$\n'
                           '    INSERT INTO flipr.users VALUES($1, md5($2));\n'
                           '$$;\n'
                           '\n'
                           'COMMIT;\n',
 'revert/insert_user@v1.0.0-dev1.sql': 'BEGIN;\n'
                                       'DROP FUNCTION flipr.insert_user(TEXT, TEXT);\n'
                                       'COMMIT;\n',
 'revert/users.sql': 'BEGIN;\nDROP TABLE flipr.users;\nCOMMIT;\n',
 'sqitch.plan': '%syntax-version=1.0.0\n'
                '%project=flipr\n'
                '%uri=https://github.com/sqitchers/sqitch-intro/\n'
                '\n'
                'appschema 2026-12-03T11:09:40Z Marge N. O’Vera <marge@example.com> # Add schema '
                'for all flipr objects.\n'
                'users [appschema] 2026-12-03T11:09:41Z Marge N. O’Vera <marge@example.com> # '
                'Creates table to track our users.\n'
                'insert_user [users appschema] 2026-12-03T11:09:42Z Marge N. O’Vera '
                '<marge@example.com> # Creates a function to insert a user.\n'
                '@v1.0.0-dev1 2026-12-03T11:09:43Z Marge N. O’Vera <marge@example.com> # Tag '
                'v1.0.0-dev1.\n'
                'insert_user [insert_user@v1.0.0-dev1] 2026-12-03T11:09:44Z Marge N. O’Vera '
                '<marge@example.com> # Change insert_user to use pgcrypto.\n'
                'functions/count_users [users] 2026-12-03T11:09:52Z Marge N. O’Vera '
                '<marge@example.com> # Counting function in a subfolder.\n'
                '@v1.0.0 2026-12-03T11:09:52Z Marge N. O’Vera <marge@example.com> # Release 1.0\n',
 'verify/appschema.sql': '-- Verify flipr:appschema on pg\n'
                         '\n'
                         "SELECT pg_catalog.has_schema_privilege('flipr', 'usage');\n",
 'verify/functions/count_users.sql': 'SELECT flipr.count_users();\n',
 'verify/insert_user.sql': '-- Verify flipr:insert_user on pg\n'
                           '\n'
                           'BEGIN;\n'
                           '\n'
                           "SELECT has_function_privilege('flipr.insert_user(text, text)', "
                           "'execute');\n"
                           '\n'
                           'SELECT 1/COUNT(*) FROM pg_catalog.pg_proc\n'
                           " WHERE proname = 'insert_user' AND prosrc LIKE '%crypt(%';\n"
                           '\n'
                           'ROLLBACK;\n',
 'verify/insert_user@v1.0.0-dev1.sql': "SELECT has_function_privilege('flipr.insert_user(text, "
                                       "text)', 'execute');\n",
 'verify/users.sql': 'SELECT nickname, password, timestamp\n  FROM flipr.users\n WHERE FALSE;\n'}

FLIPR_EXT: dict[str, str] = {'deploy/grants.sql': 'GRANT USAGE ON SCHEMA flipr TO flipr_reader;\n',
 'deploy/roles.sql': 'CREATE ROLE flipr_reader;\n',
 'revert/grants.sql': 'REVOKE USAGE ON SCHEMA flipr FROM flipr_reader;\n',
 'revert/roles.sql': 'DROP ROLE flipr_reader;\n',
 'sqitch.plan': '%syntax-version=1.0.0\n'
                '%project=flipr_ext\n'
                '\n'
                'roles [flipr:users] 2026-12-03T11:18:12Z Marge N. O’Vera <marge@example.com> # '
                'Roles for flipr users.\\nSecond line with a \\\\ backslash\n'
                'grants [roles flipr:appschema@v1.0.0 !flipr:legacy] 2026-12-03T11:18:13Z Marge N. '
                'O’Vera <marge@example.com> # Grants\n',
 'verify/grants.sql': '-- Verify flipr_ext:grants on pg\n'
                      '\n'
                      'BEGIN;\n'
                      '\n'
                      '-- XXX Add verifications here.\n'
                      '\n'
                      'ROLLBACK;\n',
 'verify/roles.sql': '-- Verify flipr_ext:roles on pg\n'
                     '\n'
                     'BEGIN;\n'
                     '\n'
                     '-- XXX Add verifications here.\n'
                     '\n'
                     'ROLLBACK;\n'}

# change_id, script_hash, change, project, planned_at, planner_name, planner_email
SQITCH_CHANGES: list[tuple[str, ...]] = [('78f1aff70f3412971b08926d56fa7fa0771fc338',
  '5c4b2be44e4ed974a8268c671621c7a5904bd2b7',
  'appschema',
  'flipr',
  '2026-12-03 11:09:40+00',
  'Marge N. O’Vera',
  'marge@example.com'),
 ('530b7d5c763b34bef9e05c72fad889459cac6ff2',
  'b27ea29ca13d9398bedfbf684b9a6c21a322f2c1',
  'users',
  'flipr',
  '2026-12-03 11:09:41+00',
  'Marge N. O’Vera',
  'marge@example.com'),
 ('79e91bc9e3bbeef22e48a874da91e5e6eaf88236',
  '4f6d7e1dcad284f389deeb179926885d4d61fbb2',
  'insert_user',
  'flipr',
  '2026-12-03 11:09:42+00',
  'Marge N. O’Vera',
  'marge@example.com'),
 ('8dcee52a7ca3d92835914661883cc1cb3529c18a',
  'a9da5db0557ced9c3ae932699674e5b5e03f95f1',
  'insert_user',
  'flipr',
  '2026-12-03 11:09:44+00',
  'Marge N. O’Vera',
  'marge@example.com'),
 ('4c2464779f3aa25288b9fdbfbbee2ec318d4cec1',
  'f548a72461d7af7eabb54e85dc538e0b5f35a8e9',
  'functions/count_users',
  'flipr',
  '2026-12-03 11:09:52+00',
  'Marge N. O’Vera',
  'marge@example.com'),
 ('48105a3eed59aa0b1887d7edd18f96610e3d6834',
  '15e1d9b97ce006c1f81c29417ffa91d6edf14590',
  'roles',
  'flipr_ext',
  '2026-12-03 11:18:12+00',
  'Marge N. O’Vera',
  'marge@example.com'),
 ('2914676dd18382a4d8a24fe6fccf714630fda942',
  'bff28e6225e0215294f588d195af83080c7e5f1e',
  'grants',
  'flipr_ext',
  '2026-12-03 11:18:13+00',
  'Marge N. O’Vera',
  'marge@example.com')]

CHANGELOGS: dict[str, str] = {'001-schema.sql': '--liquibase formatted sql\n'
                   '\n'
                   '--changeset alice:1\n'
                   '--comment: the accounts table\n'
                   'CREATE TABLE accounts (\n'
                   '    id bigint PRIMARY KEY,\n'
                   '    email text NOT NULL\n'
                   ');\n'
                   "INSERT INTO accounts VALUES (1, 'a@example.com');\n"
                   '--rollback DROP TABLE accounts;\n'
                   '\n'
                   '--changeset alice:2 splitStatements:false\n'
                   'CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$\n'
                   'BEGIN\n'
                   '    NEW.email := lower(NEW.email);\n'
                   '    RETURN NEW;\n'
                   'END;\n'
                   '$$;\n'
                   '--rollback DROP FUNCTION touch();\n'
                   '\n'
                   '--changeset bob:3 endDelimiter:/\n'
                   'CREATE FUNCTION add_one(i integer) RETURNS integer LANGUAGE plpgsql AS $$\n'
                   'BEGIN\n'
                   '    RETURN i + 1;\n'
                   'END;\n'
                   '$$\n'
                   '/\n'
                   'CREATE TABLE t3 (a int)\n'
                   '/\n'
                   '--rollback DROP TABLE t3;\n'
                   '--rollback DROP FUNCTION add_one(integer);\n',
 '002-index.sql': '--liquibase formatted sql\n'
                  '\n'
                  '--changeset carol:idx-1 runInTransaction:false\n'
                  'CREATE INDEX CONCURRENTLY accounts_email ON accounts (email);\n'
                  '--rollback DROP INDEX CONCURRENTLY accounts_email;\n'
                  '\n'
                  '--changeset carol:empty-rb\n'
                  '--preconditions onFail:MARK_RAN\n'
                  '--precondition-sql-check expectedResult:0 SELECT count(*) FROM pg_tables WHERE '
                  "tablename = 'nope'\n"
                  '\tCREATE TABLE  tabbed  (x int);   \n'
                  '--rollback empty\n'
                  '\n'
                  '--changeset "dave smith":q-1\n'
                  '-- a plain comment inside\n'
                  'create table "Quoted" ("Ä" text);\n'}

# id, author, filename, md5sum, orderexecuted, exectype
LIQUIBASE_9: list[tuple[str, ...]] = [
    ('1', 'alice', '001-schema.sql', '9:fa9ac775d252f357afc2bf82a6bfbff2', '1', 'EXECUTED'),
    ('2', 'alice', '001-schema.sql', '9:f30c860ad2fc5d4f9c495f54823ffef7', '2', 'EXECUTED'),
    ('3', 'bob', '001-schema.sql', '9:6bdb7645e91866a201ca98039bf1f737', '3', 'EXECUTED'),
    ('idx-1', 'carol', '002-index.sql', '9:98f07ee2081f9327fcdfa9baf3e0c475', '4', 'EXECUTED'),
    ('empty-rb', 'carol', '002-index.sql', '9:3cfd6ea944c006ab34627abcd3e71db2', '5', 'EXECUTED'),
    ('q-1', 'dave smith', '002-index.sql', '9:843f1a4fef45237090124366bd697547', '6', 'EXECUTED'),
]

LIQUIBASE_8: list[tuple[str, ...]] = [
    ('1', 'alice', '001-schema.sql', '8:1c06f265926b1a25d553c3011927439f', '1', 'EXECUTED'),
    ('2', 'alice', '001-schema.sql', '8:c597f69f4eba61e1612d78dce6fac966', '2', 'EXECUTED'),
    ('3', 'bob', '001-schema.sql', '8:15b22d6e68d79c487610cd3f19d7a9fc', '3', 'EXECUTED'),
    ('idx-1', 'carol', '002-index.sql', '8:94d7887e722254699220a47d20f6ef79', '4', 'EXECUTED'),
    ('empty-rb', 'carol', '002-index.sql', '8:891574317b285bf14cc7d4f28233bc7a', '5', 'EXECUTED'),
    ('q-1', '"dave smith"', '002-index.sql', '8:bfb71469535778aa220a401bd994dedb', '6', 'EXECUTED'),
]


def write(files: dict[str, str], root: Path) -> Path:
    """Write a project's files under ``root`` (bytes exactly as given) and return ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    return root
