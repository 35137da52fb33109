"""Read-only requests read on PostgreSQL through the read path (conduit/reads.py): a pool
of their own in autocommit, the driver's cursor; writes keep their transaction."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import jwt
import pytest
from sqlalchemy import create_engine, text

from conduit import create_app, reads
from tests.support import (
    app_env,
    dispose_engines,
    engine_events,
    terminate_other_backends,
    wait_until,
)

READ_PATHS = [
    "/api/articles",
    "/api/articles?tag=t",
    "/api/articles/read-me",
    "/api/articles/read-me/comments",
    "/api/profiles/author",
    "/api/tags",
]


@contextmanager
def statements_by_path(app):
    """{"session": [...], "reads": [...]}: the SQL each path ran during the block, and
    whether each session statement ran in autocommit."""
    seen: dict[str, list] = {"session": [], "reads": [], "session_autocommit": []}

    def on_session(conn, cursor, statement, *_args):
        seen["session"].append(statement)
        seen["session_autocommit"].append(
            getattr(conn.connection.driver_connection, "autocommit", None)
        )

    reads.add_statement_listener(app, seen["reads"].append)
    try:
        with engine_events(app, "before_cursor_execute", on_session):
            yield seen
    finally:
        reads.pool(app).statement_listeners.remove(seen["reads"].append)


@pytest.fixture
def postgres_app(app, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the read path is PostgreSQL's: run with pytest --postgres")
    return app


@pytest.fixture
def article(register, create_article):
    author = register("author")
    return author, create_article(author, title="Read me", tags=["t"])


@pytest.mark.parametrize("path", READ_PATHS)
def test_on_sqlite_reads_go_through_the_session(app, database_url, article, path):
    if database_url.startswith("postgresql"):
        pytest.skip("SQLite's behaviour; PostgreSQL's is tested below")
    with statements_by_path(app) as seen:
        assert app.test_client().get(path).status_code == 200
    assert seen["session"]
    assert not seen["reads"]


@pytest.mark.postgres
@pytest.mark.parametrize("path", READ_PATHS)
def test_a_get_request_reads_on_the_read_path_in_autocommit(postgres_app, article, path):
    client = postgres_app.test_client()
    with statements_by_path(postgres_app) as seen:
        assert client.get(path).status_code == 200
    assert seen["reads"]
    assert not seen["session"]
    read_engine = reads.engines(postgres_app)[1]
    with read_engine.connect() as connection:
        assert connection.connection.driver_connection.autocommit
        # Nothing was left open on the connection the request gave back.
        assert connection.connection.driver_connection.info.transaction_status.name == "IDLE"


@pytest.mark.postgres
def test_a_write_request_keeps_its_transaction(postgres_app, article):
    author, _ = article
    client = postgres_app.test_client()
    client.get("/api/articles")  # the read pool has served a request
    with statements_by_path(postgres_app) as seen:
        response = client.post(
            "/api/articles",
            json={"article": {"title": "Two", "description": "d", "body": "b", "tagList": ["x"]}},
            headers=author.headers,
        )
    assert response.status_code == 201
    # Its reads (the article it answers with) belong to its transaction.
    assert len(seen["session"]) > 1
    assert not seen["reads"]
    assert not any(seen["session_autocommit"])


def _every_read(viewer_id: int, author: str, slug: str, comment_id: int):
    """(statement, parameters) for each statement queries.py runs, in every shape."""
    from conduit import queries

    for has_viewer in (False, True):
        viewer = {"viewer_id": viewer_id} if has_viewer else {}
        shapes = [(False, False, False, False), (True, False, False, False)]
        shapes += [(False, True, False, False), (False, False, True, False)]
        if has_viewer:
            shapes.append((False, False, False, True))
        for shape in shapes:
            page, count = queries._page_statements(True, has_viewer, shape)
            filters = {"tag": "t", "author": author, "favorited": author, "feed_of": viewer_id}
            values = {k: v for k, v, on in zip(filters, filters.values(), shape, strict=True) if on}
            yield page, {**values, **viewer, "limit": 20, "offset": 0}
            yield count, values
        yield queries._article_statement(True, has_viewer), {"slug": slug, **viewer}
        yield queries._comments_statement(True, has_viewer), {"slug": slug, **viewer}
        yield queries._comment_statement(True, has_viewer), {"id": comment_id, **viewer}
        yield queries._profile_statement(has_viewer), {"username": author, **viewer}
    yield queries._viewer_statement(), {"viewer_id": viewer_id}
    yield queries._tags_statement(), {}


@pytest.mark.postgres
def test_rows_of_the_read_path_equal_sqlalchemys(postgres_app, article, register):
    """The driver's cursor gives exactly what SQLAlchemy's execution gives, for every
    statement the API reads with."""
    author, created = article
    viewer = register("viewer")
    client = postgres_app.test_client()
    headers = viewer.headers
    assert (
        client.post(f"/api/profiles/{author.username}/follow", headers=headers).status_code == 200
    )
    assert (
        client.post(f"/api/articles/{created['slug']}/favorite", headers=headers).status_code == 200
    )
    comment = client.post(
        f"/api/articles/{created['slug']}/comments",
        json={"comment": {"body": "a comment"}},
        headers=headers,
    ).get_json()["comment"]
    viewer_id = int(jwt.decode(viewer.token, options={"verify_signature": False})["sub"])
    compared = 0
    shapes = _every_read(viewer_id, author.username, created["slug"], comment["id"])
    for statement, parameters in shapes:
        # A POST reads through the session, that is through SQLAlchemy's execution.
        with postgres_app.test_request_context("/", method="POST"):
            via_session = [tuple(row) for row in reads.read(statement, parameters)]
        with postgres_app.test_request_context("/", method="GET"):
            via_cursor = [tuple(row) for row in reads.read(statement, parameters)]
        assert via_cursor == via_session, statement
        compared += bool(via_cursor)
    assert compared > 20  # the data made most statements return rows


@pytest.mark.postgres
def test_an_error_on_the_read_path_is_sqlalchemys(postgres_app, article):
    """A failing statement raises what SQLAlchemy's execution would (the app's error
    handlers rely on it), and the connection goes back to the pool usable."""
    import psycopg
    from sqlalchemy import text
    from sqlalchemy.exc import DataError

    with (
        postgres_app.test_request_context("/", method="GET"),
        pytest.raises(DataError) as raised,
    ):
        reads.read(text("SELECT 1 / 0"), {})
    assert isinstance(raised.value.orig, psycopg.errors.DivisionByZero)
    assert "SELECT 1 / 0" in str(raised.value)
    assert postgres_app.test_client().get("/api/articles").status_code == 200


# --- a read connection per thread (what uWSGI workers do) ------------------------------


@pytest.fixture
def per_thread_app(database_url, article):
    if not database_url.startswith("postgresql"):
        pytest.skip("the read path is PostgreSQL's: run with pytest --postgres")
    app = create_app(env=app_env(database_url, DB_READ_CONNECTION_PER_THREAD="1"))
    yield app
    dispose_engines(app)


def backend_of_reads(app, path="/api/articles") -> int:
    """The PostgreSQL backend that served a request's reads."""
    pids = []

    def listener(_sql):
        connection = reads._request_connection(app.extensions["conduit_reads"])
        pids.append(connection.connection.driver_connection.info.backend_pid)

    reads.add_statement_listener(app, listener)
    try:
        assert app.test_client().get(path).status_code == 200
    finally:
        reads.pool(app).statement_listeners.remove(listener)
    assert len(set(pids)) == 1
    return pids[0]


@pytest.mark.postgres
def test_a_thread_keeps_its_read_connection_between_requests(per_thread_app):
    first = backend_of_reads(per_thread_app)
    assert backend_of_reads(per_thread_app, "/api/tags") == first
    assert backend_of_reads(per_thread_app) == first


@pytest.mark.postgres
def test_without_per_thread_each_request_gives_its_connection_back(app, database_url, article):
    if not database_url.startswith("postgresql"):
        pytest.skip("the read path is PostgreSQL's: run with pytest --postgres")
    assert app.test_client().get("/api/articles").status_code == 200
    pool = reads.engines(app)[1].pool
    assert (pool.checkedout(), pool.checkedin()) == (0, 1)


@pytest.mark.postgres
def test_threads_do_not_share_read_connections(per_thread_app):
    here = backend_of_reads(per_thread_app)
    there = []
    worker = threading.Thread(target=lambda: there.append(backend_of_reads(per_thread_app)))
    worker.start()
    worker.join(timeout=30)
    assert there
    assert there[0] != here


@pytest.mark.postgres
def test_a_kept_connection_the_server_closed_is_replaced(per_thread_app, database_url):
    first = backend_of_reads(per_thread_app)
    assert terminate_other_backends(database_url) >= 1
    assert backend_of_reads(per_thread_app) != first  # and the request answered 200


@pytest.mark.postgres
def test_a_kept_connection_is_replaced_at_the_recycle_age(database_url, article):
    if not database_url.startswith("postgresql"):
        pytest.skip("the read path is PostgreSQL's: run with pytest --postgres")
    app = create_app(
        env=app_env(database_url, DB_READ_CONNECTION_PER_THREAD="1", DB_POOL_RECYCLE="1")
    )
    try:
        first = backend_of_reads(app)
        assert backend_of_reads(app) == first
        time.sleep(1.2)
        assert backend_of_reads(app) != first
    finally:
        dispose_engines(app)


@pytest.mark.postgres
def test_a_kept_connection_an_error_invalidated_is_replaced(per_thread_app):
    first = backend_of_reads(per_thread_app)
    pool = per_thread_app.extensions["conduit_reads"]
    with per_thread_app.test_request_context("/", method="GET"):
        connection = reads._request_connection(pool)
        connection.invalidate()  # what a lost connection's error does (_translated)
        reads._release()
    assert backend_of_reads(per_thread_app) != first


def backends(database_url: str) -> set[int]:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as connection:
        pids = connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        found = set(pids)
    engine.dispose()
    return found


@pytest.mark.postgres
def test_disposing_the_app_closes_the_connections_threads_keep(database_url, article):
    if not database_url.startswith("postgresql"):
        pytest.skip("the read path is PostgreSQL's: run with pytest --postgres")
    app = create_app(env=app_env(database_url, DB_READ_CONNECTION_PER_THREAD="1"))
    kept = backend_of_reads(app)
    assert kept in backends(database_url)  # still open after its request
    dispose_engines(app)
    wait_until(lambda: kept not in backends(database_url), "the kept connection closed", 10)
