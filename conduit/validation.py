"""The rules every piece of client text meets, wherever it arrives: query string, path,
body or token. One place, so that a parameter added later cannot miss one.
"""

from __future__ import annotations

import re

# An integer as people write it: optional minus, ASCII digits, nothing before or after.
# The length bound keeps int() cheap; every range the API accepts fits in 19 digits.
_INTEGER = re.compile(r"-?[0-9]{1,19}")
# Unicode category Cc: C0 controls, DEL and C1 controls. None of them has a place in a
# name, a tag, a title or an email; some make look-alikes ("jake\n") or break logs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Multi-line text (an article body, a bio) may hold line breaks and tabs, nothing else.
_CONTROL_EXCEPT_LAYOUT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def parse_integer(text: str) -> int | None:
    """The integer `text` spells in full; None for "--5", "5 ", "" or non-ASCII digits."""
    if _INTEGER.fullmatch(text) is None:
        return None
    return int(text)


def has_control_characters(text: str, *, multiline: bool = False) -> bool:
    pattern = _CONTROL_EXCEPT_LAYOUT if multiline else _CONTROL
    return pattern.search(text) is not None
