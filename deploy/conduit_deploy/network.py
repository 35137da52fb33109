"""What to say when a host cannot be reached: which endpoint, why, and through which proxy.

requests reads the proxy from HTTPS_PROXY / HTTP_PROXY / ALL_PROXY (and their lower-case
spellings) and skips it for the hosts NO_PROXY names; a job behind a proxy that lacks
them, or a NO_PROXY that exempts Google, looks like "no route" from inside the tool.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import requests

from .errors import Unreachable

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
# urllib3 starts its messages with the connection object's repr: "<...HTTPSConnection
# object at 0x7f...>: Failed to resolve ...".
_OBJECT_REPR = re.compile(r"<[^<>]*object at 0x[0-9a-f]+>:?\s*|\w+Connection\(host=[^)]*\):\s*")
_REASON_CHARACTERS = 160


def endpoint(url: str) -> str:
    """scheme://host[:port] of a URL: what is unreachable."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def proxy_settings(url: str, environ: Mapping[str, str] | None = None) -> str:
    """The proxy variables set (credentials hidden) and whether `url` went through one."""
    environ = os.environ if environ is None else environ
    found = []
    for name in PROXY_VARIABLES:
        for spelling in (name, name.lower()):
            value = environ.get(spelling, "").strip()
            if value:
                shown = value if name == "NO_PROXY" else _without_credentials(value)
                found.append(f"{spelling}={shown}")
    if not found:
        return f"sent directly: no proxy variable is set ({', '.join(PROXY_VARIABLES)})"
    proxies = requests.utils.get_environ_proxies(url, no_proxy=None)
    proxy = proxies.get(urlsplit(url).scheme) or proxies.get("all")
    route = (
        f"sent through the proxy {_without_credentials(proxy)}"
        if proxy
        else "sent directly, not through a proxy"
    )
    return f"{route} ({' '.join(found)})"


def reason(error: BaseException) -> str:
    """The innermost cause of a requests/urllib3 failure, short, on one line."""
    cause: BaseException = error
    prefix = ""
    for _ in range(8):  # requests wraps urllib3's MaxRetryError, which wraps the cause
        if isinstance(cause, requests.exceptions.ProxyError) or type(cause).__name__ == (
            "ProxyError"
        ):
            prefix = "the proxy failed: "
        inner = getattr(cause, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in cause.args if isinstance(a, BaseException)), None)
        if inner is None:
            break
        cause = inner
    text = " ".join(_OBJECT_REPR.sub("", str(cause)).split())
    if len(text) > _REASON_CHARACTERS:
        text = text[: _REASON_CHARACTERS - 1] + "…"
    return prefix + (text or type(cause).__name__)


def unreachable(
    url: str, error: BaseException, environ: Mapping[str, str] | None = None
) -> Unreachable:
    """The Unreachable error for a failed connection to `url`."""
    return Unreachable(endpoint(url), f"{reason(error)}; {proxy_settings(url, environ)}")


def is_network_failure(error: BaseException) -> bool:
    """A failure to connect or to get an answer, as opposed to a bad request."""
    return isinstance(error, (requests.exceptions.ConnectionError, requests.exceptions.Timeout))
