"""Settings from the environment, and refusing unsafe production settings."""

from types import SimpleNamespace

import pytest

from conduit import create_app
from conduit.settings import ConfigError, load_settings, normalise_database_url

GOOD_SECRET = "k" * 40


def test_production_requires_a_secret(tmp_path):
    with pytest.raises(ConfigError, match="CONDUIT_SECRET is missing"):
        load_settings(tmp_path, {"CONDUIT_ENV": "production"})


@pytest.mark.parametrize("secret", ["secret", "changeme", "CHANGEME", "  dev  ", "conduit"])
def test_production_refuses_known_default_secrets(tmp_path, secret):
    with pytest.raises(ConfigError, match="known default"):
        load_settings(tmp_path, {"CONDUIT_ENV": "production", "CONDUIT_SECRET": secret})


def test_production_refuses_short_secrets(tmp_path):
    with pytest.raises(ConfigError, match="at least 32"):
        load_settings(tmp_path, {"CONDUIT_ENV": "production", "CONDUIT_SECRET": "x" * 31})


def test_production_is_the_default(tmp_path):
    with pytest.raises(ConfigError):
        load_settings(tmp_path, {})
    with pytest.raises(ConfigError):
        create_app(env={"DATABASE_URL": "sqlite://"})


def test_development_keeps_a_random_secret_in_the_instance_folder(tmp_path):
    first = load_settings(tmp_path, {"CONDUIT_ENV": "development"})["JWT_SECRET"]
    second = load_settings(tmp_path, {"CONDUIT_ENV": "development"})["JWT_SECRET"]
    assert first == second
    assert len(first) >= 32
    assert (tmp_path / "dev-secret-key").stat().st_mode & 0o777 == 0o600


def test_default_database_is_sqlite_in_the_instance_folder(tmp_path):
    settings = load_settings(tmp_path, {"CONDUIT_ENV": "production", "CONDUIT_SECRET": GOOD_SECRET})
    assert settings["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'conduit.sqlite'}"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_url_forms(given, expected):
    assert normalise_database_url(given) == expected


def test_settings_from_environment(tmp_path):
    settings = load_settings(
        tmp_path,
        {
            "CONDUIT_ENV": "production",
            "CONDUIT_SECRET": GOOD_SECRET,
            "DATABASE_URL": "postgres://u:p@db:5432/conduit",
            "CORS_ORIGINS": "https://a.example, https://b.example",
            "JWT_ACCESS_TOKEN_EXPIRES": "3600",
            "BCRYPT_LOG_ROUNDS": "13",
            "MAX_CONTENT_LENGTH": "2048",
            "DB_POOL_SIZE": "8",
        },
    )
    assert settings["CORS_ORIGINS"] == ["https://a.example", "https://b.example"]
    assert settings["JWT_ACCESS_TOKEN_EXPIRES"] == 3600
    assert settings["BCRYPT_LOG_ROUNDS"] == 13
    assert settings["MAX_CONTENT_LENGTH"] == 2048
    assert settings["SQLALCHEMY_ENGINE_OPTIONS"]["pool_size"] == 8
    assert "pool_pre_ping" not in settings["SQLALCHEMY_ENGINE_OPTIONS"]  # conduit/dbpool.py


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CONDUIT_ENV", "staging", "CONDUIT_ENV must be one of"),
        ("BCRYPT_LOG_ROUNDS", "many", "must be an integer"),
        ("BCRYPT_LOG_ROUNDS", "2", "at least 4"),
        ("JWT_ACCESS_TOKEN_EXPIRES", "-5", "at least 60"),
    ],
)
def test_invalid_settings_are_named(tmp_path, name, value, message):
    env = {"CONDUIT_ENV": "production", "CONDUIT_SECRET": GOOD_SECRET, name: value}
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, env)


def test_log_level_from_environment(tmp_path):
    env = {"CONDUIT_ENV": "production", "CONDUIT_SECRET": GOOD_SECRET}
    assert load_settings(tmp_path, env)["LOG_LEVEL"] == "INFO"
    assert load_settings(tmp_path, {**env, "LOG_LEVEL": "warning"})["LOG_LEVEL"] == "WARNING"
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        load_settings(tmp_path, {**env, "LOG_LEVEL": "loud"})


POSTGRES = {"CONDUIT_ENV": "development", "DATABASE_URL": "postgresql://u:p@db:5432/conduit"}


def test_default_pools_hold_one_connection_per_thread(tmp_path):
    """2 uWSGI processes x 4 threads x 2 pools (conduit/reads.py) = 16 connections at most,
    within a small max_connections (20) with room for migrations and psql."""
    options = load_settings(tmp_path, POSTGRES)["SQLALCHEMY_ENGINE_OPTIONS"]
    assert (options["pool_size"], options["max_overflow"]) == (4, 0)
    processes, pools = 2, 2
    assert processes * pools * (options["pool_size"] + options["max_overflow"]) <= 20


def test_under_uwsgi_the_pools_follow_its_threads(tmp_path, monkeypatch):
    from conduit import settings

    # uwsgi.opt holds options as bytes (uWSGI's Python plugin)
    monkeypatch.setattr(settings, "_uwsgi", lambda: SimpleNamespace(opt={"threads": b"8"}))
    options = load_settings(tmp_path, POSTGRES)["SQLALCHEMY_ENGINE_OPTIONS"]
    assert (options["pool_size"], options["max_overflow"]) == (8, 0)
    explicit = load_settings(tmp_path, {**POSTGRES, "DB_POOL_SIZE": "3", "DB_MAX_OVERFLOW": "2"})
    options = explicit["SQLALCHEMY_ENGINE_OPTIONS"]
    assert (options["pool_size"], options["max_overflow"]) == (3, 2)
