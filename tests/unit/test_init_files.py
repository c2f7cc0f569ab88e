"""``drillbook init``'s answers and the files rendered from them (drillbook/init_files.py)."""

from __future__ import annotations

import contextlib
import string
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from checks.backups import compile_key_pattern
from checks.errors import ConfigError
from drillbook.init_files import (
    BackupInterval,
    InitAnswers,
    TableFloor,
    default_dsn_var,
    looks_like_dsn,
    pattern_of,
    render_config,
    render_feature,
    row_floor,
    suggest_key_pattern,
    validate,
    validate_key_pattern,
)
from drills.config import parse_config

WRITTEN = datetime(2026, 12, 3, tzinfo=UTC)
target_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,54}", fullmatch=True)
var_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,40}", fullmatch=True)
# Literal text of a backup name: no digits (the date stays the only one), `%` and `*` included.
LITERAL = st.text(alphabet=string.ascii_letters + "-_.+=@%* ~", max_size=12)
DATE_FORMS = ("%Y%m%d", "%Y-%m-%d", "%Y_%m_%d", "%Y.%m.%d", "%Y%m%d_%H%M%S", "%Y%m%d-%H%M", "%Y%m%dT%H%M%S",
              "%Y-%m-%d_%H-%M-%S", "%Y-%m-%dT%H:%M:%S", "%Y%m%d%H%M%S", "%Y%m%d%H%M")
backup_times_ = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC))


def answers(**overrides: object) -> InitAnswers:
    base: dict[str, object] = {"target": "production", "dsn_var": "PROD_PG_DSN", "backups": "/backups",
                               "key_pattern": "backup-%Y%m%d.sql.gz"}
    return InitAnswers(**{**base, **overrides})  # type: ignore[arg-type]


def load(text: str, environ: dict[str, str]) -> object:
    return parse_config(text, path=Path("/nowhere/drillbook.toml"), environ=environ)


class TestRenderedConfig:
    @settings(max_examples=60, deadline=None)
    @given(target=target_names, dsn_var=var_names, endpoint_var=st.none() | var_names,
           key_pattern=st.tuples(LITERAL, st.sampled_from(DATE_FORMS), LITERAL).map(
               lambda t: t[0].replace("%", "%%") + t[1] + t[2].replace("%", "%%")),
           s3=st.booleans(), path_tail=st.text(alphabet=string.printable.strip() + " é", max_size=20))
    def test_any_valid_answers_give_toml_load_config_accepts(self, target: str, dsn_var: str,
                                                             endpoint_var: str | None, key_pattern: str,
                                                             s3: bool, path_tail: str) -> None:
        """Whatever the names and pattern, the file is TOML drillbook reads back to the same targets."""
        assume(len({dsn_var, endpoint_var, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}) == 4)
        path = "/srv/" + path_tail.replace("${", "$")
        backups = "s3://my-bucket/db/" if s3 else path
        given_answers = validate(answers(target=target, dsn_var=dsn_var, key_pattern=key_pattern,
                                         backups=backups, endpoint_var=endpoint_var if s3 else None))
        text = render_config(given_answers, written=WRITTEN)
        environ = {dsn_var: "postgresql://reader@db.internal:5432/app", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
                   "AWS_SECRET_ACCESS_KEY": "example-secret"}
        if endpoint_var:
            environ[endpoint_var] = "https://s3.internal"
        config = load(text, environ)
        assert config.postgres[target].dsn == environ[dsn_var]  # type: ignore[attr-defined]
        store = config.stores[f"{target}-backups"]  # type: ignore[attr-defined]
        assert store.key_pattern == key_pattern
        if s3:
            assert store.url == "s3://my-bucket/db/"
            assert store.endpoint_url == (environ[endpoint_var] if endpoint_var else None)
        else:
            assert store.url == str(Path(path).resolve())

    def test_only_placeholders_are_written(self) -> None:
        """The DSN and the S3 keys appear as ${VAR}; nothing else names a credential."""
        text = render_config(answers(backups="s3://b-1/x/", endpoint_var="AWS_ENDPOINT_URL"), written=WRITTEN)
        data = tomllib.loads(text)
        assert data["targets"]["production"]["dsn"] == "${PROD_PG_DSN}"
        assert data["targets"]["production-backups"]["secret_access_key"] == "${AWS_SECRET_ACCESS_KEY}"
        assert data["targets"]["production-backups"]["endpoint_url"] == "${AWS_ENDPOINT_URL}"
        assert "export PROD_PG_DSN=" in text  # the header says how

    def test_an_unset_variable_stops_the_load_naming_it(self) -> None:
        """The placeholder is real: without the variable, load_config refuses, naming it."""
        with pytest.raises(ConfigError, match=r"PROD_PG_DSN\}, which is not set"):
            load(render_config(answers(), written=WRITTEN), {})


class TestRenderedFeature:
    def test_the_feature_uses_the_restore_sentences_and_tags(self) -> None:
        """Tags for id and cadence; the store and subject named as the config names them."""
        text = render_feature(answers(cadence="weekly", tables=(TableFloor("orders", 500),)))
        assert "@id:RST-01 @weekly" in text
        assert 'Given the backups in "production-backups"' in text
        assert 'And the subject database "production"' in text
        assert "Then the newest backup is at most 26h old" in text
        assert "| orders | 500  |" in text
        assert "And every row older than the backup matches the subject" in text

    def test_without_tables_the_row_table_is_a_commented_example(self) -> None:
        """An unreachable subject leaves an example to fill in, never an invented table."""
        text = render_feature(answers())
        assert "    # And the restored tables hold at least these rows:" in text
        assert "\n    And the restored tables" not in text

    @pytest.mark.parametrize(("interval", "limit"), [(BackupInterval.HOURLY, "2h"),
                                                     (BackupInterval.DAILY, "26h"),
                                                     (BackupInterval.WEEKLY, "8d")])
    def test_the_freshness_limit_follows_the_backup_interval(self, interval: BackupInterval,
                                                             limit: str) -> None:
        """One interval plus grace: 26h for nightly backups."""
        assert f"at most {limit} old" in render_feature(answers(interval=interval))

    @settings(max_examples=30, deadline=None)
    @given(target=target_names, tables=st.lists(st.tuples(
        st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True), st.integers(0, 10**9)), max_size=3))
    def test_any_feature_parses_as_gherkin(self, tmp_path_factory: pytest.TempPathFactory, target: str,
                                           tables: list[tuple[str, int]]) -> None:
        """pytest-bdd reads one scenario with its tags, whatever the target and tables."""
        from pytest_bdd.parser import FeatureParser

        rendered = render_feature(answers(target=target, tables=tuple(TableFloor(t, n) for t, n in tables)))
        folder = tmp_path_factory.mktemp("feature")
        (folder / "f.feature").write_text(rendered, encoding="utf-8")
        feature = FeatureParser(str(folder), "f.feature").parse()
        (scenario,) = feature.scenarios.values()
        assert {"id:RST-01", "monthly"} <= set(scenario.tags)
        assert len(scenario.steps) == (7 if tables else 6)
        if tables:
            datatable = scenario.steps[5].datatable
            assert datatable is not None
            rows = datatable.raw()
            assert rows[1:] == [[t, str(n)] for t, n in tables]


class TestValidation:
    @pytest.mark.parametrize("pattern",
                             ["backup.sql.gz", "backup-%Y%m.sql", "b-%Q%Y%m%d", "%Y%m%d%", "d/%Y%m%d"])
    def test_bad_key_patterns_name_the_flag(self, pattern: str) -> None:
        """Checked as `verify backup` checks it; the error names --key-pattern."""
        with pytest.raises(ConfigError, match="--key-pattern") as caught:
            validate_key_pattern(pattern)
        assert caught.value.context["key"] == "--key-pattern"

    @pytest.mark.parametrize(("field", "value", "flag"), [
        ("target", "9lives", "--target"), ("target", "a" * 56, "--target"),
        ("dsn_var", "PG-DSN", "--dsn-var"),
        ("cadence", "continuous", "--cadence"), ("backups", "relative/dir", "--backups"),
        ("backups", "s3:///prefix", "--backups"), ("rto", "soon", "--rto"), ("drill_id", "RST 01", "--id"),
        ("endpoint_var", "AWS_ENDPOINT_URL", "--endpoint-var"),  # a directory store has no endpoint
    ])
    def test_each_bad_answer_names_its_flag(self, field: str, value: str, flag: str) -> None:
        with pytest.raises(ConfigError) as caught:
            validate(answers(**{field: value}))
        assert caught.value.context["key"] == flag

    @pytest.mark.parametrize(("dsn_var", "endpoint_var", "flag"), [
        ("PG", "PG", "--endpoint-var"), ("AWS_SECRET_ACCESS_KEY", None, "--dsn-var"),
        ("PG", "AWS_ACCESS_KEY_ID", "--endpoint-var")])
    def test_one_variable_never_holds_two_values(self, dsn_var: str, endpoint_var: str | None,
                                                 flag: str) -> None:
        """The DSN, the endpoint and the S3 keys each need their own variable."""
        with pytest.raises(ConfigError, match="already holds") as caught:
            validate(answers(backups="s3://bucket/x/", dsn_var=dsn_var, endpoint_var=endpoint_var))
        assert caught.value.context["key"] == flag

    @given(st.text(max_size=30))
    def test_validation_raises_only_config_errors(self, text: str) -> None:
        """Outside input never escapes as another exception (it would be a crash, not exit 2)."""
        for field in ("target", "dsn_var", "backups", "key_pattern", "rto", "drill_id"):
            with contextlib.suppress(ConfigError):
                validate(answers(**{field: text}))

    def test_dsns_are_told_from_variable_names(self) -> None:
        """A pasted DSN (URL or key=value) is never taken for a variable name."""
        assert looks_like_dsn("postgresql://u:pw@h/db")
        assert looks_like_dsn("host=db user=u password=pw")
        assert not looks_like_dsn("PROD_PG_DSN")

    def test_default_variable_is_the_target_upper_cased(self) -> None:
        assert default_dsn_var("prod.eu-1") == "PROD_EU_1_PG_DSN"


class TestKeyPatternSuggestion:
    @settings(max_examples=200)
    @given(prefix=LITERAL, form=st.sampled_from(DATE_FORMS), suffix=LITERAL, when=backup_times_)
    def test_a_suggestion_reads_back_the_date_in_the_name(self, prefix: str, form: str, suffix: str,
                                                          when: datetime) -> None:
        """The suggested pattern is valid and parses the name to the time it was made from
        (to the resolution the name carries)."""
        name = prefix + when.strftime(form) + suffix
        pattern = pattern_of(name)
        assert pattern is not None
        compiled = compile_key_pattern(pattern)
        parsed = compiled.parse(name)
        assert parsed is not None
        assert parsed.date() == when.date()
        if "%H" in form:
            assert parsed.hour == when.hour

    def test_the_sandbox_names(self) -> None:
        """The three naming schemes of the documented products."""
        assert pattern_of("sentrascan_20261202_020000.sql.gz") == "sentrascan_%Y%m%d_%H%M%S.sql.gz"
        assert pattern_of("sark-backup-20261202-0200.dump") == "sark-backup-%Y%m%d-%H%M.dump"
        assert pattern_of("backup-20261202.sql.gz") == "backup-%Y%m%d.sql.gz"

    def test_the_most_common_dated_scheme_wins(self) -> None:
        """Names without a date do not vote; the scheme most of the newest files follow wins."""
        assert suggest_key_pattern(["README.txt", "db-20261203.dump", "db-20261202.dump",
                                    "old_2026-11-01.sql"]) == "db-%Y%m%d.dump"
        assert suggest_key_pattern(["b-20261203.dump", "a-20261202.dump"]) == "b-%Y%m%d.dump"  # tie: newest
        assert suggest_key_pattern(["x/db-20261203.dump"]) == "db-%Y%m%d.dump"

    def test_no_suggestion_without_a_dated_name(self) -> None:
        assert suggest_key_pattern(["latest.dump", "README"]) is None
        assert suggest_key_pattern([]) is None

    def test_digits_that_are_no_date_stay_literal(self) -> None:
        """A version number before the date is not taken for one."""
        assert pattern_of("app-v15-20261202.dump") == "app-v15-%Y%m%d.dump"
        assert pattern_of("db-99999999.dump") is None


class TestRowFloor:
    @given(st.integers(0, 10**12))
    def test_the_floor_is_at_most_half_and_close_to_it(self, count: int) -> None:
        """Half of today's count, rounded down to two significant digits."""
        floor = row_floor(count)
        assert floor <= count // 2
        assert floor >= (count // 2) * 0.9 - 1
