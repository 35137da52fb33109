"""Query and path parameters, checked before they reach the database."""

from __future__ import annotations

from flask import request

from ..errors import not_found, unprocessable

MAX_LIMIT = 100
MAX_OFFSET = 2**31 - 1


def _integer(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.lstrip("-").isdigit() or len(raw) > 20:
        raise unprocessable(name, "must be an integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise unprocessable(name, f"must be between {minimum} and {maximum}")
    return value


def page() -> tuple[int, int]:
    """(limit, offset): limit 1..100, default 20; offset 0 or more."""
    return _integer("limit", 20, 1, MAX_LIMIT), _integer("offset", 0, 0, MAX_OFFSET)


def text_arg(name: str) -> str | None:
    value = request.args.get(name)
    if value is not None and "\x00" in value:
        raise unprocessable(name, "must not contain NUL characters")
    return value


def path_key(value: str, what: str) -> str:
    """A slug or username from the path; one the database could not hold cannot exist."""
    if "\x00" in value or len(value) > 300:
        raise not_found(what)
    return value


def path_id(value: str, what: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise unprocessable("id", "must be a positive integer")
    number = int(value)
    if not 1 <= number <= MAX_OFFSET:
        raise not_found(what)
    return number
