"""Request ids: the caller's X-Request-ID when it is sane, a fresh one otherwise.

The id is echoed in the X-Request-ID response header and carried by every log
record of the request, so a client, the ingress controller (which forwards its own
id in this header) and the app's logs can name the same request.
"""

from __future__ import annotations

import re
import secrets

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_ENVIRON_KEY = "conduit.request_id"
MAX_REQUEST_ID_LENGTH = 128
# Covers UUIDs, hex and base64 ids; nothing that could break a header or a log line.
_SANE_REQUEST_ID = re.compile(rf"[A-Za-z0-9._:@+=/-]{{1,{MAX_REQUEST_ID_LENGTH}}}", re.ASCII)


def request_id_from(header_value: str | None) -> str:
    """The id to use for a request whose X-Request-ID header is `header_value`."""
    if header_value and _SANE_REQUEST_ID.fullmatch(header_value):
        return header_value
    # 128 random bits, the size of a UUID, as 32 hex digits (a third of uuid4's cost).
    return secrets.token_hex(16)
