"""The tags in use."""


def test_tags_most_used_first(client, register, create_article):
    alice = register("alice")
    create_article(alice, title="1", tags=["rare", "common"])
    create_article(alice, title="2", tags=["common"])
    assert client.get("/api/tags").get_json() == {"tags": ["common", "rare"]}


def test_no_tags(client):
    assert client.get("/api/tags").get_json() == {"tags": []}
