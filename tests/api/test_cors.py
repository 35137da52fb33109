"""Cross-origin requests from browsers, as the Fetch standard's CORS protocol has them
(https://fetch.spec.whatwg.org/#http-cors-protocol): what a front end on another origin
can call and read, and what a shared cache may keep."""

import pytest

from conduit import create_app
from conduit.settings import ConfigError, load_settings
from tests.support import app_env, dispose_engines

FRONT = "https://front.example"
PREFLIGHT = {
    "Origin": FRONT,
    "Access-Control-Request-Method": "PUT",
    "Access-Control-Request-Headers": "authorization,content-type,x-request-id",
}


@pytest.fixture
def client_for(database_url):
    apps = []

    def make(origins: str | None):
        extra = {} if origins is None else {"CORS_ORIGINS": origins}
        app = create_app(env=app_env(database_url, **extra))
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        dispose_engines(app)


def vary(response) -> set[str]:
    return {value.strip().lower() for value in response.headers.get("Vary", "").split(",")}


def test_any_origin_by_default_reads_the_api_and_the_request_id(client_for):
    client = client_for(None)
    response = client.get("/api/tags", headers={"Origin": FRONT})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    # Without these a script could not read the id to quote in a bug report, nor why a
    # public read was answered anonymously (conduit/auth.py).
    assert response.headers["Access-Control-Expose-Headers"] == "X-Request-ID, WWW-Authenticate"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_any_origin_gives_every_client_the_same_answer_so_caches_need_no_vary(client_for):
    client = client_for("*")
    without_origin = client.get("/api/tags")
    with_origin = client.get("/api/tags", headers={"Origin": "https://other.example"})
    assert without_origin.headers["Access-Control-Allow-Origin"] == "*"
    assert with_origin.headers["Access-Control-Allow-Origin"] == "*"
    assert "origin" not in vary(with_origin)


def test_a_preflight_allows_the_methods_and_headers_the_api_uses(client_for):
    response = client_for(None).options("/api/articles/some-slug", headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST", "PUT", "DELETE"} <= methods
    allowed = response.headers["Access-Control-Allow-Headers"]
    headers = {h.strip().lower() for h in allowed.split(",")}
    assert {"authorization", "content-type", "x-request-id"} <= headers
    assert response.headers["Access-Control-Max-Age"] == "600"


def test_an_options_request_that_is_not_a_preflight_gets_no_preflight_answer(client_for):
    response = client_for(None).options("/api/tags", headers={"Origin": FRONT})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Methods" not in response.headers
    assert "Access-Control-Max-Age" not in response.headers


def test_a_listed_origin_is_echoed_and_the_answer_varies_by_origin(client_for):
    client = client_for(f"https://admin.example, {FRONT}")
    response = client.get("/api/tags", headers={"Origin": FRONT})
    assert response.headers["Access-Control-Allow-Origin"] == FRONT
    assert response.headers["Access-Control-Expose-Headers"] == "X-Request-ID, WWW-Authenticate"
    assert "origin" in vary(response)
    preflight = client.options("/api/articles", headers={**PREFLIGHT, "Origin": FRONT})
    assert preflight.headers["Access-Control-Allow-Origin"] == FRONT
    assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]


def test_origins_compare_without_regard_to_case_as_hosts_do(client_for):
    client = client_for("https://Front.Example")
    response = client.get("/api/tags", headers={"Origin": FRONT})
    assert response.headers["Access-Control-Allow-Origin"] == FRONT


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://front.example",  # another scheme is another origin
        "https://front.example:8443",  # and so is another port
        "https://front.example.evil.example",  # a prefix is not a match
        "null",  # sandboxed frames and file: pages
    ],
)
def test_an_origin_not_listed_gets_no_cors_headers_but_the_answer_still_varies(client_for, origin):
    client = client_for(FRONT)
    response = client.get("/api/tags", headers={"Origin": origin})
    assert response.status_code == 200  # the server answers; the browser withholds it
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Expose-Headers" not in response.headers
    # Otherwise a cache could hand this answer to the listed origin, or the reverse.
    assert "origin" in vary(response)
    preflight = client.options("/api/articles", headers={**PREFLIGHT, "Origin": origin})
    assert not [name for name, _ in preflight.headers if name.lower().startswith("access-control-")]


def test_a_request_without_origin_gets_no_allow_origin_when_origins_are_listed(client_for):
    response = client_for(FRONT).get("/api/tags")
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "origin" in vary(response)


def test_an_empty_list_allows_no_origin(client_for):
    response = client_for("").get("/api/tags", headers={"Origin": FRONT})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_errors_carry_the_headers_so_a_front_end_can_read_them(client_for):
    client = client_for(FRONT)
    for response in (
        client.get("/api/articles/no-such-article", headers={"Origin": FRONT}),
        client.get("/api/user", headers={"Origin": FRONT}),
        client.post("/api/users", json={"user": {}}, headers={"Origin": FRONT}),
    ):
        assert response.status_code in (401, 404, 422)
        assert response.is_json
        assert response.headers["Access-Control-Allow-Origin"] == FRONT


def test_only_the_api_takes_part(client_for):
    client = client_for(None)
    for path in ("/healthz", "/metrics", "/nothing-here"):
        response = client.get(path, headers={"Origin": FRONT})
        assert "Access-Control-Allow-Origin" not in response.headers, path


@pytest.mark.parametrize(
    "value",
    [
        "front.example",  # no scheme
        "https://front.example/",  # a path, even "/", is not part of an origin
        "https://front.example/app",
        "https://front.example?x=1",
        "https://front.example#top",
        "https://user@front.example",
        "https://front.example:port",
        "https://",
        f"{FRONT}, *.example",
    ],
)
def test_a_value_that_is_not_an_origin_is_refused_at_start(tmp_path, value):
    env = app_env("sqlite://", CONDUIT_ENV="production", CORS_ORIGINS=value)
    with pytest.raises(ConfigError, match=r"CORS_ORIGINS: .* is not an origin"):
        load_settings(tmp_path, env)


@pytest.mark.parametrize(
    ("value", "origins"),
    [
        ("*", ["*"]),
        ("http://localhost:4100", ["http://localhost:4100"]),
        (f" {FRONT} ,https://admin.example:8443,", [FRONT, "https://admin.example:8443"]),
        ("http://[::1]:4100", ["http://[::1]:4100"]),
        ("", []),
    ],
)
def test_origins_and_the_wildcard_are_accepted(tmp_path, value, origins):
    env = app_env("sqlite://", CONDUIT_ENV="production", CORS_ORIGINS=value)
    assert load_settings(tmp_path, env)["CORS_ORIGINS"] == origins
