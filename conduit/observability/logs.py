"""Logs on stdout: JSON lines for machines (production), text lines for people
(development, LOG_FORMAT=text).

As JSON, every record becomes ``{"time", "level", "logger", "message", ...}`` plus the
fields passed in ``extra``; a record logged with an exception (``log.exception``)
carries the whole traceback in ``"exception"``, inside the same single line, so a
log pipeline never splits a stack trace into unrelated lines. Records logged while
a request is handled carry its ``request_id``.

As text, a request is one line (``12:01:02 INFO GET /api/tags 200 1.9 ms``). The
development server's own request line, which would repeat it in colour, is dropped.

The access line of each request is written by ``AccessLog``, in the same two forms,
without going through a Logger (see its docstring for why).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from datetime import UTC, datetime

import orjson
from flask import has_request_context, request

from .requestid import REQUEST_ID_ENVIRON_KEY

ACCESS_LOGGER = "conduit.access"
# Terminal colour codes, which Werkzeug's development server puts in its messages.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


# Attributes every LogRecord has; anything else on a record came in through `extra`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time, level, logger, message, then the extras.

    Written on the standard library and orjson (already a dependency) rather than
    taken from a JSON-logging package: it formats the access line of every request,
    in less time than python-json-logger's orjson formatter takes.
    """

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": _time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": _plain(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES:
                data[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)  # cached for other handlers
        if record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return _json(data)


def _time(created: float) -> str:
    return datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")


def _json(data: dict) -> str:
    try:
        # Values orjson has no encoding for are logged as their str(), not lost.
        return orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits
        return json.dumps(data, default=str, ensure_ascii=False)


def _plain(message: str) -> str:
    return _ANSI_ESCAPE.sub("", message) if "\x1b" in message else message


# One text line's layout, for records and the access line alike.
_TEXT_LINE = "%(asctime)s %(levelname)-7s %(message)s"
_TEXT_DATE = "%H:%M:%S"


class TextFormatter(logging.Formatter):
    """One readable line per record, its logger's name at the end."""

    def __init__(self) -> None:
        super().__init__(_TEXT_LINE, datefmt=_TEXT_DATE)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return _plain(f"{super().formatMessage(record)} [{record.name}]")


class AccessLog:
    """The access line of each request, on stdout as configure_logging's handler would
    write a record: JSON ({"time", "level", "logger": "conduit.access", "message", then
    the fields}) or, as text, ``12:01:02 INFO    GET /api/tags 200 1.9 ms``.

    Written here rather than logged: it is the one record of every request, and
    logging's machinery for it (a LogRecord, the logger hierarchy, the handler's lock
    and filters, which a handler of its own did not make cheaper) cost a measurable
    share of every request served by uWSGI (bench/HISTORY.md, fourth round).
    The "conduit.access" logger still decides whether the line is written (LOG_LEVEL
    WARNING silences it); handlers attached to that logger do not receive it.
    """

    def __init__(self, log_format: str) -> None:
        self.logger = logging.getLogger(ACCESS_LOGGER)
        self.text = log_format == "text"
        self.lock = threading.Lock()  # one whole line at a time, as a handler's lock

    def write(self, fields: dict) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        now = time.time()
        message = _plain(f"{fields['method']} {fields['path']} {fields['status']}")
        if self.text:
            line = _TEXT_LINE % {
                "asctime": time.strftime(_TEXT_DATE, time.localtime(now)),
                "levelname": "INFO",
                "message": f"{message} {fields['duration_ms']:.1f} ms",
            }
        else:
            line = _json(
                {"time": _time(now), "level": "INFO", "logger": ACCESS_LOGGER, "message": message}
                | fields
            )
        stream = sys.stdout  # whatever it is now: test runners swap it
        with self.lock:
            stream.write(line + "\n")
            stream.flush()


class DropServerRequestLines(logging.Filter):
    """Drops the request line of Werkzeug's development server, which repeats the app's
    own access line: werkzeug/serving.py, WSGIRequestHandler.log_request() logs
    '<address> - - [<date>] "%s" %s %s' (request line, status, size) to "werkzeug"."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name == "werkzeug"
            and isinstance(record.msg, str)
            and record.msg.endswith('"%s" %s %s')
        )


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


def configure_logging(level: str = "INFO", log_format: str = "json") -> None:
    """Send every logger's records to stdout as JSON or text; safe to call more than once.

    Only the root logger gets a handler, and only one: handlers others attached
    (a test runner's capture, for one) stay as they are.
    """
    # What neither line format shows is not gathered for every record (the logging
    # HOWTO's "Optimization" section): the caller's file and line, found by walking
    # the stack, and the thread's and process's names.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, StdoutHandler)), None)
    if handler is None:
        handler = StdoutHandler()
        handler.addFilter(RequestIdFilter())
        handler.addFilter(DropServerRequestLines())
        root.addHandler(handler)
    handler.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter())
    root.setLevel(level)
    # Alembic 1.20 announces each of its plugins at INFO whenever it loads: noise.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # logging.config.fileConfig (Alembic's env.py runs it) disables every logger that
    # exists at the time; an app created after migrations in the same process
    # (the test suite, a notebook) would otherwise log nothing.
    for name, logger in logging.root.manager.loggerDict.items():
        ours = name == "conduit" or name.startswith("conduit.")
        if ours and isinstance(logger, logging.Logger):
            logger.disabled = False
