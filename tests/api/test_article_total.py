"""articlesCount of the whole list comes from a total the database keeps (migration
c5e2a9d7f310): it must follow every insert and delete, whoever writes."""

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
