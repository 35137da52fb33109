"""The RealWorld API, one blueprint per area, all under /api."""

from flask import Blueprint

from . import articles, comments, profiles, tags, users

api = Blueprint("api", __name__, url_prefix="/api")
for area in (users, profiles, articles, comments, tags):
    api.register_blueprint(area.blueprint)
