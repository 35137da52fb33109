"""Lists load in a constant number of SQL statements, whatever the page size."""

import pytest


@pytest.fixture
def crowded(client, register, create_article):
    """Two authors, 20 articles with tags, favorites, comments and a follow."""
    alice, bob = register("alice"), register("bob")
    slugs = []
    for n in range(20):
        author = alice if n % 2 else bob
        slugs.append(create_article(author, title=f"article {n}", tags=[f"t{n}", "all"])["slug"])
    for slug in slugs[::3]:
        client.post(f"/api/articles/{slug}/favorite", headers=alice.headers)
        client.post(
            f"/api/articles/{slug}/comments", json={"comment": {"body": "c"}}, headers=bob.headers
        )
        client.post(
            f"/api/articles/{slug}/comments", json={"comment": {"body": "d"}}, headers=alice.headers
        )
    client.post("/api/profiles/bob/follow", headers=alice.headers)
    return alice, slugs


def statements_for(client, count_statements, path, headers=None):
    with count_statements() as statements:
        response = client.get(path, headers=headers)
    assert response.status_code == 200
    return response.get_json(), len(statements)


@pytest.mark.parametrize("authenticated", [False, True])
def test_article_list_statements_do_not_grow_with_the_page(
    client, count_statements, crowded, authenticated
):
    alice, _ = crowded
    headers = alice.headers if authenticated else None
    big, big_count = statements_for(client, count_statements, "/api/articles?limit=20", headers)
    small, small_count = statements_for(client, count_statements, "/api/articles?limit=2", headers)
    assert (len(big["articles"]), len(small["articles"])) == (20, 2)
    assert big_count == small_count
    assert big_count <= 4


def test_filtered_list_and_feed_statements_are_constant(client, count_statements, crowded):
    alice, _ = crowded
    for path in ("/api/articles?tag=all", "/api/articles/feed", "/api/articles?favorited=alice"):
        _, big = statements_for(
            client, count_statements, f"{path}{'&' if '?' in path else '?'}limit=20", alice.headers
        )
        _, small = statements_for(
            client, count_statements, f"{path}{'&' if '?' in path else '?'}limit=1", alice.headers
        )
        assert big == small, path


def test_comment_list_statements_do_not_grow(client, count_statements, crowded, register):
    alice, slugs = crowded
    _, two = statements_for(
        client, count_statements, f"/api/articles/{slugs[0]}/comments", alice.headers
    )
    for _ in range(10):
        client.post(
            f"/api/articles/{slugs[0]}/comments",
            json={"comment": {"body": "more"}},
            headers=alice.headers,
        )
    body, twelve = statements_for(
        client, count_statements, f"/api/articles/{slugs[0]}/comments", alice.headers
    )
    assert len(body["comments"]) == 12
    assert two == twelve
