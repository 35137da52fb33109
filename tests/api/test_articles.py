"""Articles: create, read, list and filter, update, delete, favorite."""

import re

import pytest

ISO_8601 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_create_article_returns_every_field(client, register):
    alice = register("alice")
    response = client.post(
        "/api/articles",
        json={
            "article": {
                "title": "How to train your dragon",
                "description": "Ever wonder how?",
                "body": "Very carefully.",
                "tagList": ["training", "dragons"],
            }
        },
        headers=alice.headers,
    )
    assert response.status_code == 201
    article = response.get_json()["article"]
    assert article["slug"] == "how-to-train-your-dragon"
    assert article["title"] == "How to train your dragon"
    assert article["body"] == "Very carefully."
    assert article["tagList"] == ["dragons", "training"]  # sorted, as the suite expects
    assert article["favorited"] is False
    assert article["favoritesCount"] == 0
    assert article["author"] == {
        "username": "alice",
        "bio": None,
        "image": None,
        "following": False,
    }
    assert ISO_8601.match(article["createdAt"])
    assert ISO_8601.match(article["updatedAt"])


def test_same_title_gets_a_distinct_slug(client, register, create_article):
    alice = register("alice")
    first = create_article(alice, title="Same title")
    second = create_article(alice, title="Same title")
    assert first["slug"] == "same-title"
    assert second["slug"] != first["slug"]
    assert second["slug"].startswith("same-title-")
    assert client.get(f"/api/articles/{second['slug']}").status_code == 200


def test_title_without_letters_still_gets_a_slug(register, create_article):
    alice = register("alice")
    assert create_article(alice, title="???")["slug"] == "article"


def test_duplicate_tags_are_stored_once(register, create_article):
    alice = register("alice")
    article = create_article(alice, tags=["b", "a", "b", " a "])
    assert article["tagList"] == ["a", "b"]


@pytest.mark.parametrize(
    ("article", "field"),
    [
        ({"description": "d", "body": "b"}, "title"),
        ({"title": "t", "body": "b"}, "description"),
        ({"title": "t", "description": "d"}, "body"),
        ({"title": "   ", "description": "d", "body": "b"}, "title"),
        ({"title": 5, "description": "d", "body": "b"}, "title"),
        ({"title": "t", "description": "d", "body": "b", "tagList": "dragons"}, "tagList"),
        ({"title": "t", "description": "d", "body": "b", "tagList": [1, 2]}, "tagList[0]"),
        ({"title": "t", "description": "d", "body": "b", "tagList": ["\t"]}, "tagList[0]"),
        (
            {"title": "t", "description": "d", "body": "b", "tagList": [str(i) for i in range(21)]},
            "tagList",
        ),
        ({"title": "t\x00", "description": "d", "body": "b"}, "title"),
        ({"title": "t" * 256, "description": "d", "body": "b"}, "title"),
    ],
)
def test_create_article_validates_fields(client, register, article, field):
    alice = register("alice")
    response = client.post("/api/articles", json={"article": article}, headers=alice.headers)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]
    assert client.get("/api/articles").get_json()["articlesCount"] == 0


def test_get_article_by_slug(client, register, create_article):
    alice = register("alice")
    created = create_article(alice, title="Hello", tags=["x"])
    response = client.get(f"/api/articles/{created['slug']}")
    assert response.status_code == 200
    assert response.get_json()["article"] == created


def test_unknown_article_is_404(client):
    response = client.get("/api/articles/no-such-slug")
    assert response.status_code == 404
    assert response.get_json() == {"errors": {"article": ["not found"]}}


def test_list_is_newest_first_without_body(client, register, create_article):
    alice = register("alice")
    for title in ("first", "second", "third"):
        create_article(alice, title=title)
    body = client.get("/api/articles").get_json()
    assert [a["title"] for a in body["articles"]] == ["third", "second", "first"]
    assert body["articlesCount"] == 3
    assert all("body" not in a for a in body["articles"])


def test_limit_and_offset_page_through_all_matches(client, register, create_article):
    alice = register("alice")
    for n in range(5):
        create_article(alice, title=f"article {n}")
    page = client.get("/api/articles?limit=2&offset=1").get_json()
    assert [a["title"] for a in page["articles"]] == ["article 3", "article 2"]
    assert page["articlesCount"] == 5  # all matches, not the page length
    beyond = client.get("/api/articles?offset=10").get_json()
    assert beyond == {"articles": [], "articlesCount": 5}


def test_filters_by_tag_author_and_favorited(client, register, create_article):
    alice, bob = register("alice"), register("bob")
    a1 = create_article(alice, title="a1", tags=["dragons"])
    create_article(alice, title="a2", tags=["cats"])
    b1 = create_article(bob, title="b1", tags=["dragons"])
    client.post(f"/api/articles/{a1['slug']}/favorite", headers=bob.headers)
    client.post(f"/api/articles/{b1['slug']}/favorite", headers=bob.headers)

    def titles(query):
        body = client.get(f"/api/articles?{query}").get_json()
        assert body["articlesCount"] == len(body["articles"])
        return [a["title"] for a in body["articles"]]

    assert titles("tag=dragons") == ["b1", "a1"]
    assert titles("author=alice") == ["a2", "a1"]
    assert titles("favorited=bob") == ["b1", "a1"]
    assert titles("author=alice&favorited=bob&tag=dragons") == ["a1"]
    assert titles("author=alice&tag=cats&favorited=bob") == []
    assert titles("author=nobody") == []
    assert titles("tag=unknown") == []


def test_favorite_and_unfavorite(client, register, create_article):
    alice, bob = register("alice"), register("bob")
    slug = create_article(alice)["slug"]
    favorited = client.post(f"/api/articles/{slug}/favorite", headers=bob.headers)
    assert favorited.status_code == 200
    article = favorited.get_json()["article"]
    assert (article["favorited"], article["favoritesCount"]) == (True, 1)
    again = client.post(f"/api/articles/{slug}/favorite", headers=bob.headers).get_json()
    assert again["article"]["favoritesCount"] == 1  # idempotent
    client.post(f"/api/articles/{slug}/favorite", headers=alice.headers)

    listed = client.get("/api/articles", headers=bob.headers).get_json()["articles"][0]
    assert (listed["favorited"], listed["favoritesCount"]) == (True, 2)
    anonymous = client.get("/api/articles").get_json()["articles"][0]
    assert (anonymous["favorited"], anonymous["favoritesCount"]) == (False, 2)

    unfavorited = client.delete(f"/api/articles/{slug}/favorite", headers=bob.headers)
    article = unfavorited.get_json()["article"]
    assert (article["favorited"], article["favoritesCount"]) == (False, 1)


def test_favorite_unknown_article_is_404(client, register):
    alice = register("alice")
    assert client.post("/api/articles/nope/favorite", headers=alice.headers).status_code == 404
    assert client.delete("/api/articles/nope/favorite", headers=alice.headers).status_code == 404


def test_following_flag_in_lists(client, register, create_article):
    alice, bob = register("alice"), register("bob")
    create_article(alice)
    client.post("/api/profiles/alice/follow", headers=bob.headers)
    author = client.get("/api/articles", headers=bob.headers).get_json()["articles"][0]["author"]
    assert author["following"] is True
    assert client.get("/api/articles").get_json()["articles"][0]["author"]["following"] is False


def test_feed_holds_followed_authors_only(client, register, create_article):
    alice, bob, carol = register("alice"), register("bob"), register("carol")
    create_article(alice, title="by alice")
    create_article(bob, title="by bob")
    create_article(carol, title="by carol")
    assert client.get("/api/articles/feed", headers=carol.headers).get_json() == {
        "articles": [],
        "articlesCount": 0,
    }
    client.post("/api/profiles/alice/follow", headers=carol.headers)
    client.post("/api/profiles/bob/follow", headers=carol.headers)
    feed = client.get("/api/articles/feed?limit=1", headers=carol.headers).get_json()
    assert [a["title"] for a in feed["articles"]] == ["by bob"]
    assert feed["articlesCount"] == 2
    assert feed["articles"][0]["author"]["following"] is True


def test_update_article(client, register, create_article):
    alice = register("alice")
    created = create_article(alice, title="Old title", tags=["a"])
    response = client.put(
        f"/api/articles/{created['slug']}",
        json={"article": {"body": "With two hands"}},
        headers=alice.headers,
    )
    assert response.status_code == 200
    article = response.get_json()["article"]
    assert article["body"] == "With two hands"
    assert article["slug"] == created["slug"]
    assert article["tagList"] == ["a"]
    assert article["updatedAt"] >= created["updatedAt"]
    assert article["createdAt"] == created["createdAt"]


def test_new_title_moves_the_slug(client, register, create_article):
    alice = register("alice")
    slug = create_article(alice, title="Old title")["slug"]
    response = client.put(
        f"/api/articles/{slug}",
        json={"article": {"title": "New title", "tagList": ["z", "y"]}},
        headers=alice.headers,
    )
    article = response.get_json()["article"]
    assert (article["slug"], article["tagList"]) == ("new-title", ["y", "z"])
    assert client.get("/api/articles/old-title").status_code == 404
    assert client.get("/api/articles/new-title").status_code == 200


def test_only_the_author_may_update_or_delete(client, register, create_article):
    alice, bob = register("alice"), register("bob")
    slug = create_article(alice)["slug"]
    update = client.put(
        f"/api/articles/{slug}", json={"article": {"body": "x"}}, headers=bob.headers
    )
    delete = client.delete(f"/api/articles/{slug}", headers=bob.headers)
    assert (update.status_code, delete.status_code) == (403, 403)
    assert "article" in update.get_json()["errors"]
    assert client.get(f"/api/articles/{slug}").get_json()["article"]["body"] == "the body"


def test_update_with_no_fields_is_422(client, register, create_article):
    alice = register("alice")
    slug = create_article(alice)["slug"]
    response = client.put(f"/api/articles/{slug}", json={"article": {}}, headers=alice.headers)
    assert response.status_code == 422


def test_delete_article_removes_it_with_its_comments_and_favorites(
    client, register, create_article
):
    alice, bob = register("alice"), register("bob")
    slug = create_article(alice, tags=["gone"])["slug"]
    client.post(f"/api/articles/{slug}/favorite", headers=bob.headers)
    client.post(
        f"/api/articles/{slug}/comments", json={"comment": {"body": "hi"}}, headers=bob.headers
    )
    response = client.delete(f"/api/articles/{slug}", headers=alice.headers)
    assert response.status_code == 204
    assert response.data == b""
    assert client.get(f"/api/articles/{slug}").status_code == 404
    assert client.get("/api/articles?favorited=bob").get_json()["articlesCount"] == 0
    assert client.get("/api/tags").get_json()["tags"] == []
    assert client.delete(f"/api/articles/{slug}", headers=alice.headers).status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        "limit=-1",
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=1.5",
        "offset=-1",
        "offset=99999999999999999999999",
        "offset=2147483648",  # one past the documented bound, 2**31 - 1
        "limit=99999999999999999999999",
        "offset=%EF%BC%91",  # a full-width digit
        "tag=a%00b",
        "author=a%00b",
    ],
)
def test_hostile_list_parameters_are_422(client, query):
    response = client.get(f"/api/articles?{query}")
    assert response.status_code == 422
    assert response.is_json


def test_largest_limit_is_accepted(client):
    assert client.get("/api/articles?limit=100&offset=2147483647").status_code == 200
