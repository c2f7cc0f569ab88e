"""SLOs through Prometheus' HTTP API: one instant query, one number, compared with a threshold.

``GET /api/v1/query?query=...`` must return a scalar, or a vector of exactly
one sample: aggregate in PromQL (``max(...)``, ``sum(...)``) when a metric has
several series. A query Prometheus rejects, an empty result, several series
or NaN is an error verdict naming the query: it could not be checked.

A redirect is not followed (:func:`checks.http_health.fetch`'s default): the number must
come from the configured server, and a redirect elsewhere is an error naming its Location.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from .errors import DrillbookError, UnusableAnswer
from .http_health import HttpResponse, endpoint_url, fetch, shown_url
from .thresholds import compare
from .verdict import Verdict, verdict_from_error

# Series labels quoted in a "several series" error.
_SERIES_SHOWN = 5


@dataclass(frozen=True)
class Sample:
    """The one number a query returned, with its series labels and evaluation time."""

    value: float
    labels: dict[str, str]
    timestamp: float
    result_type: str


def instant_query(
    base_url: str, query: str, *, target: str, ca_file: Path | None = None, timeout_s: float = 10.0,
) -> Sample:
    """Run ``query``; raise :class:`UnusableAnswer` naming it unless it yields exactly one number."""
    url = endpoint_url(base_url, "/api/v1/query") + "?" + urlencode({"query": query})
    response = fetch(url, target=target, ca_file=ca_file, timeout_s=timeout_s)
    if response.redirect is not None:
        location = shown_url(response.redirect.location)
        raise UnusableAnswer(
            f"Prometheus `{target}`: query {query!r} answered HTTP {response.status} redirecting to "
            f"{location}, {response.redirect.refused}", target=target, query=query, location=location,
            hint="set the target's `url` to the Prometheus server's own address (with its path prefix, "
            "if any): drillbook never takes the answer from wherever a server redirects",
        )
    return parse_query_response(response, query)


def parse_query_response(response: HttpResponse, query: str) -> Sample:
    """The single sample of a query API answer (see the module docstring for what is refused)."""
    where = f"Prometheus `{response.target}`"

    def unusable(reason: str, hint: str) -> UnusableAnswer:
        return UnusableAnswer(f"{where}: query {query!r} {reason}", target=response.target, query=query,
                              hint=hint)

    try:
        body = json.loads(response.body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise unusable(f"got HTTP {response.status} with a body that is not JSON from {response.url}",
                       "the target's `url` must be the Prometheus server itself (e.g. http://prom:9090)"
                       ) from None
    if not isinstance(body, dict):
        raise unusable("got a JSON body that is not an object", "point the target at Prometheus")
    if body.get("status") != "success":
        raise unusable(
            f"failed ({body.get('errorType', f'HTTP {response.status}')}): {body.get('error', body)}",
            "fix the PromQL in the feature; try it in Prometheus' own expression browser",
        )
    data = body.get("data")
    result_type = data.get("resultType") if isinstance(data, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    malformed = unusable("got an answer in an unexpected shape (not Prometheus' query API?)",
                         "the target's `url` must be the Prometheus server itself")
    if result_type == "scalar" and isinstance(result, list) and len(result) == 2:
        timestamp, raw, labels = result[0], result[1], {}
    elif result_type == "vector" and isinstance(result, list):
        if not result:
            raise unusable(
                "returned no sample (an empty vector)",
                "the metric may not be scraped (yet), or the label selectors match nothing",
            )
        if not all(isinstance(s, dict) for s in result):
            raise malformed
        if len(result) > 1:
            shown = "; ".join(_labels(s.get("metric", {})) for s in result[:_SERIES_SHOWN])
            raise unusable(
                f"returned {len(result)} series ({shown}), expected one",
                "aggregate in the query (max(...), sum(...), avg(...)) so it yields one number",
            )
        pair = result[0].get("value")
        metric = result[0].get("metric", {})
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(metric, dict):
            raise malformed
        timestamp, raw = pair
        labels = {str(k): str(v) for k, v in metric.items()}
    elif result_type in ("matrix", "string"):
        raise unusable(f"returned a {result_type}, not a scalar or a one-sample vector",
                       "an instant query of a range selector returns a matrix: wrap it in a function")
    else:
        raise malformed
    try:
        value, when = float(raw), float(timestamp)
    except (TypeError, ValueError):
        raise malformed from None
    if math.isnan(value):
        raise unusable("returned NaN", "a ratio of zero over zero is NaN: is there any traffic in the range?")
    return Sample(value=value, labels=labels, timestamp=when, result_type=str(result_type))


def query_compares(
    base_url: str, query: str, *, comparison: str, threshold: float, target: str,
    ca_file: Path | None = None, timeout_s: float = 10.0,
) -> Verdict:
    """The query's one number ``<comparison> threshold`` (Sovra: availability at least 0.999)."""
    try:
        sample = instant_query(base_url, query, target=target, ca_file=ca_file, timeout_s=timeout_s)
    except DrillbookError as exc:
        return verdict_from_error("prometheus.query", exc)
    return compare_sample(sample, query, comparison=comparison, threshold=threshold, target=target,
                          url=base_url)


def compare_sample(sample: Sample, query: str, *, comparison: str, threshold: float, target: str,
                   url: str) -> Verdict:
    shown = _number(sample.value)
    return Verdict.compare(
        "prometheus.query", measured=sample.value, expected=f"{comparison} {_number(threshold)}",
        ok=compare(sample.value, comparison, threshold),
        message=f"Prometheus `{target}`: {query} = {shown}, expected {comparison} {_number(threshold)}",
        evidence={"target": target, "url": url, "query": query, "value": sample.value,
                  "labels": sample.labels, "evaluated_at": sample.timestamp,
                  "result_type": sample.result_type},
    )


def _number(value: float) -> str:
    return f"{value:.6g}"


def _labels(metric: Any) -> str:
    if not isinstance(metric, dict) or not metric:
        return "{}"
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"
