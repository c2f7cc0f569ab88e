"""Key date patterns, property-based: what a pattern formats, it parses back."""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from checks.backups import compile_key_pattern
from checks.errors import ConfigError

REQUIRED = ("Y", "m", "d")
OPTIONAL = ("H", "M", "S")
# Literal text may hold anything a key holds, digits and `/` included; `*` is the wildcard.
LITERAL_ALPHABET = string.ascii_letters + string.digits + "-_./%+=@ ~"
# Wildcard fillers and the literals around them carry no digits, so the date stays unambiguous.
DIGIT_FREE = string.ascii_letters + "-_.+=@"


@dataclass(frozen=True)
class Built:
    """A pattern and, independently of the code under test, the key it names for a datetime."""

    pattern: str
    pieces: tuple[tuple[str, str], ...]  # ("lit", text) | ("dir", letter) | ("star", filler)

    def key_for(self, when: datetime) -> str:
        out = []
        for kind, value in self.pieces:
            if kind == "dir":
                out.append(when.strftime(f"%{value}"))
            else:
                out.append(value)
        return "".join(out)

    def pattern_without(self, letter: str) -> str:
        """The pattern text with one directive left out."""
        text = []
        for kind, value in self.pieces:
            if kind == "lit":
                text.append(value.replace("%", "%%"))
            elif kind == "star":
                text.append("*")
            elif value != letter:
                text.append(f"%{value}")
        return "".join(text)

    @property
    def directives(self) -> set[str]:
        return {value for kind, value in self.pieces if kind == "dir"}


def _expected(when: datetime, directives: set[str]) -> datetime:
    """``when`` at the precision the pattern carries: missing time fields read as zero."""
    return datetime(when.year, when.month, when.day,
                    when.hour if "H" in directives else 0,
                    when.minute if "M" in directives else 0,
                    when.second if "S" in directives else 0, tzinfo=UTC)


@st.composite
def patterns(draw: st.DrawFn, *, stars: bool = False) -> Built:
    """Literal chunks interleaved with Y, m, d (always) and some of H, M, S, in any order."""
    optional = draw(st.lists(st.sampled_from(OPTIONAL), unique=True))
    order = draw(st.permutations([*REQUIRED, *optional]))
    alphabet = DIGIT_FREE if stars else LITERAL_ALPHABET
    pieces: list[tuple[str, str]] = []
    text: list[str] = []
    for index, directive in enumerate([*order, None]):
        literal = draw(st.text(alphabet, max_size=6))
        if index == 0:
            literal = literal.lstrip("/")  # a leading `/` is refused (tested below)
        if literal:
            pieces.append(("lit", literal))
            text.append(literal.replace("%", "%%"))
        if stars and draw(st.booleans()):
            filler = draw(st.text(DIGIT_FREE, max_size=5))
            pieces.append(("star", filler))
            text.append("*")
        if directive is not None:
            pieces.append(("dir", directive))
            text.append(f"%{directive}")
    return Built("".join(text), tuple(pieces))


datetimes = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59))


class TestRoundTrip:
    @settings(max_examples=200)
    @given(built=patterns(), when=datetimes)
    @example(built=Built("backup-%Y%m%d.sql.gz",
                         (("lit", "backup-"), ("dir", "Y"), ("dir", "m"), ("dir", "d"), ("lit", ".sql.gz"))),
             when=datetime(2026, 11, 21, 2, 0))
    def test_parse_of_format_gives_the_date_back(self, built: Built, when: datetime) -> None:
        """Any date 2000–2099 formatted through a pattern parses back, to the pattern's precision."""
        pattern = compile_key_pattern(built.pattern)
        assert pattern.parse(built.key_for(when)) == _expected(when, built.directives)

    @settings(max_examples=100)
    @given(built=patterns(), when=datetimes,
           prefix=st.lists(st.text(LITERAL_ALPHABET.replace("/", ""), min_size=1, max_size=8), max_size=3))
    def test_store_prefix_does_not_matter(self, built: Built, when: datetime, prefix: list[str]) -> None:
        """The pattern matches the key's trailing components, whatever folders precede them."""
        pattern = compile_key_pattern(built.pattern)
        key = "/".join([*prefix, built.key_for(when)])
        assert pattern.parse(key) == _expected(when, built.directives)

    @settings(max_examples=100)
    @given(built=patterns(stars=True), when=datetimes)
    def test_wildcards_match_any_run_without_slash(self, built: Built, when: datetime) -> None:
        """`*` absorbs whatever the backup job put there (host names, job ids), the date still parses."""
        pattern = compile_key_pattern(built.pattern)
        assert pattern.parse(built.key_for(when)) == _expected(when, built.directives)

    def test_result_is_utc(self) -> None:
        """Key dates are UTC, so they compare with LastModified and `now`."""
        parsed = compile_key_pattern("db-%Y-%m-%dT%H%M%S.dump").parse("db-2026-11-21T020304.dump")
        assert parsed == datetime(2026, 11, 21, 2, 3, 4, tzinfo=UTC)
        assert parsed is not None and parsed.utcoffset() is not None


class TestNonMatching:
    @settings(max_examples=100)
    @given(built=patterns(), key=st.text(string.ascii_letters + "-_./ ", max_size=40))
    def test_keys_without_digits_never_match(self, built: Built, key: str) -> None:
        """A key with no digits cannot carry a date: None, never an exception."""
        assert compile_key_pattern(built.pattern).parse(key) is None

    @settings(max_examples=100)
    @given(built=patterns(), when=datetimes, data=st.data())
    def test_a_letter_in_a_date_field_does_not_match(self, built: Built, when: datetime,
                                                     data: st.DataObject) -> None:
        """Replacing one digit of a date field with a letter makes the key not match."""
        index = data.draw(st.sampled_from([i for i, (kind, _) in enumerate(built.pieces) if kind == "dir"]))
        pieces = list(built.pieces)
        field = when.strftime(f"%{pieces[index][1]}")
        position = data.draw(st.integers(0, len(field) - 1))
        pieces[index] = ("lit", field[:position] + "x" + field[position + 1:])
        broken = Built(built.pattern, tuple(pieces))
        assert compile_key_pattern(built.pattern).parse(broken.key_for(when)) is None

    @pytest.mark.parametrize("key", [
        "backup-20260230.sql.gz",  # February 30
        "backup-20261301.sql.gz",  # month 13
        "backup-20261100.sql.gz",  # day 0
        "backup-00001121.sql.gz",  # year 0
    ])
    def test_impossible_dates_are_none(self, key: str) -> None:
        """A key of the right shape with an impossible date does not match."""
        assert compile_key_pattern("backup-%Y%m%d.sql.gz").parse(key) is None

    def test_impossible_time_is_none(self) -> None:
        """Hour 24 is not a time."""
        assert compile_key_pattern("b-%Y%m%d-%H%M.dump").parse("b-20261121-2400.dump") is None

    def test_wildcard_does_not_cross_folders(self) -> None:
        """`*` stops at `/`: a pattern without `/` matches the basename only."""
        pattern = compile_key_pattern("*%Y%m%d.dump")
        assert pattern.parse("host-a/20261121.dump") == datetime(2026, 11, 21, tzinfo=UTC)
        assert compile_key_pattern("x*%Y%m%d.dump").parse("x/20261121.dump") is None

    def test_sidecar_key_does_not_match_the_backup_pattern(self) -> None:
        """The checksum sidecar of a backup is not matched by an anchored pattern."""
        assert compile_key_pattern("b-%Y%m%d.dump").parse("b-20261121.dump.sha256") is None


class TestBadPatterns:
    @settings(max_examples=100)
    @given(built=patterns(), drop=st.sampled_from(REQUIRED))
    def test_a_missing_date_field_is_refused(self, built: Built, drop: str) -> None:
        """Without %Y, %m or %d a key cannot date a backup: ConfigError naming the pattern."""
        pattern = built.pattern_without(drop)
        assume(not pattern.startswith("/"))  # refused for another reason
        with pytest.raises(ConfigError) as info:
            compile_key_pattern(pattern)
        assert repr(pattern) in str(info.value)
        assert f"%{drop}" in info.value.message

    @settings(max_examples=100)
    @given(built=patterns(),
           letter=st.sampled_from(sorted(set(string.ascii_letters + "#!") - set("YmdHMS"))))
    def test_unsupported_directives_are_refused(self, built: Built, letter: str) -> None:
        """A strftime directive the matcher does not support is refused, naming it and the pattern."""
        pattern = built.pattern + f"%{letter}"
        with pytest.raises(ConfigError) as info:
            compile_key_pattern(pattern)
        assert repr(pattern) in info.value.message
        assert f"%{letter}" in info.value.message
        assert info.value.hint  # says which directives work

    @pytest.mark.parametrize(("pattern", "reason"), [
        ("backup-%Y%m%d%", "lone `%`"),
        ("%Y%m%d-%Y", "%Y twice"),
        ("/backups/%Y%m%d.dump", "must not start with `/`"),
        ("", "lacks %Y %m %d"),
    ])
    def test_malformed_patterns_say_why(self, pattern: str, reason: str) -> None:
        """Each malformed pattern is refused with the reason and the pattern itself."""
        with pytest.raises(ConfigError) as info:
            compile_key_pattern(pattern)
        assert reason in info.value.message
        assert repr(pattern) in info.value.message
