"""Every secret source, masked in every output of `drillbook run` and `drillbook evidence export`.

A live ``drillbook.toml`` puts a secret in each place a config can hold one: a
``${VAR}`` DSN password (percent-encoded, with reserved characters), a literal
password in a key=value DSN, a literal password in an S3 ``endpoint_url``, a
secret key from ``${VAR}``, a Redis URL password (literal, and a wrong one from
``${VAR}``), an HTTP URL password, a ``Bearer ${TOKEN}`` header, a literal API
key header, a literal ``Basic`` header, a Prometheus URL password, and the
ledger's S3 endpoint password and secret key. Scenarios drive every target;
several fail or error on purpose, because error messages are where secrets
leak. Then every file the run and the export wrote (recursively, inside the
zip too) and the captured stdout/stderr are searched for every secret in its
raw, URL-quoted and base64 forms.
"""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from checks import redis_health
from drills.processes import PostgresServer, RedisServer, S3Server, free_port, template_datadir
from tests.support.cli import drillbook
from tests.support.health_servers import Route, Served, json_route, serve

pytestmark = pytest.mark.integration

# Reserved characters in URL userinfo (`@ : / ? # [ ] %` and spaces) make the quoting honest.
PG_PASSWORD = "pg-P@ss:w/rd?#[x]%41 end"          # ${PROD_DSN}, percent-encoded in the URL
KV_PASSWORD = "kv-pa'ss\\word-7731"                 # literal, quoted, in a key=value DSN
S3_ENDPOINT_PASSWORD = "s3ep-Sec/ret@9:#x"          # literal, in the store's endpoint_url
S3_SECRET_KEY = "s3sk-Wq8Zr2Lx0Vb7Nc4Mp1"           # ${S3_SECRET}
REDIS_PASSWORD = "rd-Pw@7:x/y#z"                    # literal, in the redis URL (the right one)
WRONG_REDIS_PASSWORD = "rd-wrong-Kk3@3x"            # ${LOCKED_REDIS_URL}: a refused password
HTTP_URL_PASSWORD = "http-Pw:9@q/r"                 # literal, in an http target's url
BEARER_TOKEN = "tok-8f3a9c2e1b7d4f60"               # Authorization = "Bearer ${API_TOKEN}"
LITERAL_API_KEY = "key-Lit3ral-55aa77"              # X-Api-Key, literal in the file
BASIC_PASSWORD = "basic-Pw:x@y-4411"                # Authorization = "Basic base64(user:pw)", literal
PROMETHEUS_PASSWORD = "prom-Pw@1:2/3"               # literal, in a prometheus url
LEDGER_ENDPOINT_PASSWORD = "ledger-Ep@4:5/6"        # literal, in [ledger] endpoint_url
LEDGER_SECRET_KEY = "ledger-sk-Qz81Lm02Xc"          # ${LEDGER_SECRET}

SECRETS = (PG_PASSWORD, KV_PASSWORD, S3_ENDPOINT_PASSWORD, S3_SECRET_KEY, REDIS_PASSWORD,
           WRONG_REDIS_PASSWORD, HTTP_URL_PASSWORD, BEARER_TOKEN, LITERAL_API_KEY, BASIC_PASSWORD,
           PROMETHEUS_PASSWORD, LEDGER_ENDPOINT_PASSWORD, LEDGER_SECRET_KEY)
BASIC_USER = "drill"
# Basic credentials travel as base64(user:password): that form must not appear either.
CREDENTIAL_PAIRS = ((BASIC_USER, BASIC_PASSWORD), ("api", HTTP_URL_PASSWORD), ("prom", PROMETHEUS_PASSWORD),
                    ("minio", S3_ENDPOINT_PASSWORD), ("ledger", LEDGER_ENDPOINT_PASSWORD),
                    ("", REDIS_PASSWORD), ("postgres", PG_PASSWORD))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode().rstrip("=")


def forms_of(secret: str) -> set[str]:
    """The forms a secret may take in an output: raw, URL-quoted (several styles), base64,
    and each of those as a JSON string or HTML text holds it."""
    found = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret), _b64(secret),
             base64.urlsafe_b64encode(secret.encode()).decode().rstrip("=")}
    return found | {json.dumps(f)[1:-1] for f in found} | {html.escape(f) for f in found}


# The key=value DSN holds KV_PASSWORD libpq-quoted: that spelling must not appear either.
KV_PASSWORD_AS_WRITTEN = KV_PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
FORBIDDEN = sorted({form for s in (*SECRETS, KV_PASSWORD_AS_WRITTEN) for form in forms_of(s)}
                   | {_b64(f"{user}:{password}") for user, password in CREDENTIAL_PAIRS})


def _toml(value: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for these values)."""
    return json.dumps(value)


def _userinfo(user: str, password: str) -> str:
    return f"{quote(user, safe='')}:{quote(password, safe='')}@"


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A temp dir the `postgres` OS user can traverse (pytest's own is 0700 as root)."""
    path = Path(tempfile.mkdtemp(prefix="drillbook-secrets-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres(workdir: Path, sandbox_xdg_cache: Path) -> Iterator[PostgresServer]:
    from checks.errors import EnvironmentError_
    from drills import pgtools

    try:
        bindir = pgtools.bindir()
    except EnvironmentError_ as exc:
        pytest.skip(reason=f"PostgreSQL server binaries are not installed: {exc}")
    template = template_datadir(sandbox_xdg_cache / "drillbook", bindir=bindir, workdir=workdir)
    server = PostgresServer("secrets-subject", workdir / "pg", bindir=bindir)
    server.init(template=template)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    """A redis-server that wants REDIS_PASSWORD."""
    if shutil.which("redis-server") is None:
        pytest.skip(reason="redis-server is not installed (Debian package `redis-server`)")
    server = RedisServer(workdir / "redis")
    server.start()
    try:
        client = redis_health.open_client(server.url)
        client.config_set("requirepass", REDIS_PASSWORD)
        client.close()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=server.endpoint_url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        for bucket in ("secret-backups", "secret-ledger"):
            client.create_bucket(Bucket=bucket)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api() -> Iterator[Served]:
    """Plain-HTTP service: /health for the bearer target, /private wants the Basic header."""
    basic = "Basic " + base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    routes = {"/health": json_route({"status": "ok"}),
              "/private": Route(status=200, body=b"{}", need_header=("Authorization", basic))}
    with serve(routes) as served:
        yield served


def _config(postgres: PostgresServer, redis_server: RedisServer, s3: S3Server, api: Served) -> str:
    def with_userinfo(url: str, user: str, password: str) -> str:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{_userinfo(user, password)}{rest}"

    kv_dsn = (f"host=127.0.0.1 port={free_port()} user=app password='{KV_PASSWORD_AS_WRITTEN}' dbname=app "
              "connect_timeout=3")
    redis_url = f"redis://{_userinfo('', REDIS_PASSWORD)}127.0.0.1:{redis_server.port}/0"
    basic = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    return (
        "[ledger]\n"
        'url = "s3://secret-ledger/drillbook/"\n'
        f"endpoint_url = {_toml(with_userinfo(s3.endpoint_url, 'ledger', LEDGER_ENDPOINT_PASSWORD))}\n"
        'access_key_id = "testing"\nsecret_access_key = "${LEDGER_SECRET}"\n'
        '[targets.production]\nkind = "postgres"\ndsn = "${PROD_DSN}"\n'
        '[targets.unreachable-db]\nkind = "postgres"\n'
        f"dsn = {_toml(kv_dsn)}\n"
        '[targets.nightly]\nkind = "s3"\nurl = "s3://secret-backups/nightly/"\n'
        'key_pattern = "backup-%Y%m%d.dump"\n'
        f"endpoint_url = {_toml(with_userinfo(s3.endpoint_url, 'minio', S3_ENDPOINT_PASSWORD))}\n"
        'access_key_id = "testing"\nsecret_access_key = "${S3_SECRET}"\n'
        '[targets.nightly-direct]\nkind = "s3"\nurl = "s3://secret-backups/nothing-here/"\n'
        'key_pattern = "backup-%Y%m%d.dump"\n'
        f"endpoint_url = {_toml(s3.endpoint_url)}\n"
        'access_key_id = "testing"\nsecret_access_key = "${S3_SECRET}"\n'
        '[targets.cache]\nkind = "redis"\n'
        f"url = {_toml(redis_url)}\n"
        '[targets.locked-cache]\nkind = "redis"\nurl = "${LOCKED_REDIS_URL}"\n'
        '[targets.api]\nkind = "http"\n'
        f"url = {_toml(with_userinfo(api.url, 'api', HTTP_URL_PASSWORD))}\n"
        f'headers = {{ Authorization = "Bearer ${{API_TOKEN}}", X-Api-Key = {_toml(LITERAL_API_KEY)} }}\n'
        '[targets.basic-api]\nkind = "http"\n'
        f"url = {_toml(api.url)}\n"
        f'headers = {{ Authorization = "Basic {basic}" }}\n'
        '[targets.metrics]\nkind = "prometheus"\n'
        f"url = {_toml(with_userinfo(api.url, 'prom', PROMETHEUS_PASSWORD))}\n"
    )


FEATURE = """\
Feature: every secret source, drilled

  @id:SEC-01 @daily
  Scenario: the subject answers through a DSN with a percent-encoded password
    Given the subject database "production"
    Then the database answers "SELECT 1" within 10 seconds

  @id:SEC-02 @daily
  Scenario: a database that does not answer, with a literal password
    Given the subject database "unreachable-db"
    Then the database answers "SELECT 1" within 10 seconds

  @id:SEC-03 @daily
  Scenario: backups behind an endpoint with a password in it
    Given the backups in "nightly"
    Then the newest backup is at most 26h old

  @id:SEC-04 @daily
  Scenario: no backups where the secret key is used
    Given the backups in "nightly-direct"
    Then the newest backup is at most 26h old

  @id:SEC-05 @daily
  Scenario: Redis with its password in the URL
    Given the Redis "cache"
    Then Redis answers PING

  @id:SEC-06 @daily
  Scenario: Redis with a wrong password
    Given the Redis "locked-cache"
    Then Redis answers PING

  @id:SEC-07 @daily
  Scenario: an API behind a bearer token and a password in its URL
    Given the HTTP service "api"
    Then "/health" answers HTTP 200 within 10 seconds

  @id:SEC-08 @daily
  Scenario: an API behind Basic credentials
    Given the HTTP service "basic-api"
    Then "/private" answers HTTP 200 within 10 seconds

  @id:SEC-09 @daily
  Scenario: a Prometheus with a password in its URL that is not a Prometheus
    Given the Prometheus "metrics"
    Then the Prometheus query "up" is at least 1
"""


def _texts_under(root: Path) -> Iterator[tuple[str, str]]:
    """(name, text) of every file under ``root``, zip members included, decoded leniently."""
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        yield str(path), data.decode("utf-8", errors="replace")
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in archive.namelist():
                    yield f"{path}!{member}", archive.read(member).decode("utf-8", errors="replace")


def _leaks(texts: list[tuple[str, str]]) -> list[str]:
    return [f"{name}: {form!r}" for name, text in texts for form in FORBIDDEN if form in text]


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer, redis_server: RedisServer,
               s3: S3Server, api: Served) -> dict[str, Any]:
    """One `drillbook run --config` over every secret source, then every export format."""
    base = tmp_path_factory.mktemp("secret-run")
    config = base / "drillbook.toml"
    config.write_text(_config(postgres, redis_server, s3, api))
    features = base / "features"
    features.mkdir()
    (features / "secrets.feature").write_text(FEATURE)
    out = base / "out"
    env = {
        "PROD_DSN": f"postgresql://postgres:{quote(PG_PASSWORD, safe='')}@127.0.0.1:{postgres.port}/postgres",
        "S3_SECRET": S3_SECRET_KEY,
        "LOCKED_REDIS_URL": f"redis://{_userinfo('', WRONG_REDIS_PASSWORD)}127.0.0.1:{redis_server.port}/0",
        "API_TOKEN": BEARER_TOKEN,
        "LEDGER_SECRET": LEDGER_SECRET_KEY,
    }
    run = drillbook("run", "--config", str(config), "--features", str(features), "--out", str(out),
                    "--verbose", env=env, timeout=300)
    exports = [
        drillbook("evidence", "export", "--out", str(out), "-o", str(out / "evidence.zip")),
        drillbook("evidence", "export", "--out", str(out), "--format", "oscal",
                  "-o", str(out / "assessment-results.json")),
    ]
    return {"run": run, "exports": exports, "out": out}


class TestEverySecretSourceIsMasked:
    def test_the_run_drilled_every_target(self, secret_run: dict[str, Any]) -> None:
        """The run ran all nine scenarios (some fail on purpose): the search below is not vacuous."""
        run = secret_run["run"]
        assert run.returncode == 1, run.stdout + run.stderr
        results = json.loads((secret_run["out"] / "latest" / "results.json").read_text())
        outcomes = {s["id"]: s["outcome"] for s in results["scenarios"]}
        assert set(outcomes) == {f"SEC-0{i}" for i in range(1, 10)}
        assert outcomes["SEC-01"] == "passed" and outcomes["SEC-05"] == "passed"
        assert outcomes["SEC-02"] == "error" and outcomes["SEC-06"] in ("error", "failed")

    def test_exports_were_written(self, secret_run: dict[str, Any]) -> None:
        """The evidence bundle and the OSCAL document exist, so their contents were searched."""
        for proc in secret_run["exports"]:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        assert (secret_run["out"] / "evidence.zip").is_file()
        assert (secret_run["out"] / "assessment-results.json").is_file()

    def test_no_secret_in_any_file_under_the_out_dir(self, secret_run: dict[str, Any]) -> None:
        """results, config, environment, JUnit, HTML, scenarios, manifest, metrics, zip members."""
        texts = list(_texts_under(secret_run["out"]))
        assert any(name.endswith("config.json") for name, _ in texts)
        assert any("!manifest.json" in name for name, _ in texts)
        leaks = _leaks(texts)
        assert not leaks, "\n".join(leaks)

    def test_no_secret_on_stdout_or_stderr(self, secret_run: dict[str, Any]) -> None:
        """What `drillbook run --verbose` and the exports printed, tracebacks included."""
        procs = [secret_run["run"], *secret_run["exports"]]
        texts = [(f"{' '.join(p.args[3:5])} {stream}", getattr(p, stream))
                 for p in procs for stream in ("stdout", "stderr")]
        leaks = _leaks(texts)
        assert not leaks, "\n".join(leaks)

    def test_no_secret_in_the_s3_ledger(self, secret_run: dict[str, Any], s3: S3Server) -> None:
        """The ledger objects the run appended on S3 hold no secret either."""
        import boto3

        client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        listed = client.list_objects_v2(Bucket="secret-ledger").get("Contents", [])
        texts = [(obj["Key"], client.get_object(Bucket="secret-ledger", Key=obj["Key"])["Body"].read()
                  .decode("utf-8", errors="replace")) for obj in listed]
        leaks = _leaks(texts)
        assert not leaks, "\n".join(leaks)
