"""Profiles and following."""


def test_profile_of_a_user(client, register):
    register("alice")
    response = client.get("/api/profiles/alice")
    assert response.status_code == 200
    assert response.get_json() == {
        "profile": {"username": "alice", "bio": None, "image": None, "following": False}
    }


def test_unknown_profile_is_404(client):
    response = client.get("/api/profiles/nobody")
    assert response.status_code == 404
    assert response.get_json() == {"errors": {"profile": ["not found"]}}


def test_follow_and_unfollow(client, register):
    alice, _ = register("alice"), register("bob")
    followed = client.post("/api/profiles/bob/follow", headers=alice.headers)
    assert followed.status_code == 200
    assert followed.get_json()["profile"]["following"] is True
    assert client.get("/api/profiles/bob", headers=alice.headers).get_json()["profile"]["following"]
    # Following is the viewer's: anonymous readers and bob himself see false.
    assert client.get("/api/profiles/bob").get_json()["profile"]["following"] is False

    again = client.post("/api/profiles/bob/follow", headers=alice.headers)
    assert again.status_code == 200  # idempotent

    unfollowed = client.delete("/api/profiles/bob/follow", headers=alice.headers)
    assert unfollowed.status_code == 200
    assert unfollowed.get_json()["profile"]["following"] is False


def test_follow_unknown_user_is_404(client, register):
    alice = register("alice")
    assert client.post("/api/profiles/nobody/follow", headers=alice.headers).status_code == 404
    assert client.delete("/api/profiles/nobody/follow", headers=alice.headers).status_code == 404


def test_following_yourself_is_422(client, register):
    alice = register("alice")
    response = client.post("/api/profiles/alice/follow", headers=alice.headers)
    assert response.status_code == 422


def test_profile_path_with_nul_is_404(client):
    assert client.get("/api/profiles/a%00b").status_code == 404
