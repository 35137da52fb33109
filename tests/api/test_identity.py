"""Usernames unique as a reader sees them, emails unique without case, both enforced by
the database (conduit/identity.py, migration f2b8d4c6a913)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, text

from conduit.api import users as users_api
from conduit.auth import hash_password
from conduit.extensions import db
from conduit.identity import username_skeleton
from tests.support import ROOT, app_env

BEFORE = "e4a7c2d9b158"  # the revision before the unique indexes
FLASK = Path(sys.executable).parent / "flask"
PASSWORD = "correct horse"


def register(client, username: str, email: str | None = None):
    email = email or f"{username.encode('punycode').decode()}@example.com"
    return client.post(
        "/api/users",
        json={"user": {"username": username, "email": email, "password": "x" * 8}},
    )


@pytest.mark.parametrize(
    "username",
    [
        "j\u0430ke",  # U+0430 CYRILLIC SMALL LETTER A among Latin letters
        "p\u03bfst",  # U+03BF GREEK SMALL LETTER OMICRON among Latin letters
        "\u0440\u0430ypal",  # Cyrillic er and a, then Latin letters
        "abc\u0661\u0662",  # Latin letters with Arabic-Indic digits
        "user1\u0662",  # digits of two numbering systems
    ],
)
def test_a_username_mixing_scripts_is_refused(client, username):
    response = register(client, username)
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert list(errors) == ["username"]
    assert errors["username"] == ["must not mix letters of different scripts"]


@pytest.mark.parametrize(
    "username",
    ["δημήτρης", "иван", "山田", "山田たろう", "김민준", "jake_1.dev", "Zoë", "محمد"],
)
def test_a_username_in_one_script_registers(client, username):
    response = register(client, username)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["user"]["username"] == username
    profile = client.get(f"/api/profiles/{username}")
    assert profile.get_json()["profile"]["username"] == username


@pytest.mark.parametrize(
    ("existing", "look_alike"),
    [
        ("ace", "\u0430\u0441\u0435"),  # all Cyrillic: one script, but reads as "ace"
        ("\u0430\u0441\u0435", "ace"),  # and the other way round
        ("bill", "bi11"),  # digit one for l
        ("rn", "m"),  # r n read as m
    ],
)
def test_a_username_that_reads_as_an_existing_one_is_refused(client, existing, look_alike):
    assert register(client, existing).status_code == 201
    response = register(client, look_alike)
    assert response.status_code == 422
    assert response.get_json() == {"errors": {"username": ["looks like an existing username"]}}


def test_a_look_alike_is_refused_on_update_too(client, register):
    register("ace")
    other = register("other")
    response = client.put(
        "/api/user", json={"user": {"username": "\u0430\u0441\u0435"}}, headers=other.headers
    )
    assert response.status_code == 422
    assert response.get_json() == {"errors": {"username": ["looks like an existing username"]}}
    assert client.get("/api/user", headers=other.headers).get_json()["user"]["username"] == "other"


def test_a_user_may_change_the_case_of_their_own_name(client, register):
    jake = register("jake")
    response = client.put("/api/user", json={"user": {"username": "Jake"}}, headers=jake.headers)
    assert response.status_code == 200
    assert response.get_json()["user"]["username"] == "Jake"


def insert_user(app, username: str, email: str) -> None:
    """Another process's account, committed on a connection of its own."""
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (username, username_skeleton, email, password_hash,"
                    " created_at, updated_at) VALUES (:username, :skeleton, :email, 'x',"
                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"username": username, "skeleton": username_skeleton(username), "email": email},
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("winner", "field"),
    [(("Jake", "first@example.com"), "username"), (("first", "JAKE@example.com"), "email")],
)
def test_a_registration_that_loses_the_race_is_422(app, client, monkeypatch, winner, field):
    """The other request commits after this one's check and before its commit: the
    unique index refuses this one, and the answer is the check's own 422."""
    check = users_api._ensure_unique
    calls = []

    def check_then_lose_the_race(*args, **kwargs):
        check(*args, **kwargs)
        if not calls:
            insert_user(app, *winner)
        calls.append(args)

    monkeypatch.setattr(users_api, "_ensure_unique", check_then_lose_the_race)
    response = register(client, "jake", "jake@example.com")
    assert response.status_code == 422
    assert response.get_json() == {"errors": {field: ["has already been taken"]}}
    with app.app_context():
        assert db.session.execute(text("SELECT count(*) FROM users")).scalar() == 1


@pytest.mark.postgres
def test_concurrent_look_alike_registrations_make_one_account(app, request):
    if not request.config.getoption("postgres"):
        pytest.skip("concurrent writers need PostgreSQL: run with pytest --postgres")
    variants = ["racer", "Racer", "RACER", "rAcer", "raCer", "racEr", "raceR", "RaCeR"]
    start = threading.Barrier(len(variants))
    statuses: dict[str, int] = {}

    def attempt(name: str) -> None:
        client = app.test_client()
        start.wait()
        # Emails differing only by case race at the same time.
        statuses[name] = register(client, name, f"{name}@Example.com").status_code

    threads = [threading.Thread(target=attempt, args=(name,)) for name in variants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses.values()) == [201] + [422] * (len(variants) - 1)
    with app.app_context():
        assert db.session.execute(text("SELECT count(*) FROM users")).scalar() == 1


# The migration, on accounts the releases before it let in.

COLLIDING = [
    ("jake", "jake@example.com"),
    ("Jake", "other@example.com"),
    ("j\u0430ke", "third@example.com"),  # U+0430 CYRILLIC SMALL LETTER A
    ("mary", "Mary@Example.com"),
    ("mary2", "mary@example.com"),
    ("solo", "solo@example.com"),
]


def seed_at_previous_revision(app, accounts) -> list:
    with app.app_context():
        downgrade(revision=BEFORE)
        for username, email in accounts:
            db.session.execute(
                text(
                    "INSERT INTO users (username, email, password_hash, created_at, updated_at)"
                    " VALUES (:username, :email, :hash, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"username": username, "email": email, "hash": hash_password(PASSWORD)},
            )
        db.session.commit()
        return users_table()


def users_table() -> list:
    return db.session.execute(text("SELECT * FROM users ORDER BY id")).all()


def flask(app, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **app_env(app.config["SQLALCHEMY_DATABASE_URI"]), "FLASK_APP": "conduit"}
    return subprocess.run(
        [str(FLASK), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def back_at_head(app):
    yield
    with app.app_context():
        db.session.execute(text("DELETE FROM users"))
        db.session.commit()
        upgrade()


def test_the_migration_reports_collisions_and_changes_nothing(app, back_at_head):
    before = seed_at_previous_revision(app, COLLIDING)
    listed = flask(app, "users", "collisions")
    assert listed.returncode == 1
    assert listed.stdout.splitlines() == [
        "username: users 1 (jake), 2 (Jake), 3 (j\u0430ke)",
        "email: users 4 (mary), 5 (mary2)",
    ]
    assert listed.stderr.startswith("Error: 2 groups of colliding accounts: rename")

    upgraded = flask(app, "db", "upgrade")
    assert upgraded.returncode == 1
    assert "Traceback" not in upgraded.stdout + upgraded.stderr
    # One log line (JSON outside development), the error's.
    errors = [json.loads(line) for line in upgraded.stdout.splitlines() if '"ERROR"' in line]
    assert len(errors) == 1
    assert errors[0]["message"].startswith(
        "Error: accounts collide, nothing was changed: username: users 1 (jake), 2 (Jake),"
        " 3 (j\u0430ke); email: users 4 (mary), 5 (mary2). To resolve: rename"
    )
    with app.app_context():
        assert users_table() == before
        version = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == BEFORE

    # Once the operator has renamed them, the upgrade goes through.
    with app.app_context():
        db.session.execute(text("UPDATE users SET username = 'jake-' || id WHERE id IN (2, 3)"))
        db.session.execute(text("UPDATE users SET email = 'mary2@example.com' WHERE id = 5"))
        db.session.commit()
    assert flask(app, "users", "collisions").stdout == "no colliding accounts\n"
    assert flask(app, "db", "upgrade").returncode == 0
    with app.app_context():
        skeletons = db.session.execute(
            text("SELECT username, username_skeleton FROM users ORDER BY id")
        ).all()
    assert skeletons[0] == ("jake", username_skeleton("jake"))
    assert all(skeleton == username_skeleton(name) for name, skeleton in skeletons)


def test_accounts_migrated_without_collisions_keep_their_logins(app, client, back_at_head):
    seed_at_previous_revision(app, [("jake", "Jake@Example.com")])
    with app.app_context():
        upgrade()
    assert register(client, "JAKE").get_json() == {
        "errors": {"username": ["has already been taken"]}
    }
    taken = register(client, "other", "jake@example.com")
    assert taken.get_json() == {"errors": {"email": ["has already been taken"]}}
    login = client.post(
        "/api/users/login", json={"user": {"email": "jake@example.com", "password": PASSWORD}}
    )
    assert login.get_json()["user"]["username"] == "jake"
