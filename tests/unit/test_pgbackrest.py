"""pgBackRest: drillbook.toml stores (exit 2 naming file and key), info JSON and verify text parsers."""

from __future__ import annotations

import contextlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks import redact
from checks.errors import ConfigError, NoBackupFound, UnusableAnswer
from checks.pgbackrest_info import choose, newest_of, parse_info, stanza_for
from checks.pgbackrest_verify import parse_verify, verify_verdict
from drills.config import load_config, parse_config
from drills.pgbackrest_options import env_name, environment
from drills.physical.pgbackrest import archived_files, next_segment

HEAD = '[targets.pgbr]\nkind = "pgbackrest"\nstanza = "main"\n'


def _load(tmp_path: Path, body: str, environ: dict[str, str] | None = None) -> Any:
    path = tmp_path / "drillbook.toml"
    path.write_text(body, encoding="utf-8")
    return load_config(path, environ=environ or {})


def test_a_pgbackrest_store_becomes_pgbackrest_environment(tmp_path: Path) -> None:
    config = _load(tmp_path, HEAD + 'repo = 2\n[targets.pgbr.options]\nrepo2-path = "repo"\n'
                   'repo2-storage-ca-file = "certs/ca.pem"\nrepo1-type = "s3"\nrepo1-path = "/pgbackrest"\n'
                   'repo2-bundle = true\nprocess-max = 2\nrepo2-cipher-pass = "${PASS}"\n',
                   {"PASS": "correct-horse-battery"})
    spec = config.stores["pgbr"]
    assert (spec.kind, spec.stanza, spec.repo) == ("pgbackrest", "main", 2)
    env = environment(spec)
    assert env["PGBACKREST_REPO2_PATH"] == str(tmp_path / "repo")  # relative to the file
    assert env["PGBACKREST_REPO2_STORAGE_CA_FILE"] == str(tmp_path / "certs" / "ca.pem")
    assert env["PGBACKREST_REPO1_PATH"] == "/pgbackrest"  # an S3 prefix, not a local path
    assert (env["PGBACKREST_REPO2_BUNDLE"], env["PGBACKREST_PROCESS_MAX"]) == ("y", "2")
    assert env["PGBACKREST_REPO2_CIPHER_PASS"] == "correct-horse-battery"
    shown = json.dumps(config.redacted())
    assert "correct-horse-battery" not in shown and '"repo2-cipher-pass": "***"' in shown
    assert redact.redact("pass=correct-horse-battery") == f"pass={redact.MASK}"


@pytest.mark.parametrize(("body", "named"), [
    (HEAD + "stanzas = 1\n", "targets.pgbr.stanzas"),
    ('[targets.pgbr]\nkind = "pgbackrest"\n', "targets.pgbr.stanza"),
    (HEAD + 'repo = "1"\n', "targets.pgbr.repo"),
    (HEAD + "repo = 0\n", "targets.pgbr.repo"),
    (HEAD.replace('"main"', '"../etc"'), "targets.pgbr.stanza"),
    (HEAD + "repo = 2\n[targets.pgbr.options]\nrepo1-path = \"/r\"\n", "targets.pgbr.repo"),
    (HEAD + "[targets.pgbr.options]\nconfig = \"/etc/pgbackrest.conf\"\n", "targets.pgbr.options.config"),
    (HEAD + "[targets.pgbr.options]\npg1-path = \"/var/lib/pg\"\n", "targets.pgbr.options.pg1-path"),
    (HEAD + "[targets.pgbr.options]\nlock-path = \"/tmp\"\n", "targets.pgbr.options.lock-path"),
    (HEAD + "[targets.pgbr.options]\nrepo1-s3-key = \"AKIA123\"\n", "targets.pgbr.options.repo1-s3-key"),
    (HEAD + "[targets.pgbr.options]\nrepo1-s3-key-secret = \"x${A}\"\n",
     "targets.pgbr.options.repo1-s3-key-secret"),
    (HEAD + "[targets.pgbr.options]\nrepo1-s3-key = \"${MISSING}\"\n", "MISSING"),
    (HEAD + "[targets.pgbr.options]\nREPO1-PATH = \"/r\"\n", "targets.pgbr.options.REPO1-PATH"),
    (HEAD + "[targets.pgbr.options]\nrepo1-path = [\"/r\"]\n", "targets.pgbr.options.repo1-path"),
    (HEAD + "[targets.pgbr.options]\nrepo1-path = \"\"\n", "targets.pgbr.options.repo1-path"),
    (HEAD + "[targets.pgbr.options]\nrepo999-path = \"/r\"\n", "targets.pgbr.options.repo999-path"),
    (HEAD + "options = 3\n", "targets.pgbr.options"),
])
def test_bad_keys_are_named_with_the_file(tmp_path: Path, body: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, body, {"A": "a"})
    assert named in str(caught.value) and str(tmp_path / "drillbook.toml") in str(caught.value)


_TOML_STRING = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)


_VALUES = st.one_of(_TOML_STRING, st.integers(), st.booleans())


@given(st.dictionaries(st.text(max_size=20), _VALUES, max_size=4),
       st.one_of(st.integers(-3, 300), st.text(max_size=5)), st.text(max_size=12))
def test_any_options_table_is_read_or_refused_by_name(options: dict[str, Any], repo: Any,
                                                      stanza: str) -> None:
    lines = [f"[targets.pgbr]\nkind = \"pgbackrest\"\nstanza = {json.dumps(stanza)}\n"
             f"repo = {json.dumps(repo)}",
             "[targets.pgbr.options]"] + [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in options.items()]
    try:
        config = parse_config("\n".join(lines) + "\n", path=None, environ={})
    except ConfigError as exc:
        assert "targets.pgbr" in str(exc) or "TOML" in str(exc)
        return
    env = environment(config.stores["pgbr"])
    assert all((name.startswith("PGBACKREST_") and name.isupper()) or "_" in name for name in env)
    assert all(value and "\n" not in value for value in env.values())


def test_env_names_follow_pgbackrest() -> None:
    assert env_name("repo1-s3-key-secret") == "PGBACKREST_REPO1_S3_KEY_SECRET"


def _info(**over: Any) -> list[dict[str, Any]]:
    """The shape of study A2 (2.45), two sets of repo 1."""
    full = {"label": "20261203-172641F", "type": "full", "prior": None, "reference": None,
            "timestamp": {"start": 1796318801, "stop": 1796318810},
            "archive": {"start": "000000010000000000000006", "stop": "000000010000000000000006"},
            "database": {"id": 1, "repo-key": 1}, "info": {"size": 1000}, "error": False}
    incr = {**full, "label": "20261203-172641F_20261203-173027I", "type": "incr",
            "timestamp": {"start": 1796319027, "stop": 1796319033},
            "archive": {"start": "00000001000000000000001B", "stop": "00000001000000000000001B"}}
    stanza = {"name": "demo", "cipher": "none", "status": {"code": 0, "message": "ok"},
              "repo": [{"key": 1, "cipher": "none", "status": {"code": 0, "message": "ok"}}],
              "db": [{"id": 1, "repo-key": 1, "system-id": 7715128748976329501, "version": "15"}],
              "archive": [{"id": "15-1", "database": {"id": 1, "repo-key": 1},
                           "min": "000000010000000000000001", "max": "00000001000000000000001F"}],
              "backup": [full, incr]}
    stanza.update(over)
    return [stanza]


def test_info_picks_the_newest_set_that_ended_by_the_target() -> None:
    [info] = parse_info(json.dumps(_info()))
    assert choose(info, 1, None).label.endswith("I")
    between = datetime.fromtimestamp(1796319000, UTC)
    chosen = choose(info, 1, between)
    assert (chosen.label, chosen.archive_start, info.major(chosen)) == ("20261203-172641F",
                                                                        "000000010000000000000006", "15")
    archive = info.archive_of(chosen)
    assert archive is not None and archive.max == "00000001000000000000001F"
    early = datetime.fromtimestamp(1796318805, UTC)  # after the full started, before it ended
    with pytest.raises(NoBackupFound, match=re.escape(early.isoformat()) + r".*20261203-172641F"):
        choose(info, 1, early)


def test_newest_of_a_type_counts_what_its_type_implies() -> None:
    [info] = parse_info(json.dumps(_info()))
    assert newest_of(info, 1, "full").label == "20261203-172641F"  # type: ignore[union-attr]
    assert newest_of(info, 1, "diff").label == "20261203-172641F"  # type: ignore[union-attr]
    assert newest_of(info, 1, "incr").label.endswith("I")  # type: ignore[union-attr]
    assert newest_of(info, 2, None) is None


def test_a_missing_stanza_is_named_with_its_repo() -> None:
    missing = [{"name": "other", "status": {"code": 1, "message": "missing stanza path"},
                "repo": [{"key": 1, "status": {"code": 1, "message": "missing stanza path"}}],
                "db": [], "archive": [], "backup": []}]
    with pytest.raises(NoBackupFound, match=r"stanza `other` in repo1: missing stanza path \(status 1\)"):
        stanza_for(parse_info(json.dumps(missing)), "other", 1)
    with pytest.raises(NoBackupFound, match="does not list stanza `demo`"):
        stanza_for(parse_info(json.dumps(missing)), "demo", 1)
    with pytest.raises(NoBackupFound, match="no repo2"):
        stanza_for(parse_info(json.dumps(_info())), "demo", 2)


@pytest.mark.parametrize("broken", [
    "", "{", "{}", "[1]", '[{"name": "demo"}]', json.dumps(_info(backup=[{"label": "x"}])),
    json.dumps(_info(status={"code": "0"})), json.dumps(_info(archive=[{"id": "15-1"}])),
    json.dumps(_info(backup=[{**_info()[0]["backup"][0], "timestamp": {"start": 10**20, "stop": 1}}])),
])
def test_unknown_info_shapes_are_a_clear_error(broken: str) -> None:
    with pytest.raises(UnusableAnswer, match="pgbackrest info"):
        parse_info(broken)


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
_JSON = st.recursive(_SCALARS,
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=4), max_leaves=20)


@given(_JSON)
def test_info_never_crashes_on_any_json(value: Any) -> None:
    with contextlib.suppress(UnusableAnswer):
        parse_info(json.dumps(value))


@given(st.sampled_from(["name", "status", "repo", "db", "archive", "backup"]), _JSON)
def test_info_never_crashes_when_one_part_changes_shape(key: str, value: Any) -> None:
    try:
        [info] = parse_info(json.dumps(_info(**{key: value})))
    except (UnusableAnswer, ValueError):
        return
    with contextlib.suppress(NoBackupFound):
        choose(stanza_for([info], "demo", 1), 1, None)


CLEAN = """\
2026-12-03 21:09:05.751 P00   INFO: verify command begin 2.45: --config=/dev/null --repo=1 --stanza=demo
2026-12-03 21:09:06.422 P00 DETAIL: archiveId: 15-1, wal start: 000000010000000000000006, wal stop: \
000000010000000000000017
stanza: demo
status: ok
  archiveId: 15-1, total WAL checked: 18, total valid WAL: 18
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
  backup: 20261203-210842F, status: valid, total files checked: 977, total valid files: 977
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
2026-12-03 21:09:06.428 P00   INFO: verify command end: completed successfully (695ms)
"""
DAMAGED = """\
2026-12-03 21:11:09.421 P01   INFO: invalid checksum '20261203-210842F/pg_data/postgresql.conf.gz'
2026-12-03 21:11:09.526 P00 DETAIL: archiveId: 15-1, wal start: 000000010000000000000006, wal stop: \
000000010000000000000015
2026-12-03 21:11:09.526 P00 DETAIL: archiveId: 15-1, wal start: 000000010000000000000017, wal stop: \
000000010000000000000017
2026-12-03 21:11:09.527 P00   INFO: stanza: demo
                                    status: error
                                      archiveId: 15-1, total WAL checked: 17, total valid WAL: 17
stanza: demo
status: error
  archiveId: 15-1, total WAL checked: 17, total valid WAL: 17
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
  backup: 20261203-210842F, status: invalid, total files checked: 977, total valid files: 976
    missing: 0, checksum invalid: 1, size invalid: 0, other: 0
  backup: 20261203-210842F_20261203-210845I, status: valid, total files checked: 979, total valid files: 979
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
"""


def test_a_clean_verify_passes() -> None:
    verdict = verify_verdict(parse_verify(CLEAN), store="pgbr", repo=1)
    assert verdict.outcome.value == "passed", verdict.message
    assert "1 sets, 18 WAL segments checked" in verdict.message


def test_a_damaged_verify_names_the_set_the_file_and_the_gap() -> None:
    report = parse_verify(DAMAGED)
    assert report.gaps() == [("15-1", "000000010000000000000015", "000000010000000000000017")]
    verdict = verify_verdict(report, store="pgbr", repo=1)
    assert verdict.outcome.value == "failed"
    assert "set 20261203-210842F is invalid (checksum invalid: 1)" in verdict.message
    assert "invalid checksum 20261203-210842F/pg_data/postgresql.conf.gz" in verdict.message
    assert "nothing between 000000010000000000000015 and 000000010000000000000017" in verdict.message
    assert "20261203-210842F_20261203-210845I" not in verdict.message  # valid sets are not blamed


def test_status_error_alone_still_fails_and_no_summary_is_a_clear_error() -> None:
    only = CLEAN.replace("status: ok", "status: error")
    assert verify_verdict(parse_verify(only), store="s", repo=1).outcome.value == "failed"
    with pytest.raises(UnusableAnswer, match=r"no summary: \[055\]: unable to load info file"):
        parse_verify("2026-12-03 21:09:05.751 P00  ERROR: [055]: unable to load info file\n")


@given(st.text(max_size=300))
def test_verify_never_crashes_on_any_text(text: str) -> None:
    try:
        report = parse_verify(text)
    except UnusableAnswer:
        return
    verify_verdict(report, store="s", repo=1)


@given(st.lists(st.sampled_from(CLEAN.splitlines() + DAMAGED.splitlines()), max_size=20))
def test_verify_never_crashes_on_shuffled_real_lines(lines: list[str]) -> None:
    test_verify_never_crashes_on_any_text.hypothesis.inner_test("\n".join(lines))  # type: ignore[attr-defined]


def test_the_next_segment_wraps_at_the_log_file_end() -> None:
    assert next_segment("000000010000000000000FFF", 1 << 20) == "000000010000000100000000"
    assert next_segment("0000000100000000000000FF", 16 << 20) == "000000010000000100000000"
    assert next_segment("000000010000000000000006", 16 << 20) == "000000010000000000000007"


def test_freshness_windows_are_from_the_stop_time() -> None:
    [info] = parse_info(json.dumps(_info()))
    newest = newest_of(info, 1, None)
    assert newest is not None and newest.stop - newest.start == timedelta(seconds=6)


SHA = "0123456789abcdef0123456789abcdef01234567"


def test_repo_ls_names_the_archived_segments_and_nothing_else() -> None:
    """``repo-ls --recurse --output=json`` of an archive id (pgBackRest 2.45's shape)."""
    listing = json.dumps({
        ".": {"type": "path"},
        "0000000100000000": {"type": "path"},
        f"0000000100000000/000000010000000000000003-{SHA}.gz": {"type": "file", "size": 40000},
        f"0000000100000000/000000010000000000000004-{SHA}": {"type": "file", "size": 1 << 24},
        "0000000100000000/000000010000000000000003.00000028.backup": {"type": "file", "size": 300},
        f"0000000100000001/000000010000000000000005-{SHA}.gz": {"type": "file"},  # the wrong folder
        "00000002.history": {"type": "file"},
    })
    assert archived_files(listing, "archive/demo/15-1") == {
        "000000010000000000000003": f"archive/demo/15-1/0000000100000000/000000010000000000000003-{SHA}.gz",
        "000000010000000000000004": f"archive/demo/15-1/0000000100000000/000000010000000000000004-{SHA}"}
    with pytest.raises(UnusableAnswer, match="no JSON object"):
        archived_files("[]", "archive/demo/15-1")


@given(st.one_of(st.text(max_size=200), st.dictionaries(st.text(max_size=80), st.none(), max_size=10).map(
    json.dumps)))
def test_any_repo_ls_output_gives_segments_under_the_path_or_an_unusable_answer(text: str) -> None:
    try:
        files = archived_files(text, "archive/s/15-1")
    except UnusableAnswer:
        return
    for segment, key in files.items():
        assert re.fullmatch(r"[0-9A-F]{24}", segment)
        assert key.startswith(f"archive/s/15-1/{segment[:16]}/{segment}-")
