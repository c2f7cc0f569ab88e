"""TOML text drillbook writes (drills/toml_text.py): whatever the string, tomllib reads it back."""

from __future__ import annotations

import tomllib

from hypothesis import example, given
from hypothesis import strategies as st

from drills.toml_text import toml_key, toml_string

# Every code point TOML can carry: all but the surrogates (no UTF-8 file holds one).
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)


class TestStrings:
    @given(any_text)
    @example('a"b\\c\x7f\n\ud7ff\x00\x1f\u2028')
    def test_tomllib_reads_back_any_string(self, value: str) -> None:
        """Quotes, backslashes, every control character and DEL (which JSON leaves raw) round-trip."""
        assert tomllib.loads(f"k = {toml_string(value)}")["k"] == value

    def test_del_is_escaped(self) -> None:
        """The character json.dumps left raw, which tomllib refuses in a string."""
        assert toml_string("\x7f") == '"\\u007F"'


class TestKeys:
    @given(any_text.filter(bool))
    def test_any_key_names_one_table_of_that_name(self, name: str) -> None:
        """A dotted name stays one key (quoted), not nested tables."""
        assert list(tomllib.loads(f"[targets.{toml_key(name)}]\n")["targets"]) == [name]

    def test_a_plain_name_stays_bare(self) -> None:
        assert toml_key("production-backups") == "production-backups"
        assert toml_key("prod.db") == '"prod.db"'
