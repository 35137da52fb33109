"""Values the database keeps with triggers, whoever writes (the app, a previous release
during a rolling deploy, an operator with psql): each article's tag names (migration
b7d41f0c9e25), the number of articles (c5e2a9d7f310), each tag link's article
creation time (d8f3b6a1c402), each article's number of favorites (e4a7c2d9b158)."""

import threading

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from conduit.extensions import db


def total(client) -> int:
    return client.get("/api/articles?limit=1").get_json()["articlesCount"]


def test_the_total_follows_creates_and_deletes(client, register, create_article):
    author = register("author")
    assert total(client) == 0
    slugs = [create_article(author, title=f"post {n}")["slug"] for n in range(3)]
    assert total(client) == 3
    assert client.delete(f"/api/articles/{slugs[0]}", headers=author.headers).status_code == 204
    assert total(client) == 2
    # A user's deletion takes their articles with it (ON DELETE CASCADE).
    with client.application.app_context():
        db.session.execute(text("DELETE FROM users"))
        db.session.commit()
    assert total(client) == 0


def test_writes_outside_the_app_are_counted(app, client, register, create_article):
    author = register("author")
    create_article(author, title="kept")
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO articles (slug, title, description, body, author_id,"
                " created_at, updated_at) SELECT 'by-hand', 't', 'd', 'b', id,"
                " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM users"
            )
        )
        db.session.commit()
    assert total(client) == 2


def test_the_migration_counts_the_articles_already_there(app, client, register, create_article):
    author = register("author")
    for n in range(4):
        create_article(author, title=f"post {n}")
    with app.app_context():
        downgrade(revision="b7d41f0c9e25")  # before the total existed
        upgrade()
    assert total(client) == 4


def link_by_hand(app, slug: str, tag: str) -> None:
    """A tag link written as the release before these migrations writes it."""
    with app.app_context():
        db.session.execute(text("INSERT INTO tags (name) VALUES (:tag)"), {"tag": tag})
        db.session.execute(
            text(
                "INSERT INTO article_tags (article_id, tag_id) SELECT articles.id, tags.id"
                " FROM articles, tags WHERE articles.slug = :slug AND tags.name = :tag"
            ),
            {"slug": slug, "tag": tag},
        )
        db.session.commit()


def test_links_written_without_the_app_reach_tag_lists_and_tag_names(
    app, client, register, create_article
):
    author = register("author")
    older = create_article(author, title="older", tags=["both"])
    newer = create_article(author, title="newer", tags=["both"])
    link_by_hand(app, older["slug"], "zeta")
    link_by_hand(app, newer["slug"], "alpha")
    page = client.get("/api/articles?tag=both").get_json()
    assert [a["slug"] for a in page["articles"]] == [newer["slug"], older["slug"]]
    assert [a["tagList"] for a in page["articles"]] == [["alpha", "both"], ["both", "zeta"]]
    zeta = client.get("/api/articles?tag=zeta").get_json()
    assert (zeta["articlesCount"], [a["slug"] for a in zeta["articles"]]) == (1, [older["slug"]])


def test_a_tag_page_is_newest_first_across_pages(client, register, create_article):
    author = register("author")
    slugs = [create_article(author, title=f"post {n}", tags=["t"])["slug"] for n in range(5)]
    first = client.get("/api/articles?tag=t&limit=2").get_json()
    rest = client.get("/api/articles?tag=t&limit=3&offset=2").get_json()
    shown = [a["slug"] for a in first["articles"] + rest["articles"]]
    assert shown == list(reversed(slugs))
    assert first["articlesCount"] == rest["articlesCount"] == 5


def test_removing_a_tag_updates_the_article_and_the_tag_page(client, register, create_article):
    author = register("author")
    article = create_article(author, title="tagged", tags=["a", "b"])
    response = client.put(
        f"/api/articles/{article['slug']}",
        json={"article": {"tagList": ["b"]}},
        headers=author.headers,
    )
    assert response.get_json()["article"]["tagList"] == ["b"]
    assert client.get("/api/articles?tag=a").get_json() == {"articles": [], "articlesCount": 0}
    assert client.get(f"/api/articles/{article['slug']}").get_json()["article"]["tagList"] == ["b"]


def favorites_count(client, slug: str) -> int:
    return client.get(f"/api/articles/{slug}").get_json()["article"]["favoritesCount"]


def test_favorites_are_counted_through_the_api_and_its_cascades(client, register, create_article):
    author, reader, other = register("author"), register("reader"), register("other")
    slug = create_article(author, title="liked")["slug"]
    for user in (reader, other, reader):  # a second favorite by one user counts once
        response = client.post(f"/api/articles/{slug}/favorite", headers=user.headers)
        assert response.status_code == 200
    assert response.get_json()["article"]["favoritesCount"] == 2
    response = client.delete(f"/api/articles/{slug}/favorite", headers=other.headers)
    assert response.get_json()["article"]["favoritesCount"] == 1
    listed = client.get("/api/articles").get_json()["articles"]
    assert [a["favoritesCount"] for a in listed] == [1]
    # A user's deletion takes their favorites with it (ON DELETE CASCADE).
    with client.application.app_context():
        db.session.execute(text("DELETE FROM users WHERE username = 'reader'"))
        db.session.commit()
    assert favorites_count(client, slug) == 0


def test_favorites_written_outside_the_app_are_counted(app, client, register, create_article):
    author = register("author")
    first = create_article(author, title="first")["slug"]
    second = create_article(author, title="second")["slug"]
    for name in ("a", "b", "c"):
        register(name)
    with app.app_context():
        # One statement, several articles and users: each article gets its own count.
        db.session.execute(
            text(
                "INSERT INTO favorites (user_id, article_id, created_at)"
                " SELECT users.id, articles.id, CURRENT_TIMESTAMP FROM users, articles"
                " WHERE users.username IN ('a', 'b', 'c')"
                " AND (articles.slug = :first OR users.username = 'a')"
            ),
            {"first": first},
        )
        db.session.commit()
    assert (favorites_count(client, first), favorites_count(client, second)) == (3, 1)
    with app.app_context():
        db.session.execute(
            text(
                "DELETE FROM favorites"
                " WHERE user_id IN (SELECT id FROM users WHERE username <> 'c')"
            )
        )
        db.session.commit()
    assert (favorites_count(client, first), favorites_count(client, second)) == (1, 0)


def test_the_migration_counts_the_favorites_already_there(app, client, register, create_article):
    author, reader = register("author"), register("reader")
    slug = create_article(author, title="liked")["slug"]
    for user in (author, reader):
        client.post(f"/api/articles/{slug}/favorite", headers=user.headers)
    with app.app_context():
        downgrade(revision="d8f3b6a1c402")  # before the count existed
        upgrade()
    assert favorites_count(client, slug) == 2
    client.delete(f"/api/articles/{slug}/favorite", headers=reader.headers)
    assert favorites_count(client, slug) == 1  # and the triggers are back


@pytest.mark.postgres
def test_concurrent_favorites_of_one_article_each_count(
    app, database_url, register, create_article
):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writer at a time: run with pytest --postgres")
    author = register("author")
    register("first")
    register("second")
    slug = create_article(author, title="wanted")["slug"]
    favorite = text(
        "INSERT INTO favorites (user_id, article_id, created_at)"
        " SELECT users.id, articles.id, CURRENT_TIMESTAMP FROM users, articles"
        " WHERE users.username = :user AND articles.slug = :slug"
    )
    with app.app_context():
        engine = db.engine
    with engine.connect() as holder:
        holder.execute(favorite, {"user": "first", "slug": slug})  # its row lock is held

        def favorite_meanwhile():
            with engine.begin() as connection:  # waits for the first to commit
                connection.execute(favorite, {"user": "second", "slug": slug})

        other = threading.Thread(target=favorite_meanwhile)
        other.start()
        other.join(timeout=0.5)
        assert other.is_alive()  # queued on the article's row, not counted on a stale value
        holder.commit()
        other.join(timeout=10)
    assert favorites_count(app.test_client(), slug) == 2


@pytest.mark.postgres
def test_truncating_favorites_resets_the_counts(
    app, database_url, client, register, create_article
):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no TRUNCATE: run with pytest --postgres")
    author = register("author")
    slug = create_article(author, title="liked")["slug"]
    client.post(f"/api/articles/{slug}/favorite", headers=author.headers)
    with app.app_context():
        db.session.execute(text("TRUNCATE favorites"))
        db.session.commit()
    assert favorites_count(client, slug) == 0
