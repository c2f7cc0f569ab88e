"""Each configured target reachable with its credentials: one read per kind, under a short timeout.

postgres: a read-only session (server version, role, database); redis: ``PING``; s3 and
directory: list the store, count the keys its ``key_pattern`` matches and name the newest; http:
one GET of the URL; tls: a verified handshake (or the PEM file read); prometheus: its build info.
"""

from __future__ import annotations

from datetime import UTC, datetime

from checks import redact
from checks.backups import BackupObject, compile_key_pattern, is_sidecar, short_duration
from checks.errors import DrillbookError
from checks.verdict import Outcome, Verdict
from drills.targets import HttpTarget, PostgresTarget, PrometheusTarget, RedisTarget, StoreSpec, TlsTarget

from .base import CONNECT_TIMEOUT_S, from_error, result
from .postgres import Sessions, unreachable

_HTTP_TIMEOUT_S = 5.0


def postgres(name: str, target: PostgresTarget, *, sessions: Sessions) -> Verdict:
    """A read-only session opens: the server's version, the role and the database (read once, shared)."""
    facts = sessions.answer(target)
    if isinstance(facts, DrillbookError):
        return unreachable(name, facts)
    if isinstance(facts, Exception):
        return from_error(name, facts)
    version = facts.version.text
    return result(name, Outcome.PASSED, f"PostgreSQL {version}, database {facts.database} as role "
                  f"`{facts.role}` ({target.describe()})", server_version=version, role=facts.role)


def redis(name: str, target: RedisTarget) -> Verdict:
    """``PING`` answers, within the connect timeout, with the configured credentials."""
    import redis as redis_py
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from checks.redis_health import describe, ping

    label = describe(target.url, target.name)
    fix = "check the target's `url` (and its password from ${ENV}) and that redis-server runs there"
    client = redis_py.Redis.from_url(target.url, socket_timeout=CONNECT_TIMEOUT_S,
                                     socket_connect_timeout=CONNECT_TIMEOUT_S, retry=Retry(NoBackoff(), 0))
    try:
        verdict = ping(client, label=label)
    except redis_py.RedisError as exc:  # an answer that is no Redis protocol (a proxy, another service)
        return result(name, Outcome.FAILED, f"Redis {label}: {type(exc).__name__}: "
                      f"{redact.redact(str(exc))}", fix=fix)
    finally:
        client.close()
    if verdict.outcome is Outcome.PASSED:
        return result(name, Outcome.PASSED, f"Redis {label} answers PING")
    hint = str(verdict.evidence.get("hint") or fix)
    return result(name, Outcome.FAILED, verdict.message.removesuffix(f" (hint: {hint})"), fix=hint)


def store(name: str, spec: StoreSpec) -> Verdict:
    """The store lists; how many keys match its ``key_pattern``, and the newest of them."""
    from drills.stores import BackupStore, DirectoryStore, S3Store

    if spec.kind == "basebackup":
        return _basebackup_store(name, spec)
    if spec.kind == "barman-cloud":
        return _barman_cloud_store(name, spec)
    if spec.kind == "pgbackrest":
        return _pgbackrest_store(name, spec)
    opened: BackupStore = (S3Store(spec, read_timeout_s=_HTTP_TIMEOUT_S) if spec.is_s3
                           else DirectoryStore(spec))
    try:
        objects = opened.list()
    except DrillbookError as exc:
        return result(name, Outcome.FAILED, redact.redact(exc.message), fix=exc.hint)
    return store_verdict(name, opened.describe(), objects, key_pattern=spec.key_pattern,
                         now=datetime.now(UTC))


def _barman_cloud_store(name: str, spec: StoreSpec) -> Verdict:
    """barman-cloud-backup-list shows a DONE backup of the server, and its WAL prefix holds segments."""
    from checks.barman_info import DONE
    from drills.physical.barman_cloud import BarmanCloudSource

    try:
        source = BarmanCloudSource(spec)
        backups = source.list_backups()
        segments = len(source.wal_listing().segments)
    except DrillbookError as exc:
        return result(name, Outcome.FAILED, redact.redact(exc.message), fix=exc.hint)
    done = [b for b in backups if b.status == DONE]
    if not done:
        return result(name, Outcome.FAILED, f"no DONE backup of server `{spec.server}` in {spec.url} "
                      f"({len(backups)} listed)", fix=f"check `targets.{name}.server` and `url`")
    if not segments:
        return result(name, Outcome.FAILED, f"no WAL segment under {spec.url} server `{spec.server}`",
                      fix="check that the subject's archive_command runs barman-cloud-wal-archive there")
    return result(name, Outcome.PASSED, f"{len(done)} DONE backups of `{spec.server}` in {spec.url}, newest "
                  f"{done[-1].backup_id}; {segments} WAL segments")


def _pgbackrest_store(name: str, spec: StoreSpec) -> Verdict:
    """``pgbackrest info`` answers for the stanza and repo: how many sets, the newest and its stop."""
    from drills.physical import pgbackrest

    try:
        info = pgbackrest.read_info(spec, timeout_s=_HTTP_TIMEOUT_S * 3)
    except DrillbookError as exc:
        return result(name, Outcome.FAILED, redact.redact(exc.message), fix=exc.hint)
    sets = info.usable(spec.repo or 1)
    if not sets:
        return result(name, Outcome.FAILED, f"stanza `{info.name}` repo{spec.repo or 1}: no backup set",
                      fix="check that the backup job runs against this stanza and repo")
    return result(name, Outcome.PASSED, f"pgbackrest stanza `{info.name}` repo{spec.repo or 1}: {len(sets)} "
                  f"sets, newest {sets[-1].label} ({sets[-1].type}) ended {sets[-1].stop.isoformat()}")


def _basebackup_store(name: str, spec: StoreSpec) -> Verdict:
    """A base backup directory lists its backups, and its WAL archive holds segments."""
    import dataclasses
    from pathlib import Path

    from checks.pitr import SEGMENT
    from drills.physical import list_base_backups, source_for

    try:
        backups = list_base_backups(spec)
        if (spec.wal or "").startswith("s3://"):  # listed by the source: endpoint, keys, layout
            segments = len(source_for(spec).archive_listing().segments)
        else:
            segments = sum(1 for p in Path(spec.wal or "").iterdir() if SEGMENT.fullmatch(p.name))
    except DrillbookError as exc:
        return result(name, Outcome.FAILED, redact.redact(exc.message), fix=exc.hint)
    except OSError as exc:
        return result(name, Outcome.FAILED, f"cannot list the WAL archive {redact.redact(spec.wal or '')}: "
                      f"{exc.strerror or exc}",
                      fix=f"check `targets.{name}.wal`")
    if not segments:
        return result(name, Outcome.FAILED,
                      f"the WAL archive {redact.redact(spec.wal or '')} holds no WAL segment",
                      fix="check that the subject's archive_command writes there")
    verdict = store_verdict(name, f"base backups in {spec.url}", [b for b, _ in backups],
                            key_pattern=spec.key_pattern, now=datetime.now(UTC))
    if verdict.outcome is not Outcome.PASSED:
        return verdict
    return dataclasses.replace(verdict, message=f"{verdict.message}; {segments} WAL segments in "
                               f"{redact.redact(spec.wal or '')}")


def store_verdict(name: str, where: str, objects: list[BackupObject], *, key_pattern: str | None,
                  now: datetime) -> Verdict:
    """PASS naming the count and newest backup; FAIL when nothing in the store is a backup."""
    backups = [o for o in objects if not is_sidecar(o.key) and not o.key.endswith("/")]
    pattern = compile_key_pattern(key_pattern) if key_pattern else None
    dated = [(taken, o) for o in backups
             if (taken := pattern.parse(o.key) if pattern else o.last_modified) is not None]
    if not dated:
        what = (f"none of its {len(objects)} keys matches key_pattern {key_pattern!r}" if pattern
                else f"it holds no backup ({len(objects)} objects)")
        return result(name, Outcome.FAILED, f"{where} lists, but {what}",
                      fix="check the store's url/path and key_pattern against the names your backup job "
                          "writes (`drillbook verify backup SOURCE --key-pattern ...` shows what matches)")
    taken, newest = max(dated, key=lambda pair: (pair[0], pair[1].last_modified, pair[1].key))
    matching = f"{len(dated)} keys match key_pattern {key_pattern!r}" if pattern else f"{len(dated)} backups"
    return result(name, Outcome.PASSED, f"{where}: {matching}; newest {newest.key} "
                  f"({short_duration(now - taken)} old)", backups=len(dated), newest=newest.key)


def http(name: str, target: HttpTarget) -> Verdict:
    """The URL answers (with the configured headers): 401/403 fails, 5xx warns, any other answer passes.

    A 404 passes: the base URL need not be a page, the health scenarios name their paths.
    """
    from checks.http_health import fetch, shown_url

    response = fetch(target.url, target=target.name, ca_file=target.ca_file, headers=target.headers,
                     timeout_s=_HTTP_TIMEOUT_S, follow_redirects=target.follow_redirects)
    where = shown_url(target.url)
    took = f"{response.latency.total_seconds() * 1000:.0f} ms"
    if response.status in (401, 403):
        return result(name, Outcome.FAILED, f"{where} refuses the credentials: HTTP {response.status}",
                      fix="check the target's `headers` (the token from ${ENV}) and what the service expects")
    if response.status >= 500:
        return result(name, Outcome.WARNING, f"{where} answers HTTP {response.status} in {took}",
                      fix="the service answers with a server error: the health scenarios will say more")
    return result(name, Outcome.PASSED, f"{where} answers HTTP {response.status} in {took}")


def tls(name: str, target: TlsTarget) -> Verdict:
    """A verified handshake with the endpoint (a failed verification is a warning: it answers), or the
    PEM file read."""
    from checks.tls_certs import CertSource, describe_cert, load_pem_chain, verify_endpoint

    source = CertSource(label=target.name, host=target.host, port=target.port,
                        server_name=target.server_name, pem_file=target.pem_file, ca_file=target.ca_file)
    if target.pem_file is not None:
        chain = load_pem_chain(target.pem_file, label=target.name)
        leaf = describe_cert(chain[0])
        return result(name, Outcome.PASSED, f"{target.pem_file}: {len(chain)} certificate(s), leaf "
                      f"{leaf['subject']} valid until {leaf['not_after']}")
    verdict = verify_endpoint(source, hostname=target.expected_hostname or "")
    if verdict.outcome is Outcome.PASSED:
        return result(name, Outcome.PASSED, f"{source.describe()}: TLS handshake verified for "
                      f"{target.expected_hostname}")
    if verdict.outcome is Outcome.FAILED:
        return result(name, Outcome.WARNING, f"{verdict.message} (the endpoint answers: the certificate "
                      "scenarios will fail)", fix="renew or fix the certificate, or name its CA in `ca_file`")
    return result(name, Outcome.FAILED, verdict.message, fix="check the target's `host` and `port`, and "
                  "that the service speaks TLS there")


def prometheus(name: str, target: PrometheusTarget) -> Verdict:
    """``/api/v1/status/buildinfo`` answers with a version."""
    from checks.errors import UnusableAnswer
    from checks.http_health import endpoint_url, fetch, shown_url

    url = endpoint_url(target.url, "/api/v1/status/buildinfo")
    response = fetch(url, target=target.name, ca_file=target.ca_file, timeout_s=_HTTP_TIMEOUT_S)
    where = shown_url(target.url)
    if response.status != 200:
        return result(name, Outcome.FAILED, f"{where}: build info answered HTTP {response.status}",
                      fix="set `url` to the Prometheus server itself (with its path prefix, if any)")
    try:
        document = response.json()
    except UnusableAnswer as exc:
        return result(name, Outcome.FAILED, exc.message, fix=exc.hint)
    version = buildinfo_version(document)
    if version is None:
        return result(name, Outcome.FAILED, f"{where}: the build info names no version",
                      fix="set `url` to the Prometheus server itself (with its path prefix, if any)")
    return result(name, Outcome.PASSED, f"Prometheus {version} at {where}")


def buildinfo_version(document: object) -> str | None:
    """``data.version`` of a build info answer, when it is a short string (outside input)."""
    if not isinstance(document, dict):
        return None
    data = document.get("data")
    version = data.get("version") if isinstance(data, dict) else None
    if not isinstance(version, str) or not version.strip() or len(version) > 64:
        return None
    return version.strip()

