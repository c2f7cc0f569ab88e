"""What psql reads of a plain dump: our \\restrict first, the file's lines in place, nothing hidden."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from drills.plain_sql import PsqlFeed, choose_database, dumpall_section

# Lines of the kinds a dump holds, and hostile ones.
LINES = st.one_of(
    st.sampled_from([
        "SET statement_timeout = 0;",
        "-- Name: accounts; Type: TABLE; Schema: public; Owner: app",
        "-- Name: TABLE accounts; Type: ACL; Schema: public; Owner: app",
        "CREATE TABLE public.accounts (id integer);",
        "ALTER TABLE public.accounts OWNER TO app;",
        "ALTER TABLE public.accounts OWNER TO someone_else;",
        "GRANT SELECT ON TABLE public.accounts TO reader;",
        "REVOKE ALL ON TABLE public.accounts FROM PUBLIC;",
        "SET SESSION AUTHORIZATION 'app';",
        "COPY public.accounts (id) FROM stdin;",
        "\\.",
        "1\t\\N",
        "\\restrict abcDEF123",
        "\\unrestrict abcDEF123",
        "\\! id",
        "\\c postgres",
        "\\connect postgres",
        "\\o | sh",
        "\\encoding LATIN1",
        "  \\copy x to '/tmp/y'",
        "SELECT 1; \\! id",
        "",
    ]),
    st.text(alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=40),
)


def _feed(lines: list[str]) -> tuple[PsqlFeed, list[bytes]]:
    feed = PsqlFeed()
    numbered = [(i, (line + "\n").encode()) for i, line in enumerate(lines, start=1)]
    return feed, list(feed.lines(numbered))


class TestPsqlFeed:
    @given(st.lists(LINES, max_size=40))
    def test_first_line_is_our_restrict_and_every_file_line_keeps_its_number(self, lines: list[str]) -> None:
        """psql's line N+1 is the file's line N: dropped lines come out empty, nothing is inserted."""
        feed, out = _feed(lines)
        assert out[0] == f"\\restrict {feed.key}\n".encode()
        assert re.fullmatch(r"[0-9a-f]{32}", feed.key)
        assert len(out) == len(lines) + 1
        for number, (line, fed) in enumerate(zip(lines, out[1:], strict=True), start=1):
            assert fed in ((line + "\n").encode(), b"\n") or fed.startswith(b"SET client_encoding = ")
            assert feed.file_line(number + 1) == number

    @given(st.lists(LINES, max_size=40))
    def test_no_meta_command_is_hidden_but_the_dumps_own_restrict(self, lines: list[str]) -> None:
        """A line starting with a backslash reaches psql (which refuses it) unless it is \\(un)restrict."""
        _, out = _feed(lines)
        for line, fed in zip(lines, out[1:], strict=True):
            stripped = line.lstrip()
            if stripped.startswith("\\") and not re.match(r"\\(un)?restrict(\s+\S*)?\s*$", stripped):
                # Reaches psql as it is, or (pg_dumpall's \encoding NAME alone) as the same in SQL.
                assert fed == (line + "\n").encode() or (
                    re.fullmatch(r"\\encoding\s+\w+\s*", line) and fed.startswith(b"SET client_encoding"))

    def test_copy_data_passes_untouched(self) -> None:
        """Inside COPY data nothing is dropped, whatever it looks like."""
        lines = ["COPY public.t (a) FROM stdin;", "ALTER TABLE x OWNER TO app;", "\\restrict k", "\\."]
        _, out = _feed(["-- Name: t; Type: TABLE; Schema: public; Owner: app", *lines])
        assert out[2:] == [(line + "\n").encode() for line in lines]

    def test_ownership_privileges_and_session_authorization_are_dropped(self) -> None:
        """What pg_restore --no-owner --no-acl skips: OWNER TO the entry's owner, ACL entries, SET SESSION."""
        lines = [
            "-- Name: accounts; Type: TABLE; Schema: public; Owner: app",
            "ALTER TABLE public.accounts OWNER TO app;",
            "ALTER TABLE public.accounts OWNER TO other;",
            "-- Name: TABLE accounts; Type: ACL; Schema: public; Owner: app",
            "GRANT SELECT ON TABLE public.accounts TO reader;",
            "SET SESSION AUTHORIZATION 'app';",
        ]
        _, out = _feed(lines)
        assert out[1:] == [(lines[0] + "\n").encode(), b"\n", (lines[2] + "\n").encode(),
                           (lines[3] + "\n").encode(), b"\n", b"\n"]

    def test_dumpall_encoding_switch_becomes_sql(self) -> None:
        """pg_dumpall's \\encoding (a database of another encoding) is said as SET client_encoding."""
        _, out = _feed(["\\encoding SQL_ASCII", "\\encoding x; \\! id"])
        assert out[1:] == [b"SET client_encoding = 'SQL_ASCII';\n", b"\\encoding x; \\! id\n"]

    def test_meta_commands_are_remembered_by_file_line(self) -> None:
        """For the refusal message: which command stood on which line."""
        feed, _ = _feed(["SELECT 1;", "\\! touch /tmp/x", "\\restrict abc"])
        assert feed.meta_commands == {2: "\\! touch /tmp/x"}


NAMES = st.text(alphabet=st.characters(blacklist_characters='\n\r\x00', blacklist_categories=("Cs",)),
                min_size=1, max_size=20)


class TestDumpallSection:
    @given(NAMES)
    def test_only_the_dumped_databases_own_connect_and_create_are_blanked(self, name: str) -> None:
        """pg_dumpall's \\connect to the dumped database goes; a \\connect anywhere else stays for psql.

        The lines are spelled as pg_dumpall 15 spells them (fmtId, appendPsqlMetaConnect).
        """
        quoted = '"' + name.replace('"', '""') + '"'
        ddl_name = name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else quoted
        if re.fullmatch(r"[A-Za-z0-9_.]+", name):
            connect = f"\\connect {name}"
        else:
            value = name if re.fullmatch(r"[^\s'\\]+", name) else \
                "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"
            connect = "\\connect -reuse-previous=on " + '"' + f"dbname={value}".replace('"', '""') + '"'
        lines = [f'-- Database "{name}" dump', f"CREATE DATABASE {ddl_name} WITH TEMPLATE = template0;",
                 f"ALTER DATABASE {ddl_name} OWNER TO postgres;", connect, "CREATE TABLE t ();",
                 "\\connect postgres", "\\c other"]
        numbered = [(i, (line + "\n").encode()) for i, line in enumerate(lines, start=1)]
        section = list(dumpall_section(numbered, name))
        assert [n for n, _ in section] == [2, 3, 4, 5, 6, 7]
        kept = [line for _, line in section]
        expected_tail = [b"CREATE TABLE t ();\n", b"\\connect postgres\n", b"\\c other\n"]
        if name not in ("postgres", "other"):
            assert kept == [b"\n", b"\n", b"\n", *expected_tail]

    def test_the_one_application_database_is_chosen(self) -> None:
        assert choose_database(["template1", "app", "postgres"], None, Path("all.sql")) == "app"
