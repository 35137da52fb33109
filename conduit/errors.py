"""One JSON error shape for every failure: {"errors": {"<field or body>": ["message"]}}.

No client input may produce an HTML page or a 500: HTTP errors raised by Flask and
Werkzeug (404 for unknown routes, 405, 413 ...) are rendered as JSON too, and invalid
input becomes 422 as the RealWorld spec asks.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from marshmallow import ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# PostgreSQL's codes for a statement cancelled by statement_timeout (query_canceled) or
# by lock_timeout (lock_not_available): see settings._postgresql_limits.
_CANCELLED_BY_LIMIT = frozenset({"57014", "55P03"})
# Transactions PostgreSQL aborted to let a concurrent one go on: deadlock_detected and
# serialization_failure. The database is up and nothing was written; the same request,
# sent again, can succeed (PostgreSQL docs, "Serialization Failure Handling").
_RETRYABLE_CONFLICT = {"40P01": "deadlock detected", "40001": "serialization failure"}


class APIError(Exception):
    """An error the client can act on, rendered as the RealWorld error body."""

    def __init__(self, status: int, errors: dict[str, list[str]], headers=None):
        super().__init__(errors)
        self.status = status
        self.errors = errors
        self.headers = headers or {}


def invalid(errors: dict[str, list[str]]) -> APIError:
    """422, the spec's answer to invalid input, with one or more messages per field."""
    return APIError(422, errors)


def unprocessable(field: str, message: str) -> APIError:
    return invalid({field: [message]})


def not_found(what: str) -> APIError:
    return APIError(404, {what: ["not found"]})


def forbidden(what: str, message: str) -> APIError:
    return APIError(403, {what: [message]})


def unauthorized(message: str, field: str = "token") -> APIError:
    # RFC 9110: a 401 names the scheme the client should use.
    return APIError(401, {field: [message]}, {"WWW-Authenticate": "Token"})


def flatten_messages(messages, prefix: str = "") -> dict[str, list[str]]:
    """Turn marshmallow's nested messages into the flat field -> [messages] shape."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, list):
        flat.setdefault(prefix or "body", []).extend(str(m) for m in messages)
        return flat
    for key, value in messages.items():
        name = (
            f"{prefix}[{key}]"
            if isinstance(key, int)
            else (f"{prefix}.{key}" if prefix else str(key))
        )
        if key == "_schema":
            name = prefix or "body"
        for field, texts in flatten_messages(value, name).items():
            flat.setdefault(field, []).extend(texts)
    return flat


def _render(status: int, errors: dict[str, list[str]], headers=None):
    response = jsonify(errors=errors)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def api_error(error: APIError):
        return _render(error.status, error.errors, error.headers)

    @app.errorhandler(ValidationError)
    def validation_error(error: ValidationError):
        return _render(422, flatten_messages(error.messages))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        # Malformed bodies and unsupported media types are invalid input in the spec: 422.
        if status in (400, 415):
            status = 422
        description = error.description or error.name
        headers = dict(error.get_headers()) if status == error.code else {}
        headers.pop("Content-Type", None)
        return _render(status, {"body": [description]}, headers)

    @app.errorhandler(IntegrityError)
    def integrity_error(error: IntegrityError):
        # A uniqueness race lost to a concurrent request; nothing was written.
        log.warning("integrity error: %s", error.orig)
        return _render(409, {"body": ["conflicting concurrent change, please retry"]})

    @app.errorhandler(DBAPIError)
    def database_error(error: DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None)
        if sqlstate in _RETRYABLE_CONFLICT:
            log.warning("%s, answered 409: %s", _RETRYABLE_CONFLICT[sqlstate], error.orig)
            return _render(
                409,
                {"body": ["a concurrent change to the same data won; retry this request"]},
                {"Retry-After": "1"},
            )
        if sqlstate in _CANCELLED_BY_LIMIT:
            log.warning("database statement cancelled: %s", error.orig)
            return _render(
                503, {"database": ["the request took too long, please retry"]}, {"Retry-After": "1"}
            )
        if error.connection_invalidated or isinstance(error, OperationalError):
            log.error("database unavailable: %s", error.orig)
            return _render(
                503, {"database": ["temporarily unavailable, please retry"]}, {"Retry-After": "1"}
            )
        log.exception("database error")
        return _render(500, {"body": ["internal server error"]})

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        log.exception("unhandled error")
        return _render(500, {"body": ["internal server error"]})
