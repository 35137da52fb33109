"""Structured logs: one JSON object per line on stdout.

Every record becomes ``{"time", "level", "logger", "message", ...}`` plus the
fields passed in ``extra``; a record logged with an exception (``log.exception``)
carries the whole traceback in ``"exception"``, inside the same single line, so a
log pipeline never splits a stack trace into unrelated lines. Records logged while
a request is handled carry its ``request_id``.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

from flask import has_request_context, request
from pythonjsonlogger.orjson import OrjsonFormatter

from .requestid import REQUEST_ID_ENVIRON_KEY

ACCESS_LOGGER = "conduit.access"


class JsonFormatter(OrjsonFormatter):
    """python-json-logger's orjson formatter with time first and short field names."""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
        )

    def add_fields(self, log_data, record, message_dict) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat(
            timespec="milliseconds"
        )
        super().add_fields(log_data, record, message_dict)


class RequestIdFilter(logging.Filter):
    """Adds the current request's id to records logged during a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and has_request_context():
            request_id = request.environ.get(REQUEST_ID_ENVIRON_KEY)
            if request_id:
                record.request_id = request_id
        return True


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(level: str = "INFO") -> None:
    """Send every logger's records to stdout as JSON; safe to call more than once.

    Only the root logger gets a handler, and only one: handlers others attached
    (a test runner's capture, for one) stay as they are.
    """
    root = logging.getLogger()
    if not any(isinstance(h, StdoutHandler) for h in root.handlers):
        handler = StdoutHandler()
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    root.setLevel(level)
    # logging.config.fileConfig (Alembic's env.py runs it) disables every logger that
    # exists at the time; an app created after migrations in the same process
    # (the test suite, a notebook) would otherwise log nothing.
    for name, logger in logging.root.manager.loggerDict.items():
        ours = name == "conduit" or name.startswith("conduit.")
        if ours and isinstance(logger, logging.Logger):
            logger.disabled = False
