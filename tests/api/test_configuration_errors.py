"""A wrong environment, as an operator meets it: the real commands (`flask …`,
`make run`, uWSGI with docker/uwsgi.ini) in subprocesses, and their whole output.

Each error is one message naming the variable, what is wrong and what would be right,
with no traceback and a non-zero exit status (conduit/settings.py, migrations/env.py,
conduit/preload.py). The README's table lists them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from sqlalchemy.engine import make_url

from tests.support import ROOT, free_port, stop_process, uwsgi_binary, wait_until

VENV = Path(sys.executable).parent.parent
GOOD_SECRET = "configuration-test-" + "k" * 40
# A password that must never appear in any output.
PASSWORD = "pw-never-shown-3f9a"
NOTHING_LISTENS = f"postgresql://conduit:{PASSWORD}@127.0.0.1:{free_port()}/conduit"

# (variable, value, other variables, what the one line must say)
SETTINGS_ERRORS = {
    "not-a-url": (
        {"DATABASE_URL": "not-a-url"},
        "Error: DATABASE_URL is not a database URL; use postgresql://USER:PASSWORD@HOST:5432/"
        "DATABASE or sqlite:////absolute/path/conduit.sqlite",
    ),
    "unsupported-database": (
        {"DATABASE_URL": f"mysql://conduit:{PASSWORD}@db/conduit"},
        "Error: DATABASE_URL: 'mysql' databases are not supported; use postgresql://",
    ),
    "short-secret": (
        {"CONDUIT_ENV": "production", "CONDUIT_SECRET": "short"},
        "Error: CONDUIT_SECRET must be at least 32 characters in production, got 5: make one "
        "with python3 -c 'import secrets; print(secrets.token_urlsafe(48))'",
    ),
    "default-secret": (
        {"CONDUIT_ENV": "production", "CONDUIT_SECRET": "changeme"},
        "Error: CONDUIT_SECRET is missing or a known default; in production it must be a "
        "random value",
    ),
    "mistyped-environment": (
        {"CONDUIT_ENV": "prod"},
        "Error: CONDUIT_ENV must be one of production, development, testing, got 'prod'",
    ),
    "bad-cors-origin": (
        {"CORS_ORIGINS": "app.example.com"},
        "Error: CORS_ORIGINS: 'app.example.com' is not an origin; list origins as "
        "scheme://host[:port]",
    ),
}


def environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {
        **os.environ,
        "FLASK_APP": "conduit",
        "CONDUIT_ENV": "development",
        "CONDUIT_SECRET": GOOD_SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'conduit.sqlite'}",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}",
    }
    env.update(variables)
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 120):
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_one_message(result, message: str, lines: int = 1) -> None:
    """The whole of stderr is `message` (its start), in `lines` lines; nothing leaked."""
    assert result.returncode == 1, result.stdout + result.stderr
    err = result.stderr.splitlines()
    assert len(err) == lines, result.stderr
    assert err[0].startswith(message), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(SETTINGS_ERRORS))
@pytest.mark.parametrize("command", [["db", "upgrade"], ["routes"], ["db", "current"]])
def test_flask_commands_print_one_line(tmp_path, case, command):
    variables, message = SETTINGS_ERRORS[case]
    result = run([str(VENV / "bin" / "flask"), *command], environment(tmp_path, **variables))
    assert_one_message(result, message)
    assert not (tmp_path / "conduit.sqlite").exists()  # nothing was migrated


def test_flask_help_shows_the_message_instead_of_a_traceback(tmp_path):
    variables, message = SETTINGS_ERRORS["mistyped-environment"]
    result = run([str(VENV / "bin" / "flask"), "--help"], environment(tmp_path, **variables))
    assert result.returncode == 0  # the help itself is still shown
    assert result.stderr.splitlines()[0] == message
    assert "Traceback" not in result.stderr
    assert "db" in result.stdout  # `flask db` is listed without the app


def test_a_database_nothing_listens_on_is_named_without_its_password(tmp_path):
    env = environment(tmp_path, DATABASE_URL=NOTHING_LISTENS)
    result = run([str(VENV / "bin" / "flask"), "db", "upgrade"], env)
    shown = make_url(NOTHING_LISTENS.replace("postgresql:", "postgresql+psycopg:", 1))
    # The message, libpq's two lines (refused; is the server running?) and the advice.
    assert_one_message(
        result,
        f"Error: cannot connect to DATABASE_URL's database (PostgreSQL "
        f"{shown.render_as_string(hide_password=True)}):",
        lines=4,
    )
    assert "Connection refused" in result.stderr
    assert "DATABASE_URL's host, port, user, password" in result.stderr


def test_a_sqlite_file_that_cannot_be_opened_is_named(tmp_path):
    env = environment(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/no-such-folder/x.sqlite")
    result = run([str(VENV / "bin" / "flask"), "db", "upgrade"], env)
    assert_one_message(
        result,
        f"Error: cannot connect to DATABASE_URL's database (SQLite {tmp_path}/no-such-folder/",
        lines=3,
    )
    assert "unable to open database file" in result.stderr


@pytest.mark.postgres
def test_a_wrong_password_is_named_without_the_password(tmp_path, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("a server that checks passwords: run with pytest --postgres")
    wrong = make_url(database_url).set(password=PASSWORD).render_as_string(hide_password=False)
    result = run(
        [str(VENV / "bin" / "flask"), "db", "upgrade"], environment(tmp_path, DATABASE_URL=wrong)
    )
    assert_one_message(result, "Error: cannot connect to DATABASE_URL's database (PostgreSQL", 3)
    assert "password authentication failed" in result.stderr


def test_flask_db_upgrade_names_the_database_it_migrates(tmp_path):
    result = run([str(VENV / "bin" / "flask"), "db", "upgrade"], environment(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"Migrating the database of DATABASE_URL: SQLite {tmp_path / 'conduit.sqlite'}" in (
        result.stdout
    )


# --- uWSGI, as the image starts it -----------------------------------------------------


@pytest.mark.parametrize("case", sorted(SETTINGS_ERRORS))
def test_uwsgi_stops_before_any_worker_with_the_message(tmp_path, case):
    variables, message = SETTINGS_ERRORS[case]
    env = environment(tmp_path, **{"CONDUIT_ENV": "production", "PORT": str(free_port())})
    env.update(variables)
    result = run([uwsgi_binary(), "--ini", str(ROOT / "docker" / "uwsgi.ini")], env, timeout=60)
    # uWSGI's logger takes the app's stderr to stdout, after uWSGI's own start-up lines:
    # the master stops at the settings, once.
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert result.stdout.splitlines()[-1].startswith(message), output
    assert output.count("Error:") == 1, output
    assert "spawned uWSGI worker" not in output
    assert "Traceback" not in output
    assert PASSWORD not in output


def test_uwsgi_with_good_settings_serves(tmp_path):
    """The negative case of the one above: the master's check lets a good start through."""
    port = free_port()
    run([str(VENV / "bin" / "flask"), "db", "upgrade"], environment(tmp_path), timeout=120)
    env = environment(tmp_path, CONDUIT_ENV="production", PORT=str(port), UWSGI_PROCESSES="1")
    log = tmp_path / "uwsgi.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [uwsgi_binary(), "--ini", str(ROOT / "docker" / "uwsgi.ini")],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # The worker has loaded the app (a SIGTERM while it loads may not be acted on).
        wait_until(lambda: "WSGI app 0 (mountpoint='') ready" in log.read_text(), "app loaded")
        response = requests.get(f"http://127.0.0.1:{port}/api", timeout=10)
        assert response.status_code == 200, log.read_text()[-2000:]
        assert "Error:" not in log.read_text()
    finally:
        stop_process(process, timeout=40)


# --- make run ----------------------------------------------------------------------------


def make_run(tmp_path: Path, port: int, **variables: str) -> tuple[list[str], dict[str, str]]:
    """`make run` with this virtualenv, which it must not rebuild."""
    env = environment(tmp_path, **variables)
    env.pop("CONDUIT_ENV")  # make run sets development itself
    # As typed in a shell, also when the tests themselves run under `make test`: a
    # sub-make would call itself make[1] and inherit the outer make's flags.
    for variable in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS"):
        env.pop(variable, None)
    return [
        "make", "--no-print-directory", f"VENV={VENV}", f"--old-file={VENV}/.runtime",
        f"PORT={port}", "run",
    ], env  # fmt: skip


def make_error(result) -> list[str]:
    """stderr without make's own last line (`make: *** [Makefile:N: run] Error 1`)."""
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("make: *** [Makefile:"), lines
    assert lines[-1].endswith("Error 1"), lines
    return lines[:-1]


@pytest.mark.parametrize("case", ["not-a-url", "unsupported-database", "bad-cors-origin"])
def test_make_run_prints_the_message(tmp_path, case):
    variables, message = SETTINGS_ERRORS[case]
    args, env = make_run(tmp_path, free_port(), **variables)
    result = run(args, env)
    assert result.returncode != 0
    error = make_error(result)
    assert len(error) == 1, result.stderr
    assert error[0].startswith(message), result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_make_run_names_an_unreachable_database(tmp_path):
    args, env = make_run(tmp_path, free_port(), DATABASE_URL=NOTHING_LISTENS)
    result = run(args, env)
    assert result.returncode != 0
    error = make_error(result)
    assert len(error) == 4, result.stderr
    assert error[0].startswith("Error: cannot connect to DATABASE_URL's")
    assert "Traceback" not in result.stdout + result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def test_make_run_names_a_port_in_use_and_how_to_choose_another(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        args, env = make_run(tmp_path, port)
        result = run(args, env)
    assert make_error(result) == [
        f"make: port {port} on 127.0.0.1 is in use by another program; stop it, or choose "
        f"another port: make run PORT={port + 1}"
    ]
    assert not (tmp_path / "conduit.sqlite").exists()  # stopped before migrating


def test_make_run_names_the_database_and_serves_the_address_it_prints(tmp_path):
    port = free_port()
    args, env = make_run(tmp_path, port)
    log = tmp_path / "make-run.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # make and the server it starts, stopped together
            # As from a terminal: a runner that started this run in the background (no
            # job control) passes SIGINT down ignored, and Ctrl-C would do nothing.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
    try:
        address = f"http://127.0.0.1:{port}/api"
        wait_until(lambda: f"serving on {address}" in log.read_text(), "make run serving", 60)
        wait_until(lambda: requests.get(address, timeout=2).ok, f"{address} answering", 30)
        index = requests.get(address, timeout=5).json()
        assert "GET /api/articles" in index["endpoints"]
        output = log.read_text()
        assert f"Migrating the database of DATABASE_URL: SQLite {tmp_path / 'conduit.sqlite'}" in (
            output
        )
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as the line says
        process.wait(timeout=30)
