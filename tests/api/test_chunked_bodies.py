"""Chunked bodies under uWSGI: decoded within MAX_CONTENT_LENGTH and a deadline.

uWSGI's chunk decoder (uwsgi.chunked_read) exists only in a worker; these tests give
read_chunked a stand-in. tests/image/test_uwsgi_config.py sends real chunked requests.
"""

from __future__ import annotations

import pytest
from werkzeug.exceptions import RequestEntityTooLarge

from conduit import request_body
from conduit.errors import APIError
from conduit.request_body import DISCARD_FACTOR, read_chunked


def reader(*chunks: bytes | Exception):
    """A read_chunk that yields `chunks` in turn, raising the exceptions among them."""
    pending = list(chunks)
    timeouts: list[int] = []

    def read_chunk(timeout: int) -> bytes:
        timeouts.append(timeout)
        item = pending.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    read_chunk.timeouts = timeouts  # type: ignore[attr-defined]
    return read_chunk


def test_the_chunks_make_the_body():
    assert read_chunked(reader(b'{"a": ', b"1}", b""), limit=100) == b'{"a": 1}'


def test_a_body_of_exactly_the_limit_is_accepted():
    assert read_chunked(reader(b"x" * 60, b"x" * 40, b""), limit=100) == b"x" * 100


def test_one_byte_over_the_limit_is_413_after_the_rest_is_drained():
    read_chunk = reader(b"x" * 60, b"x" * 41, b"x" * 100, b"")
    with pytest.raises(RequestEntityTooLarge):
        read_chunked(read_chunk, limit=100)
    assert len(read_chunk.timeouts) == 4  # read to the end, so the 413 reaches the client


def test_far_over_the_limit_stops_reading_and_is_413():
    chunks = [b"x" * 100] * (DISCARD_FACTOR + 1)
    read_chunk = reader(*chunks, b"never read")
    with pytest.raises(RequestEntityTooLarge):
        read_chunked(read_chunk, limit=100)
    assert len(read_chunk.timeouts) == DISCARD_FACTOR + 1


def test_a_stream_cut_off_past_the_limit_is_still_413():
    with pytest.raises(RequestEntityTooLarge):
        read_chunked(reader(b"x" * 101, OSError("unable to receive chunked part")), limit=100)


def test_a_malformed_stream_is_400():
    with pytest.raises(APIError) as raised:
        read_chunked(reader(b"x", OSError("unable to receive chunked part")), limit=100)
    assert raised.value.status == 400
    assert raised.value.errors == {"body": ["malformed or incomplete chunked body"]}


def test_a_stream_that_stops_arriving_is_408_at_the_deadline(monkeypatch):
    clock = iter([0.0, 0.0, 2.5, 10.5])  # start, first read, second read, its timeout
    monkeypatch.setattr(request_body.time, "monotonic", lambda: next(clock))
    read_chunk = reader(b"x", OSError("timed out"))
    with pytest.raises(APIError) as raised:
        read_chunked(read_chunk, limit=100, deadline_s=10)
    assert raised.value.status == 408
    # Each wait is bounded by what is left of the deadline, never less than a second.
    assert read_chunk.timeouts == [10, 8]


def test_the_deadline_passed_between_chunks_is_408(monkeypatch):
    clock = iter([0.0, 0.0, 11.0])  # start, first read, the next one
    monkeypatch.setattr(request_body.time, "monotonic", lambda: next(clock))
    read_chunk = reader(b"x", b"")
    with pytest.raises(APIError) as raised:
        read_chunked(read_chunk, limit=100, deadline_s=10)
    assert raised.value.status == 408
