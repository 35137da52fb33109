"""Comments on articles."""

import pytest


@pytest.fixture
def article(register, create_article):
    return create_article(register("alice"))


def add(client, slug, user, body="Thank you so much!"):
    return client.post(
        f"/api/articles/{slug}/comments", json={"comment": {"body": body}}, headers=user.headers
    )


def test_add_and_list_comments(client, register, article):
    bob = register("bob")
    first = add(client, article["slug"], bob, "first")
    assert first.status_code == 200  # the spec's status for a new comment
    comment = first.get_json()["comment"]
    assert comment["body"] == "first"
    assert isinstance(comment["id"], int)
    assert comment["author"]["username"] == "bob"
    add(client, article["slug"], bob, "second")

    listed = client.get(f"/api/articles/{article['slug']}/comments").get_json()["comments"]
    assert [c["body"] for c in listed] == ["second", "first"]
    assert listed[0]["author"]["following"] is False


def test_comment_author_following_flag(client, register, article):
    bob, carol = register("bob"), register("carol")
    add(client, article["slug"], bob)
    client.post("/api/profiles/bob/follow", headers=carol.headers)
    listed = client.get(f"/api/articles/{article['slug']}/comments", headers=carol.headers)
    assert listed.get_json()["comments"][0]["author"]["following"] is True


def test_comments_of_unknown_article_are_404(client, register):
    bob = register("bob")
    assert client.get("/api/articles/nope/comments").status_code == 404
    assert add(client, "nope", bob).status_code == 404


@pytest.mark.parametrize("body", [None, "", "   ", 12, ["x"], "a\x00b"])
def test_invalid_comment_is_422(client, register, article, body):
    bob = register("bob")
    payload = {"comment": {} if body is None else {"body": body}}
    response = client.post(
        f"/api/articles/{article['slug']}/comments", json=payload, headers=bob.headers
    )
    assert response.status_code == 422
    assert "body" in response.get_json()["errors"]


def test_delete_comment(client, register, article):
    bob = register("bob")
    comment_id = add(client, article["slug"], bob).get_json()["comment"]["id"]
    path = f"/api/articles/{article['slug']}/comments/{comment_id}"
    assert client.delete(path, headers=bob.headers).status_code == 204
    assert client.get(f"/api/articles/{article['slug']}/comments").get_json() == {"comments": []}
    assert client.delete(path, headers=bob.headers).status_code == 404


def test_only_the_comment_author_may_delete(client, register, article):
    bob, carol = register("bob"), register("carol")
    comment_id = add(client, article["slug"], bob).get_json()["comment"]["id"]
    response = client.delete(
        f"/api/articles/{article['slug']}/comments/{comment_id}", headers=carol.headers
    )
    assert response.status_code == 403
    assert len(client.get(f"/api/articles/{article['slug']}/comments").get_json()["comments"]) == 1


def test_comment_of_another_article_is_404(client, register, create_article, article):
    bob = register("bob")
    other = create_article(bob, title="other")
    comment_id = add(client, other["slug"], bob).get_json()["comment"]["id"]
    response = client.delete(
        f"/api/articles/{article['slug']}/comments/{comment_id}", headers=bob.headers
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("comment_id", "status"), [("abc", 422), ("-1", 422), ("0", 404), ("99999999999999999999", 404)]
)
def test_hostile_comment_ids(client, register, article, comment_id, status):
    bob = register("bob")
    response = client.delete(
        f"/api/articles/{article['slug']}/comments/{comment_id}", headers=bob.headers
    )
    assert response.status_code == status
    assert response.is_json
