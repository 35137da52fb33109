"""A test-only fault switch: CONDUIT_FAULT_INJECTION makes API requests fail or slow.

It lets the tests show that the canary analysis (deploy/conduit_deploy/analysis.py)
catches a bad release from the app's real metrics
(tests/monitoring/test_canary_analysis.py). It is off unless set, and the app refuses
to start with it when CONDUIT_ENV=production: no deployed pod can carry it.

Value: comma-separated `name=value` pairs, e.g. `5xx=0.5,latency=0.3`:
  5xx      the fraction (0-1) of /api/ requests answered with a JSON 500;
  latency  seconds added to every /api/ request.
Health endpoints and /metrics are never touched: a faulty pod stays ready and scraped,
as a bad release does.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from flask import Flask, jsonify, request

from .settings import ConfigError

VARIABLE = "CONDUIT_FAULT_INJECTION"
API_PREFIX = "/api/"


@dataclass(frozen=True)
class Faults:
    error_ratio: float = 0.0
    latency_seconds: float = 0.0


def parse(value: str) -> Faults:
    fields: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, _, number = part.partition("=")
        if name not in ("5xx", "latency") or not number:
            raise ConfigError(f"{VARIABLE}: expected 5xx=RATIO or latency=SECONDS, got {part!r}")
        try:
            fields[name] = float(number)
        except ValueError:
            raise ConfigError(f"{VARIABLE}: {name} must be a number, got {number!r}") from None
    ratio, latency = fields.get("5xx", 0.0), fields.get("latency", 0.0)
    if not 0 <= ratio <= 1 or latency < 0:
        raise ConfigError(f"{VARIABLE}: 5xx must be within 0-1 and latency at least 0")
    return Faults(ratio, latency)


def from_env(env: Mapping[str, str], environment: str) -> Faults | None:
    value = env.get(VARIABLE, "").strip()
    if not value:
        return None
    if environment == "production":
        raise ConfigError(f"{VARIABLE} is a test-only setting and refused in production")
    return parse(value)


def install(app: Flask, faults: Faults) -> None:
    """A before_request hook (after the route is recorded, so metrics label it)."""
    pick = random.Random()  # noqa: S311 - picks failing requests, not a secret

    def inject():
        if not request.path.startswith(API_PREFIX):
            return None
        if faults.latency_seconds:
            time.sleep(faults.latency_seconds)
        if faults.error_ratio and pick.random() < faults.error_ratio:
            response = jsonify(errors={"body": ["injected fault"]})
            response.status_code = 500
            return response
        return None

    app.before_request(inject)
