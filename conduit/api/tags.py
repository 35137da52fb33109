"""Tags in use."""

from __future__ import annotations

import time

from flask import Blueprint, current_app

from ..queries import all_tags

blueprint = Blueprint("tags", __name__)

# Per-process cache for TAGS_CACHE_SECONDS (5 in production, 0 = off elsewhere). A tag
# just added or removed, or a change in how often one is used, shows up here at most
# that many seconds late; nothing else reads this cache, so no write ever depends on it.
_cache: dict[str, tuple[float, list[str]]] = {}


@blueprint.get("/tags")
def tags():
    ttl = current_app.config["TAGS_CACHE_SECONDS"]
    if ttl <= 0:
        return {"tags": all_tags()}
    key = current_app.config["SQLALCHEMY_DATABASE_URI"]
    now = time.monotonic()
    cached = _cache.get(key)
    if cached is None or cached[0] <= now:
        cached = (now + ttl, all_tags())
        _cache[key] = cached
    return {"tags": cached[1]}
