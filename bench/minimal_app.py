"""The smallest Flask app, served by `make bench` with docker/uwsgi.ini like the API.

Its requests/s is the ceiling the API's goals are judged against: what Flask and this
uWSGI configuration give on this machine before the API adds anything (middleware,
authentication, the database).
"""

from flask import Flask

app = Flask(__name__)


@app.get("/healthz")
def healthz():
    return {"status": "ok"}
