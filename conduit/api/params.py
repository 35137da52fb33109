"""Query and path parameters, checked before they reach the database."""

from __future__ import annotations

from flask import request

from ..errors import not_found, unprocessable
from ..models import MAX_ROW_ID
from ..validation import has_control_characters, parse_integer

MAX_LIMIT = 100
# The documented bound (conduit/README.md): a 32-bit signed integer, which every client
# library can send; past any real table, a page is empty all the same.
MAX_OFFSET = 2**31 - 1
# Longer than any slug or username the tables can hold (String(300), String(64)).
MAX_KEY_LENGTH = 300


def _integer(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    value = parse_integer(raw)
    if value is None:
        raise unprocessable(name, "must be an integer")
    if not minimum <= value <= maximum:
        raise unprocessable(name, f"must be between {minimum} and {maximum}")
    return value


def page() -> tuple[int, int]:
    """(limit, offset): limit 1..100, default 20; offset 0 or more."""
    return _integer("limit", 20, 1, MAX_LIMIT), _integer("offset", 0, 0, MAX_OFFSET)


def text_arg(name: str) -> str | None:
    """A filter value; one with control characters matches nothing stored, so says so."""
    value = request.args.get(name)
    if value is not None and has_control_characters(value):
        raise unprocessable(name, "must not contain control characters")
    return value


def path_key(value: str, what: str) -> str:
    """A slug or username from the path; one the database could not hold cannot exist."""
    if len(value) > MAX_KEY_LENGTH or has_control_characters(value):
        raise not_found(what)
    return value


def path_id(value: str, what: str) -> int:
    """A row id from the path: a positive decimal integer, 404 when no row can have it."""
    if not (value.isascii() and value.isdigit()):
        raise unprocessable("id", "must be a positive integer")
    number = parse_integer(value)  # None past 19 digits: no row has such an id either
    if number is None or not 1 <= number <= MAX_ROW_ID:
        raise not_found(what)
    return number
