"""Settings read from the environment (12-factor).

Everything the app needs at run time comes from environment variables, so the same
image runs in every environment. `load_settings()` turns them into Flask config keys
and refuses unsafe production settings before the app serves anything.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import click
from flask.cli import NoAppException
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

ENVIRONMENTS = ("production", "development", "testing")

# Secrets that appear in tutorials, seeds and examples: never acceptable in production.
KNOWN_DEFAULT_SECRETS = frozenset(
    {
        "",
        "secret",
        "secret-key",
        "secret_key",
        "changeme",
        "change-me",
        "dev",
        "development",
        "conduit",
        "jwt-secret",
        "super-secret",
        "supersecret",
        "please-change-me",
    }
)
LOG_FORMATS = ("json", "text")  # conduit/observability/logs.py
MIN_SECRET_LENGTH = 32
RANDOM_KEY_RECIPE = "make one with python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
PRODUCTION_TAGS_CACHE_SECONDS = 5
# PostgreSQL's limits on one request's work, in seconds (see _postgresql_limits).
DEFAULT_STATEMENT_TIMEOUT = 10
DEFAULT_LOCK_TIMEOUT = 5
DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT = 15


class ConfigError(NoAppException):
    """The environment cannot configure a safe app: one message naming the variable, what
    is wrong and what would be right, shown without a traceback.

    A NoAppException ("the app cannot be loaded") so that every `flask` command prints
    it as `Error: <message>` and exits 1: click shows a ClickException raised by a
    command, and Flask's command list (`flask --help`) shows a NoAppException, but any
    other exception as a traceback. Outside click (uWSGI, conduit/preload.py) `exit()`
    does the same.
    """

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)

    def show(self, file=None) -> None:
        # ClickException's one line, without UsageError's "Usage: …" and "Try --help".
        click.ClickException.show(self, file)

    def exit(self) -> NoReturn:
        self.show()
        raise SystemExit(self.exit_code)


def normalise_database_url(url: str) -> str:
    """Accept the URL forms platforms hand out and pick the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# What DATABASE_URL may name, after normalise_database_url(): the drivers installed.
DATABASE_DRIVERS = ("postgresql+psycopg", "sqlite", "sqlite+pysqlite")
DATABASE_URL_FORMS = (
    "postgresql://USER:PASSWORD@HOST:5432/DATABASE or sqlite:////absolute/path/conduit.sqlite"
)


def _database_url(env: Mapping[str, str], instance_path: Path) -> str:
    """DATABASE_URL, checked here so that a wrong one is named before any engine exists.

    A value that does not parse is never echoed: it may hold a password.
    """
    raw = env.get("DATABASE_URL", "").strip()
    if not raw:
        return f"sqlite:///{instance_path / 'conduit.sqlite'}"
    url = normalise_database_url(raw)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL is not a database URL; use {DATABASE_URL_FORMS}") from None
    if parsed.drivername not in DATABASE_DRIVERS:
        raise ConfigError(
            f"DATABASE_URL: {parsed.drivername!r} databases are not supported; "
            f"use {DATABASE_URL_FORMS}"
        )
    return url


def describe_database(url: str | URL) -> str:
    """The database a URL names, for people: the password hidden, SQLite as its file."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite {parsed.database or '(in memory)'}"
    return f"PostgreSQL {parsed.render_as_string(hide_password=True)}"


def database_unreachable(url: str | URL, error: BaseException) -> ConfigError:
    """A ConfigError for a database that refused the connection or cannot be reached.

    The driver's own words come along (libpq's say which host, port and user failed and
    why), minus the password should they ever hold it.
    """
    parsed = make_url(url)
    reason = str(getattr(error, "orig", None) or error)
    if parsed.password:
        reason = reason.replace(str(parsed.password), "***")
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    details = "".join(f"\n  {line}" for line in lines[:6])
    return ConfigError(
        f"cannot connect to DATABASE_URL's database ({describe_database(parsed)}):{details}"
        "\n  Check that the server runs and that DATABASE_URL's host, port, user, password"
        " and database name are right."
    )


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1/true/yes/on or 0/false/no/off, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _log_level(env: Mapping[str, str]) -> str:
    level = env.get("LOG_LEVEL", "INFO").strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(
            f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level!r}"
        )
    return level


def _cors_origins(env: Mapping[str, str]) -> list[str]:
    """CORS_ORIGINS: * (the default), comma-separated origins, or empty for none."""
    origins = [part.strip() for part in env.get("CORS_ORIGINS", "*").split(",") if part.strip()]
    for origin in origins:
        if origin != "*" and not _is_origin(origin):
            raise ConfigError(
                f"CORS_ORIGINS: {origin!r} is not an origin; list origins as "
                "scheme://host[:port] with nothing after it (https://app.example.com), "
                "comma-separated, or * for any"
            )
    return origins


def _is_origin(value: str) -> bool:
    try:
        parts = urlsplit(value)
        _ = parts.port  # a port that is not a number raises ValueError
    except ValueError:
        return False
    return (
        bool(parts.scheme and parts.hostname)
        and f"{parts.scheme}://{parts.netloc}" == value
        and "@" not in parts.netloc
    )


def _uwsgi():
    """uWSGI's module when this process is a uWSGI worker, else None."""
    try:
        import uwsgi  # only importable inside uWSGI
    except ImportError:
        return None
    return uwsgi


def _uwsgi_int_option(name: str) -> int | None:
    """A numeric uWSGI option when this process is a uWSGI worker with it set."""
    uwsgi = _uwsgi()
    if uwsgi is None:
        return None
    value = uwsgi.opt.get(name)
    if isinstance(value, list):  # an option given more than once: the last one counts
        value = value[-1]
    return int(value) if value else None


def _uwsgi_harakiri() -> int | None:
    """uWSGI's harakiri in seconds when this process is a uWSGI worker with one set."""
    return _uwsgi_int_option("harakiri")


# Threads of a worker process outside uWSGI: the image's default (docker/uwsgi.ini).
DEFAULT_THREADS = 4


def _postgresql_limits(env: Mapping[str, str]) -> str:
    """Server-side limits as libpq `options`, so a stuck query fails its own request.

    A statement that runs too long or waits too long for a lock is cancelled by
    PostgreSQL, and the request answers 503 (conduit/errors.py) while the worker goes on
    serving. The statement limit stays below uWSGI's harakiri, which would kill the
    whole worker (every thread's request) and answer its client with nothing. A session
    left idle inside a transaction (a thread stuck in Python) loses the transaction and
    its locks instead of blocking every writer behind it.
    """
    statement = _int(env, "DB_STATEMENT_TIMEOUT", DEFAULT_STATEMENT_TIMEOUT, minimum=1)
    lock = _int(env, "DB_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT, minimum=1)
    idle = _int(env, "DB_IDLE_IN_TRANSACTION_TIMEOUT", DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT, 1)
    harakiri = _uwsgi_harakiri()
    if harakiri is not None and statement >= harakiri:
        raise ConfigError(
            f"DB_STATEMENT_TIMEOUT ({statement} s) must be below uWSGI's harakiri ({harakiri} s)"
        )
    limits = {
        "statement_timeout": statement,
        "lock_timeout": lock,
        "idle_in_transaction_session_timeout": idle,
    }
    return " ".join(f"-c {name}={seconds}s" for name, seconds in limits.items())


def migrations_dir(env: Mapping[str, str]) -> str:
    return env.get("CONDUIT_MIGRATIONS_DIR", "migrations")


def _development_secret(instance_path: Path) -> str:
    """A random key kept in the instance folder: stable across restarts, unique per checkout."""
    path = instance_path / "dev-secret-key"
    if not path.exists():
        instance_path.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def load_settings(instance_path: Path, env: Mapping[str, str] | None = None) -> dict:
    """Build the Flask config mapping from environment variables."""
    env = os.environ if env is None else env
    environment = env.get("CONDUIT_ENV", "production").strip().lower()
    if environment not in ENVIRONMENTS:
        raise ConfigError(
            f"CONDUIT_ENV must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}"
        )

    secret = env.get("CONDUIT_SECRET", "")
    if environment == "production":
        # The secret itself is never shown, only its length.
        if secret.strip().lower() in KNOWN_DEFAULT_SECRETS:
            raise ConfigError(
                "CONDUIT_SECRET is missing or a known default; in production it must be "
                f"a random value: {RANDOM_KEY_RECIPE}"
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"CONDUIT_SECRET must be at least {MIN_SECRET_LENGTH} characters in "
                f"production, got {len(secret)}: {RANDOM_KEY_RECIPE}"
            )
    elif not secret:
        secret = _development_secret(instance_path)

    database_url = _database_url(env, instance_path)

    engine_options: dict = {}
    if database_url.startswith("sqlite"):
        # Writers from several uWSGI workers wait for the lock instead of failing.
        engine_options["connect_args"] = {"timeout": 15}
    else:
        # Connections the server closed are dropped at checkout without a round trip
        # (conduit/dbpool.py), not by a `SELECT 1` before every request (pool_pre_ping).
        # By default each pool holds one connection per worker thread and no overflow: a
        # thread uses at most one connection of a pool at a time, so it never waits, and
        # a server opens no more than processes x threads x 2 pools (16 for the image's
        # 2 x 4), within a small max_connections. Kubernetes sets both (k8s/base).
        threads = _uwsgi_int_option("threads") or DEFAULT_THREADS
        engine_options.update(
            pool_size=_int(env, "DB_POOL_SIZE", threads, minimum=1),
            max_overflow=_int(env, "DB_MAX_OVERFLOW", 0),
            pool_recycle=_int(env, "DB_POOL_RECYCLE", 1800, minimum=1),
            pool_timeout=_int(env, "DB_POOL_TIMEOUT", 10, minimum=1),
            connect_args={"options": _postgresql_limits(env)},
        )

    return {
        "CONDUIT_ENV": environment,
        "TESTING": environment == "testing",
        "JWT_SECRET": secret,
        "JWT_ACCESS_TOKEN_EXPIRES": _int(env, "JWT_ACCESS_TOKEN_EXPIRES", 7 * 24 * 3600, 60),
        # 12 rounds: about 0.25 s per hash on one current core (see README).
        "BCRYPT_LOG_ROUNDS": _int(env, "BCRYPT_LOG_ROUNDS", 12, minimum=4),
        "MAX_CONTENT_LENGTH": _int(env, "MAX_CONTENT_LENGTH", 1024 * 1024, minimum=1024),
        "CORS_ORIGINS": _cors_origins(env),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options,
        # Each thread keeps its read connection between requests (conduit/reads.py):
        # by default under uWSGI, whose threads live as long as their worker.
        "DB_READ_CONNECTION_PER_THREAD": _flag(
            env, "DB_READ_CONNECTION_PER_THREAD", default=_uwsgi() is not None
        ),
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
        "MIGRATIONS_DIR": migrations_dir(env),
        # GET /api/tags from a per-process cache for this many seconds (conduit/api/tags.py).
        # On in production, where the tag cloud may lag a write by that much; off where
        # tests and developers expect to see their writes at once.
        "TAGS_CACHE_SECONDS": _int(
            env,
            "TAGS_CACHE_SECONDS",
            PRODUCTION_TAGS_CACHE_SECONDS if environment == "production" else 0,
        ),
        # X-SQL-Statements on every response (conduit/sqlcount.py): for the benchmark.
        "SQL_STATEMENTS_HEADER": _flag(env, "CONDUIT_SQL_STATEMENTS_HEADER"),
        "LOG_LEVEL": _log_level(env),
        # JSON lines for log pipelines; one readable line per request for a developer.
        "LOG_FORMAT": _choice(
            env, "LOG_FORMAT", LOG_FORMATS, "text" if environment == "development" else "json"
        ),
        "CONDUIT_VERSION": env.get("CONDUIT_VERSION", "dev"),
        "CONDUIT_REVISION": env.get("CONDUIT_REVISION", "unknown"),
    }
