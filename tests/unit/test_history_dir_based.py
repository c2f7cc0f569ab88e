"""Checksums of the prisma, atlas and diesel history tables, as each tool records them."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from checks.migration_history.model import LocalMigration
from checks.migration_history.tables import atlas, diesel, prisma


def _local(content: bytes) -> LocalMigration:
    return LocalMigration("20230406064219", "init", "20230406064219_init/migration.sql", content)


class TestPrismaChecksum:
    def test_prisma_engines_own_vector(self) -> None:
        """prisma-engines checksum.rs test: render_checksum("hello") is this zero-padded hex."""
        assert prisma.checksum(_local(b"hello")) == (
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")

    def test_line_endings_match_either_way(self) -> None:
        """Prisma's own test pairs: a CRLF checkout matches the LF checksum and back."""
        for lf, crlf in ((b"ab\ncd\nef\ngh\rab", b"ab\r\ncd\r\nef\r\ngh\rab"),
                         (b"ab\ncd\nef\ngh\rab\n", b"ab\r\ncd\r\nef\r\ngh\rab\r\n")):
            for script in (lf, crlf):
                for other in (lf, crlf):
                    recorded = prisma.checksum(_local(other))
                    assert recorded is not None and prisma.matches(_local(script), recorded)

    def test_negative(self) -> None:
        """Prisma's negative cases: an added character or newline is an edit."""
        assert not prisma.matches(_local(b"abc"), hashlib.sha256(b"abcd").hexdigest())
        assert not prisma.matches(_local(b"abc\n"), hashlib.sha256(b"abc").hexdigest())

    @given(st.binary(max_size=300))
    def test_old_unpadded_format_matches(self, content: bytes) -> None:
        """Rows written by old engines (hex bytes without zero padding) still match."""
        old = "".join(f"{b:x}" for b in hashlib.sha256(content).digest())
        if len(old) != 64:
            assert prisma.matches(_local(content), old)

    def test_version_of_migration_name(self) -> None:
        """The version is the directory name's leading digits."""
        assert prisma.version_of("20230406064219_init") == "20230406064219"
        assert prisma.version_of("0_init") == "0"


class TestAtlasChecksum:
    def test_cumulative_hash_from_the_layout(self) -> None:
        """The layout's `hashed` (the atlas.sum entry) is what atlas_schema_revisions.hash holds."""
        entry = b"h1:FifWjY2X0g2YVnb18Qm+QBPvoldDOOob7bS0LrFuCXc="
        assert atlas.checksum(_local(entry)) == "FifWjY2X0g2YVnb18Qm+QBPvoldDOOob7bS0LrFuCXc="

    def test_plain_file_bytes_give_none(self) -> None:
        """A file's own bytes cannot give a cumulative hash: no checksum rather than a wrong one."""
        assert atlas.checksum(_local(b"CREATE TABLE t (a int);\n")) is None


class TestDieselChecksum:
    def test_none(self) -> None:
        """Diesel records no checksum."""
        assert diesel.checksum(_local(b"SELECT 1;")) is None
