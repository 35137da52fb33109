"""Judge a canary against the stable set from the app's Prometheus metrics.

The app exports conduit_http_requests_total and conduit_http_request_duration_seconds
(conduit/observability/metrics.py), labelled route, method, status. Prometheus scrapes
each Service's pods under the Service's name as `job` (the ServiceMonitor in
k8s/monitoring sets no jobLabel; prometheus-operator's API reference, ServiceMonitorSpec
.jobLabel: "defaults to the name of the associated Kubernetes Service"), so the stable
pods are job="conduit" and the canary's job="conduit-canary".

Three rules, over the same window for both sets, health probes left out (the kubelet's
/healthz and /readyz are not users' traffic):

* the canary served at least `min_requests` requests, else the verdict is inconclusive;
* its 5xx ratio exceeds the stable one by at most `max_error_ratio_increase`;
* its p99 latency exceeds the stable one by at most `max_p99_increase_seconds`.

A query that returns no data makes the verdict inconclusive, never a pass; so does a
p99 that is not a number (no requests in the window). Only the 5xx count may be
absent: a counter series with a 5xx status exists after the first 5xx only.

`increase()` counts from a series' first scrape on: requests a new series (a canary
pod, a first 5xx) served before that scrape are not counted. That undercounts, so it
can make a verdict inconclusive, never a pass it should not be.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from .errors import DeployError

# Users' traffic only: the probes hit these routes on every pod every few seconds.
PROBE_ROUTES = "/healthz|/readyz"
QUANTILE = 0.99

# query(expr) -> the instant vector Prometheus answers: [(labels, value)].
Query = Callable[[str], list[tuple[dict[str, str], float]]]


class PrometheusError(DeployError):
    """Prometheus could not be asked, or did not answer a query."""


class Outcome(enum.Enum):
    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Thresholds:
    max_error_ratio_increase: float = 0.01  # 1 percentage point
    max_p99_increase_seconds: float = 0.1
    min_requests: int = 50


@dataclass(frozen=True)
class Selection:
    """Which series are the canary and which the stable set."""

    namespace: str
    stable_job: str
    canary_job: str


@dataclass(frozen=True)
class SetFigures:
    requests: float
    errors: float
    p99_seconds: float

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reasons: tuple[str, ...]
    canary: SetFigures | None = None
    stable: SetFigures | None = None

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons)


def api_path(expr: str) -> str:
    """Prometheus' instant-query endpoint (HTTP API v1, GET /api/v1/query) for expr."""
    return "/api/v1/query?" + urlencode({"query": expr})


def parse_vector(text: str) -> list[tuple[dict[str, str], float]]:
    """The samples of an instant-query answer.

    Shape (Prometheus HTTP API, querying.md "Instant queries" and "Instant vectors"):
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {...},
    "value": [<unix time>, "<value as a string>"]}]}}; an error has status "error" and
    "errorType"/"error".
    """
    try:
        answer = json.loads(text)
    except ValueError:
        raise PrometheusError(f"Prometheus answered no JSON: {text.strip()[:200]!r}") from None
    if not isinstance(answer, dict) or answer.get("status") != "success":
        detail = answer.get("error") if isinstance(answer, dict) else None
        raise PrometheusError(f"Prometheus refused the query: {detail or str(answer)[:200]}")
    data = answer.get("data") or {}
    if data.get("resultType") != "vector":
        raise PrometheusError(f"expected an instant vector, got {data.get('resultType')!r}")
    return [(item["metric"], float(item["value"][1])) for item in data.get("result") or []]


def _selector(selection: Selection, job: str, extra: str = "") -> str:
    return f'{{job="{job}", namespace="{selection.namespace}", route!~"{PROBE_ROUTES}"{extra}}}'


def queries(selection: Selection, job: str, window_seconds: int) -> dict[str, str]:
    """The three PromQL expressions for one set (its job) over the window."""
    window = f"[{window_seconds}s]"
    requests = f"conduit_http_requests_total{_selector(selection, job)}"
    server_errors = ', status=~"5.."'
    errors = f"conduit_http_requests_total{_selector(selection, job, server_errors)}"
    buckets = f"conduit_http_request_duration_seconds_bucket{_selector(selection, job)}"
    return {
        "requests": f"sum(increase({requests}{window}))",
        "errors": f"sum(increase({errors}{window}))",
        "p99": f"histogram_quantile({QUANTILE}, sum by (le) (rate({buckets}{window})))",
    }


def _figures(
    query: Query, selection: Selection, job: str, window_seconds: int, missing: list[str]
) -> SetFigures | None:
    exprs = queries(selection, job, window_seconds)
    values: dict[str, float] = {}
    for name, expr in exprs.items():
        result = query(expr)
        if result:
            values[name] = result[0][1]
        elif name == "errors":
            values[name] = 0.0  # no 5xx series yet
        else:
            missing.append(f"no data for {job}: {expr}")
    if "requests" not in values or "p99" not in values:
        return None
    return SetFigures(values["requests"], values["errors"], values["p99"])


def _percent(ratio: float) -> str:
    return f"{ratio * 100:.2f} %"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def analyze(
    query: Query, selection: Selection, window_seconds: int, thresholds: Thresholds
) -> Verdict:
    """Ask Prometheus about both sets over the last window_seconds and judge the canary."""
    missing: list[str] = []
    canary = _figures(query, selection, selection.canary_job, window_seconds, missing)
    stable = _figures(query, selection, selection.stable_job, window_seconds, missing)
    if canary is None or stable is None:
        return Verdict(Outcome.INCONCLUSIVE, tuple(missing), canary, stable)

    if canary.requests < thresholds.min_requests:
        return Verdict(
            Outcome.INCONCLUSIVE,
            (
                f"the canary served {canary.requests:.0f} requests in {window_seconds}s, "
                f"fewer than the {thresholds.min_requests} needed to judge it",
            ),
            canary,
            stable,
        )
    nan = [
        f"{name} p99 latency is not a number (no requests in the window?)"
        for name, figures in (("canary", canary), ("stable", stable))
        if math.isnan(figures.p99_seconds)
    ]
    if nan:
        return Verdict(Outcome.INCONCLUSIVE, tuple(nan), canary, stable)

    failures = []
    allowed_ratio = stable.error_ratio + thresholds.max_error_ratio_increase
    if canary.error_ratio > allowed_ratio:
        failures.append(
            f"5xx ratio: canary {_percent(canary.error_ratio)} ({canary.errors:.0f} of "
            f"{canary.requests:.0f}) > stable {_percent(stable.error_ratio)} ({stable.errors:.0f}"
            f" of {stable.requests:.0f}) + {_percent(thresholds.max_error_ratio_increase)}"
        )
    allowed_p99 = stable.p99_seconds + thresholds.max_p99_increase_seconds
    if canary.p99_seconds > allowed_p99:
        failures.append(
            f"p99 latency: canary {_ms(canary.p99_seconds)} > stable "
            f"{_ms(stable.p99_seconds)} + {_ms(thresholds.max_p99_increase_seconds)}"
        )
    if failures:
        return Verdict(Outcome.FAIL, tuple(failures), canary, stable)
    return Verdict(
        Outcome.PASS,
        (
            f"canary {canary.requests:.0f} requests, 5xx {_percent(canary.error_ratio)}, "
            f"p99 {_ms(canary.p99_seconds)}; stable {stable.requests:.0f} requests, 5xx "
            f"{_percent(stable.error_ratio)}, p99 {_ms(stable.p99_seconds)}",
        ),
        canary,
        stable,
    )
