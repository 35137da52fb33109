"""The image's server: nginx in front of uWSGI, started and stopped in order.

    python3 serve.py           serve (the image's command)
    python3 serve.py --check   render nginx's configuration and test it (`nginx -t`)

nginx owns PORT (default 8000) and reads every request whole before it hands it to
uWSGI over a Unix socket; uWSGI (uwsgi.ini beside this file) runs the app and the
liveness port (HEALTH_PORT). Why: docs/decisions/0008-serving-hostile-clients.md.

A stop (SIGTERM from `docker stop` or Kubernetes, SIGINT) stops nginx first, gracefully:
it closes its port, so a new connection is refused, and finishes the requests it holds,
which uWSGI is still there to answer. Then uWSGI stops gracefully (uwsgi.ini) and this
process exits with uWSGI's status. If either server exits on its own, the other is
stopped and the exit status is 1, so that the container is restarted.

Environment: PORT, HEALTH_PORT and every uWSGI setting as uwsgi.ini documents them;
MAX_CONTENT_LENGTH (the app's body bound, which nginx enforces too); NGINX_PROGRAM (the nginx
program, default `nginx` on PATH).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
# uWSGI waits up to 25 s for its workers (worker-reload-mercy); nginx for its requests.
STOP_BOUND_S = 30
START_BOUND_S = 60


def log(message: str) -> None:
    # Beside uWSGI's and the app's logs (stdout); errors that stop a start go to stderr.
    print(f"serve: {message}", flush=True)


class Failure(Exception):
    """A one-line reason to exit non-zero."""


def setting(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise Failure(f"{name}={raw!r} is not a whole number") from None
    if not minimum <= value <= maximum:
        raise Failure(f"{name}={value} is outside {minimum}..{maximum}")
    return value


def render(runtime: Path) -> Path:
    """nginx.conf with this environment's values, in the runtime directory."""
    values = {
        "PORT": setting("PORT", 8000, 1, 65535),
        "MAX_CONTENT_LENGTH": setting("MAX_CONTENT_LENGTH", 1024 * 1024, 1024, 2**31 - 1),
        "UPSTREAM_SOCKET": runtime / "uwsgi.sock",
    }
    # safe_substitute leaves nginx's own $variables alone; a ${NAME} left over is ours.
    text = Template((HERE / "nginx.conf").read_text()).safe_substitute(values)
    leftover = sorted(set(re.findall(r"\$\{(\w+)\}", text)))
    if leftover:
        raise Failure(f"nginx.conf names unknown settings: {', '.join(leftover)}")
    config = runtime / "nginx.conf"
    config.write_text(text)
    return config


def nginx_command(runtime: Path, config: Path, *extra: str) -> list[str]:
    program = os.environ.get("NGINX_PROGRAM", "nginx")
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if not found:
        raise Failure(f"{program}: not found (install nginx, or set NGINX_PROGRAM to its path)")
    # Started as root, nginx would run its worker as `nobody`, which cannot enter the
    # private runtime directory: it runs as the user that started it, as uWSGI does.
    # (The image runs as 10001, and Kubernetes refuses root: runAsNonRoot.)
    directives = "daemon off; user root;" if os.geteuid() == 0 else "daemon off;"
    # -e: errors go to stderr from the start, before the configuration is read.
    command = [found, "-p", f"{runtime}/", "-c", str(config), "-e", "stderr"]
    return [*command, "-g", directives, *extra]


def uwsgi_command() -> list[str]:
    # The uWSGI of this Python's virtualenv (the image's /opt/venv), else PATH's.
    beside = Path(sys.executable).parent / "uwsgi"
    program = str(beside) if beside.is_file() else shutil.which("uwsgi")
    if not program:
        raise Failure("uwsgi: not found beside this Python or on PATH")
    return [program, "--ini", str(HERE / "uwsgi.ini")]


class Stop(Exception):
    """A stop signal arrived."""


def on_stop(signum: int, _frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def ignore_stop_signals() -> None:
    # Once a stop has begun, another signal must not interrupt it.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)


def wait_any(children: dict[int, str], until: float | None = None) -> tuple[int, int] | None:
    """(pid, exit status) of the first of `children` to end, reaping any other child
    (as process 1 a container's orphans are ours); None at `until`."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG if until is not None else 0)
        except ChildProcessError:
            return None
        if pid in children:
            return pid, os.waitstatus_to_exitcode(status)
        if pid == 0:
            if time.monotonic() >= until:
                return None
            time.sleep(0.05)


def stop(pid: int, name: str, signum: int, children: dict[int, str]) -> int | None:
    """Signal one child and wait for it (bounded); its exit status, or None if killed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
    deadline = time.monotonic() + STOP_BOUND_S
    while (ended := wait_any(children, deadline)) is not None:
        children.pop(ended[0])
        if ended[0] == pid:
            return ended[1]
    log(f"{name} did not stop within {STOP_BOUND_S} s; killing it")
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    children.pop(pid, None)
    return None


def wait_for_socket(path: Path, uwsgi: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_BOUND_S
    while not path.exists():
        if uwsgi.poll() is not None:
            raise Failure(f"uWSGI exited with status {uwsgi.returncode} before it served")
        if time.monotonic() > deadline:
            raise Failure(f"uWSGI made no socket within {START_BOUND_S} s")
        time.sleep(0.05)


def serve() -> int:
    runtime = Path(tempfile.mkdtemp(prefix="conduit-serve-"))
    children: dict[int, str] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_stop)
    try:
        config = render(runtime)
        nginx = nginx_command(runtime, config)
        # Each server in a process group of its own: a terminal's Ctrl-C reaches this
        # process only, which stops them in order.
        uwsgi = subprocess.Popen(  # noqa: S603 - our own command line
            uwsgi_command(),
            env={**os.environ, "UPSTREAM_SOCKET": str(runtime / "uwsgi.sock")},
            process_group=0,
        )
        children[uwsgi.pid] = "uWSGI"
        # nginx listens only once uWSGI's socket exists: until then a client is refused
        # rather than answered 502.
        wait_for_socket(runtime / "uwsgi.sock", uwsgi)
        # nginx takes listening sockets named in NGINX (its binary upgrade): never ours.
        front_env = {k: v for k, v in os.environ.items() if k != "NGINX"}
        # If nginx's master dies, its worker (which keeps the port open) is ended with
        # it, through the group.
        front = subprocess.Popen(nginx, env=front_env, process_group=0)  # noqa: S603
        children[front.pid] = "nginx"
        ended = wait_any(children)
        if ended is None:
            raise Failure("no server is running")
        name = children.pop(ended[0])
        ignore_stop_signals()
        log(f"{name} exited with status {ended[1]}; stopping the other")
        if name == "nginx":
            with contextlib.suppress(ProcessLookupError):
                os.killpg(front.pid, signal.SIGKILL)
            stop(uwsgi.pid, "uWSGI", signal.SIGTERM, children)
        else:
            stop(front.pid, "nginx", signal.SIGQUIT, children)
        return 1
    except Stop as signal_name:
        ignore_stop_signals()
        log(f"{signal_name}: stopping nginx, then uWSGI")
        status = 0
        for pid, name in list(children.items()):
            if name == "nginx":
                stop(pid, name, signal.SIGQUIT, children)
        for pid, name in list(children.items()):
            if name == "uWSGI":
                status = stop(pid, name, signal.SIGTERM, children)
        return 1 if status is None else status
    finally:
        for pid in children:  # only after a failure to start
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(runtime, ignore_errors=True)


def check() -> int:
    with tempfile.TemporaryDirectory(prefix="conduit-serve-") as runtime:
        config = render(Path(runtime))
        command = nginx_command(Path(runtime), config, "-t", "-q")
        return subprocess.run(command, check=False).returncode  # noqa: S603


def main(argv: list[str]) -> int:
    if argv not in ([], ["--check"]):
        print("usage: serve.py [--check]", file=sys.stderr)
        return 2
    try:
        return check() if argv else serve()
    except Failure as failure:
        print(f"serve: {failure}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
