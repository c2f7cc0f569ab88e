"""HTTP checks stay on the target (issue 10, part 7), against real loopback servers.

The target is an HTTPS server with the test CA's certificate; "elsewhere" is
another origin (plain http, another port on 127.0.0.1) and "elsewhere_tls" one
with a certificate the target's CA trusts; each records every request it gets
and answers "healthy" to anything — what an attacker's server would say.

A redirect is the answer unless the target opts in to same-origin redirects;
configured headers never reach another origin; https never goes to http; the
chain is evidence. Nothing is mocked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from checks import http_health, redact
from checks.http_health import MAX_REDIRECTS, FollowRedirects, HttpResponse
from checks.prometheus_slo import query_compares
from checks.verdict import Outcome
from tests.integration.health.conftest import HEALTHY
from tests.support.cli import drillbook
from tests.support.health_servers import (
    Pki,
    Route,
    Served,
    json_route,
    redirect_route,
    serve,
    server_context,
)

pytestmark = pytest.mark.integration

TOKEN = "Bearer redirect-t0ken-5678"
API_KEY = "k3y-never-elsewhere"
HEADERS = (("Authorization", TOKEN), ("X-Api-Key", API_KEY))
SECOND = timedelta(seconds=1)
# A Prometheus query answer that would pass "at least 1": served by the other origin only.
PROMETHEUS_ANSWER = json.dumps({"status": "success", "data": {"resultType": "scalar",
                                                               "result": [1_700_000_000, "1"]}}).encode()


ELSEWHERE_ROUTES = {"/health": json_route(HEALTHY), "/health/detailed": json_route(HEALTHY),
                    "/api/v1/query": Route(body=PROMETHEUS_ANSWER)}


@pytest.fixture
def elsewhere() -> Iterator[Served]:
    """Another origin over plain http: records every request; says "healthy" to anyone."""
    with serve(ELSEWHERE_ROUTES) as served:
        yield served


@pytest.fixture
def elsewhere_tls(pki: Pki, workdir: Path) -> Iterator[Served]:
    """Another origin over https, trusted by the same CA: only the origin tells it from the target."""
    with serve(ELSEWHERE_ROUTES, tls=server_context(pki.valid_chain, pki.valid_key, workdir)) as served:
        yield served


@pytest.fixture
def service(pki: Pki, workdir: Path) -> Iterator[Served]:
    """The target: HTTPS on 127.0.0.1 with a chain to the test CA; each test sets its routes."""
    with serve({}, tls=server_context(pki.valid_chain, pki.valid_key, workdir)) as served:
        yield served


def _fetch(service: Served, path: str, pki: Pki,
           follow: FollowRedirects = FollowRedirects.NEVER) -> HttpResponse:
    return http_health.fetch(http_health.endpoint_url(service.url, path), target="sark-api",
                             ca_file=pki.ca_file, headers=HEADERS, timeout_s=5, follow_redirects=follow)


def _configured_headers_seen(server: Served) -> list[str]:
    """Every configured header value that arrived at ``server``, by request path."""
    return [f"{request.path}: {name}" for request in server.received for name, value in request.headers
            if value in (TOKEN, API_KEY)]


class TestTheRecordingServer:
    def test_it_records_the_headers_that_reach_it(self, elsewhere: Served) -> None:
        """The negative tests below mean something: a header sent to "elsewhere" is seen there."""
        http_health.fetch(elsewhere.url + "/health", target="direct", headers=HEADERS, timeout_s=5)
        assert _configured_headers_seen(elsewhere) == ["/health: Authorization", "/health: X-Api-Key"]


class TestARedirectIsTheAnswer:
    """The default (follow_redirects = "never"): nothing is followed, every check names the Location."""

    def test_no_configured_header_reaches_another_origin(
        self, service: Served, elsewhere: Served, pki: Pki,
    ) -> None:
        """The issue's case: a 302 to another origin; the token never arrives there, nothing passes."""
        location = elsewhere.url + "/health"
        service.routes["/health/detailed"] = redirect_route(location, body=json.dumps(HEALTHY).encode())
        response = _fetch(service, "/health/detailed", pki)
        assert elsewhere.received == [] and _configured_headers_seen(elsewhere) == []
        assert response.status == 302
        verdicts = [
            http_health.status_within(response, status=200, limit=5 * SECOND),
            http_health.json_equals(response, "status", "healthy"),
            http_health.every_entry_equals(response, "components", "status", "healthy"),
        ]
        for verdict in verdicts:
            assert verdict.outcome is Outcome.FAILED, verdict.message
            assert location in verdict.message and "not followed" in verdict.message
            assert "HTTP 302" in verdict.message

    def test_a_same_origin_redirect_is_not_followed_either(self, service: Served, pki: Pki) -> None:
        """Without opting in, even the target's own redirect is the answer: one request only."""
        service.routes["/health"] = redirect_route("/health/detailed")
        service.routes["/health/detailed"] = json_route(HEALTHY)
        verdict = http_health.status_within(_fetch(service, "/health", pki), status=200, limit=5 * SECOND)
        assert verdict.outcome is Outcome.FAILED
        assert f"{service.url}/health/detailed" in verdict.message
        assert 'follow_redirects = "never"' in verdict.message
        assert [r.path for r in service.received] == ["/health"]

    def test_expecting_the_redirect_passes_and_names_where_it_points(
        self, service: Served, elsewhere: Served, pki: Pki,
    ) -> None:
        """A feature may check that a path redirects: the 3xx is the answer, with its Location named."""
        service.routes["/login"] = redirect_route(elsewhere.url + "/sso", status=303)
        verdict = http_health.status_within(_fetch(service, "/login", pki), status=303, limit=5 * SECOND)
        assert verdict.outcome is Outcome.PASSED
        assert f"{elsewhere.url}/sso" in verdict.message and elsewhere.received == []

    def test_the_chain_is_evidence(self, service: Served, elsewhere: Served, pki: Pki) -> None:
        """Each hop: status, the URL that answered, where it pointed, followed or why not."""
        service.routes["/health"] = redirect_route(elsewhere.url + "/health", status=307)
        verdict = http_health.status_within(_fetch(service, "/health", pki), status=200, limit=5 * SECOND)
        assert verdict.evidence["redirects"] == [{
            "status": 307, "url": f"{service.url}/health", "location": f"{elsewhere.url}/health",
            "followed": False, "refused": 'not followed (follow_redirects = "never", the default)',
        }]

    def test_an_answer_without_redirects_has_an_empty_chain(self, service: Served, pki: Pki) -> None:
        service.routes["/health"] = json_route(HEALTHY)
        verdict = http_health.json_equals(_fetch(service, "/health", pki), "status", "healthy")
        assert verdict.outcome is Outcome.PASSED and verdict.evidence["redirects"] == []

    def test_secrets_in_the_location_are_masked(self, service: Served, elsewhere: Served, pki: Pki) -> None:
        """A registered secret in the Location is masked; a password in its user info is dropped."""
        redact.register("sso-s3cret-code")
        try:
            location = elsewhere.url.replace("://", "://user:pa55w0rd@") + "/cb?code=sso-s3cret-code"
            service.routes["/health"] = redirect_route(location)
            verdict = http_health.status_within(_fetch(service, "/health", pki), status=200,
                                                limit=5 * SECOND)
        finally:
            redact.clear()
        shown = verdict.message + json.dumps(verdict.evidence)
        assert "sso-s3cret-code" not in shown and "pa55w0rd" not in shown
        assert f"{elsewhere.url}/cb?code=***" in verdict.message


class TestSameOriginRedirects:
    """follow_redirects = "same-origin": the target's own scheme, host and port, and nothing else."""

    def test_a_same_origin_chain_is_followed_with_the_headers(self, service: Served, pki: Pki) -> None:
        """A relative and an absolute same-origin hop are followed; the endpoint needs the token."""
        service.routes["/health"] = redirect_route("/health/v2", status=301)
        service.routes["/health/v2"] = redirect_route(service.url + "/private", status=307)
        service.routes["/private"] = json_route(HEALTHY, need_header=("Authorization", TOKEN))
        response = _fetch(service, "/health", pki, FollowRedirects.SAME_ORIGIN)
        status = http_health.status_within(response, status=200, limit=5 * SECOND)
        assert status.outcome is Outcome.PASSED, status.message
        assert "after 2 same-origin redirects" in status.message
        assert http_health.json_equals(response, "status", "healthy").outcome is Outcome.PASSED
        assert [(r.path, dict(r.headers).get("Authorization")) for r in service.received] == [
            ("/health", TOKEN), ("/health/v2", TOKEN), ("/private", TOKEN)]
        assert [(hop["status"], hop["followed"]) for hop in status.evidence["redirects"]] == [
            (301, True), (307, True)]
        assert status.evidence["final_url"] == f"{service.url}/private"

    def test_a_redirect_to_another_origin_is_not_followed(
        self, service: Served, elsewhere_tls: Served, pki: Pki,
    ) -> None:
        """Another https port on the same host is another origin: refused, named, nothing sent there."""
        location = elsewhere_tls.url + "/health"
        service.routes["/health"] = redirect_route(location)
        response = _fetch(service, "/health", pki, FollowRedirects.SAME_ORIGIN)
        verdict = http_health.every_entry_equals(response, "components", "status", "healthy")
        assert verdict.outcome is Outcome.FAILED
        assert location in verdict.message and "leaves the origin" in verdict.message
        assert elsewhere_tls.received == [] and _configured_headers_seen(elsewhere_tls) == []

    def test_another_host_name_for_the_same_server_is_another_origin(self, service: Served, pki: Pki) -> None:
        """localhost is not 127.0.0.1 to an origin check, even on the same port: never followed."""
        location = f"https://localhost:{service.port}/health/detailed"
        service.routes["/health"] = redirect_route(location)
        verdict = http_health.status_within(_fetch(service, "/health", pki, FollowRedirects.SAME_ORIGIN),
                                            status=200, limit=5 * SECOND)
        assert verdict.outcome is Outcome.FAILED
        assert location in verdict.message and "leaves the origin" in verdict.message
        assert [r.path for r in service.received] == ["/health"]

    def test_a_chain_that_leaves_the_origin_midway_stops_there(
        self, service: Served, elsewhere_tls: Served, pki: Pki,
    ) -> None:
        """The same-origin hop is followed, the one that leaves is not; both are in the evidence."""
        service.routes["/health"] = redirect_route("/health/v2")
        service.routes["/health/v2"] = redirect_route(elsewhere_tls.url + "/health/detailed")
        verdict = http_health.json_equals(_fetch(service, "/health", pki, FollowRedirects.SAME_ORIGIN),
                                          "status", "healthy")
        assert verdict.outcome is Outcome.FAILED
        assert [(hop["url"], hop["location"], hop["followed"]) for hop in verdict.evidence["redirects"]] == [
            (f"{service.url}/health", f"{service.url}/health/v2", True),
            (f"{service.url}/health/v2", f"{elsewhere_tls.url}/health/detailed", False),
        ]
        assert "leaves the origin" in verdict.evidence["redirects"][-1]["refused"]
        assert elsewhere_tls.received == []

    @pytest.mark.parametrize("to_same_port", [False, True], ids=["another-port", "same-host-and-port"])
    def test_https_to_http_is_refused(
        self, service: Served, elsewhere: Served, pki: Pki, to_same_port: bool,
    ) -> None:
        """A downgrade to plain http is never followed, not even to the target's own host and port."""
        base = f"http://127.0.0.1:{service.port}" if to_same_port else elsewhere.url
        service.routes["/health"] = redirect_route(base + "/health")
        verdict = http_health.status_within(_fetch(service, "/health", pki, FollowRedirects.SAME_ORIGIN),
                                            status=200, limit=5 * SECOND)
        assert verdict.outcome is Outcome.FAILED
        assert "from https to http" in verdict.message and f"{base}/health" in verdict.message
        assert elsewhere.received == [] and [r.path for r in service.received] == ["/health"]

    def test_a_redirect_loop_ends_at_the_hop_limit(self, service: Served, pki: Pki) -> None:
        service.routes["/loop"] = redirect_route("/loop")
        response = _fetch(service, "/loop", pki, FollowRedirects.SAME_ORIGIN)
        verdict = http_health.status_within(response, status=200, limit=5 * SECOND)
        assert verdict.outcome is Outcome.FAILED
        assert f"more than {MAX_REDIRECTS} redirects" in verdict.message
        assert len(verdict.evidence["redirects"]) == MAX_REDIRECTS + 1
        assert len(service.received) == MAX_REDIRECTS + 1


class TestPrometheusRedirects:
    def test_a_redirecting_prometheus_is_an_error_naming_the_location(self, elsewhere: Served) -> None:
        """The number must come from the configured server: a redirect elsewhere is not followed."""
        location = elsewhere.url + "/api/v1/query?query=up"
        with serve({"/api/v1/query": redirect_route(location)}) as prometheus:
            verdict = query_compares(prometheus.url, "up", comparison="at least", threshold=1,
                                     target="metrics", timeout_s=5)
        assert verdict.outcome is Outcome.ERROR
        assert location in verdict.message and "HTTP 302" in verdict.message
        assert verdict.evidence["location"] == location
        assert elsewhere.received == []


FEATURE = """\
Feature: Redirects

  @id:RD-01 @daily @http
  Scenario: a health endpoint that redirects to another origin
    Given the HTTP service "redirecting-api"
    Then "/health/detailed" answers HTTP 200 within 5s

  @id:RD-02 @daily @http
  Scenario: the redirect's own "healthy" body is not the target's health
    Given the HTTP service "redirecting-api"
    Then every entry of "components" in the JSON of "/health/detailed" has "status" equal to "healthy"

  @id:RD-03 @daily @http
  Scenario: a same-origin redirect, opted in
    Given the HTTP service "following-api"
    Then "/health" answers HTTP 200 within 5s
    And every entry of "components" in the JSON of "/health" has "status" equal to "healthy"

  @id:RD-04 @daily @http
  Scenario: opted in, but the redirect leaves the origin
    Given the HTTP service "leaving-api"
    Then "/health/detailed" answers HTTP 200 within 5s
"""


class TestRedirectsEndToEnd:
    def test_drillbook_run_never_passes_a_redirect_elsewhere(
        self, tmp_path: Path, service: Served, elsewhere: Served, elsewhere_tls: Served, pki: Pki,
    ) -> None:
        """`drillbook run --config`: a redirect elsewhere fails, the token stays, the chain is evidence."""
        service.routes["/r/health/detailed"] = redirect_route(elsewhere.url + "/health/detailed",
                                                              body=json.dumps(HEALTHY).encode())
        service.routes["/f/health"] = redirect_route("/f/health/live")
        service.routes["/f/health/live"] = json_route(HEALTHY, need_header=("Authorization", TOKEN))
        service.routes["/l/health/detailed"] = redirect_route(elsewhere_tls.url + "/health/detailed")
        common = (f"ca_file = {json.dumps(str(pki.ca_file))}\n"
                  'headers = { Authorization = "${API_TOKEN}" }\n')
        config = tmp_path / "drillbook.toml"
        config.write_text(
            f'[targets.redirecting-api]\nkind = "http"\nurl = "{service.url}/r"\n{common}'
            f'[targets.following-api]\nkind = "http"\nurl = "{service.url}/f"\n{common}'
            'follow_redirects = "same-origin"\n'
            f'[targets.leaving-api]\nkind = "http"\nurl = "{service.url}/l"\n{common}'
            'follow_redirects = "same-origin"\n'
        )
        features = tmp_path / "features"
        features.mkdir()
        (features / "redirects.feature").write_text(FEATURE)
        out = tmp_path / "out"
        proc = drillbook("run", "--config", str(config), "--features", str(features), "--out", str(out),
                         env={"API_TOKEN": TOKEN}, timeout=180)
        run_dir = next(p for p in out.iterdir() if p.is_dir() and not p.is_symlink())
        scenarios: dict[str, Any] = {
            s["id"]: s for s in json.loads((run_dir / "results.json").read_text())["scenarios"]}

        outcomes = {ident: s["outcome"] for ident, s in scenarios.items()}
        assert outcomes == {"RD-01": "failed", "RD-02": "failed", "RD-03": "passed", "RD-04": "failed"}, (
            proc.stdout[-4000:])
        assert proc.returncode == 1
        assert elsewhere.received == [] and elsewhere_tls.received == []
        texts = [proc.stdout, proc.stderr] + [p.read_text(errors="replace") for p in run_dir.rglob("*")
                                              if p.is_file()]
        assert not [text for text in texts if TOKEN.split()[-1] in text]
        refused = scenarios["RD-01"]["verdicts"][-1]
        assert f"{elsewhere.url}/health/detailed" in refused["message"]
        assert refused["evidence"]["redirects"][0]["followed"] is False
        assert "leaves the origin" in scenarios["RD-04"]["verdicts"][-1]["message"]
        followed = scenarios["RD-03"]["verdicts"][0]["evidence"]["redirects"]
        assert followed == [{"status": 302, "url": f"{service.url}/f/health",
                             "location": f"{service.url}/f/health/live", "followed": True}]
