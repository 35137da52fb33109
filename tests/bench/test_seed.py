"""`python -m bench.seed`: a deterministic, realistic dataset, and never on top of existing data."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict

import pytest
from click.testing import CliRunner
from flask_migrate import upgrade
from sqlalchemy import select

from bench.seed import ANCHOR, MAX_TAGS_PER_ARTICLE, Counts, generate, seed_command
from conduit import create_app
from conduit.extensions import db
from conduit.models import Article, ArticleTag, Comment, Favorite, Follow, Tag, User
from tests.support import app_env

SMALL = Counts(users=30, articles=120, tags=12, follows=80, favorites=300, comments=250)
SMALL_ARGS = [
    "--users", "30", "--articles", "120", "--tags", "12",
    "--follows", "80", "--favorites", "300", "--comments", "250",
]  # fmt: skip
PASSWORD = "seeded password"


def seed(app, *args: str):
    """Run the command as `python -m bench.seed` would, on `app`'s database."""
    env = app_env(app.config["SQLALCHEMY_DATABASE_URI"])
    return CliRunner().invoke(seed_command, args, env=env)


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data():
    assert asdict(generate(SMALL, 7)) == asdict(generate(SMALL, 7))
    assert asdict(generate(SMALL, 7)) != asdict(generate(SMALL, 8))


def test_generated_data_has_the_requested_counts_and_the_shape_of_a_real_blog():
    data = generate(SMALL, 3)
    assert (len(data.users), len(data.articles), len(data.tags)) == (30, 120, 12)
    assert (len(data.follows), len(data.favorites), len(data.comments)) == (80, 300, 250)

    assert len({u["username"] for u in data.users}) == 30
    assert len({u["email"] for u in data.users}) == 30
    assert len({a["slug"] for a in data.articles}) == 120

    tags_per_article = Counter(article for article, _ in data.article_tags)
    assert set(tags_per_article) == set(range(120))
    assert all(1 <= n <= MAX_TAGS_PER_ARTICLE for n in tags_per_article.values())
    assert len(set(data.article_tags)) == len(data.article_tags)
    assert len(set(tags_per_article.values())) > 1  # not always the same number

    pairs = [(f["follower"], f["followed"]) for f in data.follows]
    assert len(set(pairs)) == len(pairs)
    assert all(a != b for a, b in pairs)
    assert len({(f["user"], f["article"]) for f in data.favorites}) == 300

    bodies = sorted(len(a["body"]) for a in data.articles)
    assert bodies[-1] > 5 * bodies[len(bodies) // 2]  # a long tail of long posts

    # Popularity is skewed: the most commented article has several times the mean.
    comments_per_article = Counter(c["article"] for c in data.comments)
    assert max(comments_per_article.values()) >= 4 * 250 / 120

    for article in data.articles:
        assert article["created_at"] <= article["updated_at"] < ANCHOR
    for comment in data.comments:
        assert data.articles[comment["article"]]["created_at"] <= comment["created_at"] < ANCHOR


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "3", "--follows", "7"], "at most 6 follows"),
        (["--users", "2", "--articles", "2", "--favorites", "5"], "at most 4 favorites"),
        (["--users", "0", "--articles", "1"], "at least one user"),
        (["--tags", "0", "--articles", "1"], "at least one tag"),
        (["--users", "-1"], "-1"),
    ],
)
def test_impossible_counts_are_refused_with_a_reason(app, args, message):
    result = seed(app, *args)
    assert result.exit_code == 2
    assert message in result.output


def test_seed_fills_an_empty_database_that_the_api_then_serves(app, client):
    result = seed(app, *SMALL_ARGS, "--seed", "5", "--password", PASSWORD)
    assert result.exit_code == 0, result.output
    assert "seeded 30 users, 120 articles, 12 tags" in result.output

    with app.app_context():
        counted = {
            model.__tablename__: db.session.query(model).count()
            for model in (User, Article, Tag, Follow, Favorite, Comment)
        }
    assert counted == {
        "users": 30, "articles": 120, "tags": 12, "follows": 80, "favorites": 300, "comments": 250,
    }  # fmt: skip

    email = generate(SMALL, 5).users[0]["email"]
    login = client.post("/api/users/login", json={"user": {"email": email, "password": PASSWORD}})
    assert login.status_code == 200

    page = client.get("/api/articles?limit=20").get_json()
    assert page["articlesCount"] == 120
    assert all(1 <= len(a["tagList"]) <= 5 for a in page["articles"])
    assert sum(a["favoritesCount"] for a in page["articles"]) > 0


def test_the_database_holds_exactly_the_generated_rows(app):
    assert seed(app, *SMALL_ARGS, "--seed", "11").exit_code == 0
    data = generate(SMALL, 11)
    usernames = [u["username"] for u in data.users]
    slugs = [a["slug"] for a in data.articles]
    with app.app_context():
        stored_articles = {
            (slug, username, created.replace(tzinfo=None))
            for slug, username, created in db.session.execute(
                select(Article.slug, User.username, Article.created_at).join(
                    User, User.id == Article.author_id
                )
            )
        }
        stored_tags = set(
            db.session.execute(
                select(Article.slug, Tag.name)
                .join(ArticleTag, ArticleTag.article_id == Article.id)
                .join(Tag, Tag.id == ArticleTag.tag_id)
            )
        )
    assert stored_articles == {
        (a["slug"], usernames[a["author"]], a["created_at"].replace(tzinfo=None))
        for a in data.articles
    }
    assert stored_tags == {(slugs[a], data.tags[t]) for a, t in data.article_tags}


def test_seed_refuses_a_database_that_holds_data(app, register):
    register("someone")
    result = seed(app, *SMALL_ARGS)
    assert result.exit_code == 1
    assert "refusing to seed a database that already holds data (users: 1)" in result.output
    with app.app_context():
        assert db.session.query(User).count() == 1


def test_a_second_seed_is_refused_and_changes_nothing(app):
    assert seed(app, *SMALL_ARGS).exit_code == 0
    again = seed(app, *SMALL_ARGS, "--seed", "2")
    assert again.exit_code == 1
    assert "already holds data" in again.output
    with app.app_context():
        assert db.session.query(Article).count() == 120


def test_seed_on_an_unmigrated_database_says_to_migrate(tmp_path):
    app = create_app(env=app_env(f"sqlite:///{tmp_path / 'empty.sqlite'}"))
    nothing = ["--articles", "0", "--follows", "0", "--favorites", "0", "--comments", "0"]
    result = seed(app, "--users", "1", *nothing)
    assert result.exit_code == 1
    assert "flask db upgrade" in result.output
    # ...and once migrated, it works.
    with app.app_context():
        upgrade()
    assert seed(app, "--users", "1", *nothing).exit_code == 0
