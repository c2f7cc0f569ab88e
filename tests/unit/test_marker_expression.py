"""--cadence and --tags become pytest -m expressions; keyed tags select by their value."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.errors import ConfigError
from drillbook.runner import marker_expression


def test_cadence_and_plain_tags() -> None:
    assert marker_expression("weekly", "postgres and not s3") == "weekly and (postgres and not s3)"


def test_keyed_tag_becomes_a_keyword_match() -> None:
    assert marker_expression(None, "@id:BKP-01 or id:BKP-02") == '(id(value="BKP-01") or id(value="BKP-02"))'


def test_unknown_cadence_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        marker_expression("fortnightly", None)


IDS = st.from_regex(r"[A-Z][A-Za-z0-9_.-]{0,15}", fullmatch=True)


@given(wanted=IDS, other=IDS)
def test_an_id_tag_selects_that_id_only(wanted: str, other: str) -> None:
    """pytest's own -m evaluator: id:X matches a scenario tagged @id:X and no other id."""
    from _pytest.mark.expression import Expression

    expression = Expression.compile(marker_expression(None, f"id:{wanted}") or "")

    def tagged(value: str):  # type: ignore[no-untyped-def]
        def matcher(name: str, **kwargs: object) -> bool:
            return name == "id" and (not kwargs or kwargs == {"value": value})
        return matcher

    assert expression.evaluate(tagged(wanted))
    assert expression.evaluate(tagged(other)) is (other == wanted)
