"""The pinned-download of upstream test inputs, against a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import upstream
from tests.support import ROOT, free_port

BODY = b'{"info": {"name": "Conduit"}}\n'
DIGEST = hashlib.sha256(BODY).hexdigest()


class _Files(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/api/suite.json":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        else:
            self.send_error(404)

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/api/"
    httpd.shutdown()


def pin(base_url: str, name: str = "suite.json", digest: str = DIGEST) -> upstream.Pin:
    return upstream.Pin("realworld", name, base_url + name, digest, "REALWORLD_DIR")


def test_downloads_into_the_cache_and_reuses_it(server: str, tmp_path: Path) -> None:
    got = upstream.resolve(pin(server), environ={}, cache=tmp_path)
    assert got == tmp_path / "realworld" / "suite.json"
    assert got.read_bytes() == BODY
    # A second use reads the cache: it works with the server gone.
    assert upstream.resolve(pin("http://127.0.0.1:9/"), environ={}, cache=tmp_path) == got


def test_wrong_checksum_is_one_line_and_caches_nothing(server: str, tmp_path: Path) -> None:
    with pytest.raises(upstream.UpstreamError) as failure:
        upstream.resolve(pin(server, digest="0" * 64), environ={}, cache=tmp_path)
    message = str(failure.value)
    assert "\n" not in message
    assert f"has SHA-256 {DIGEST}, expected {'0' * 64}" in message
    assert list(tmp_path.rglob("*")) == [tmp_path / "realworld"]


def test_unreachable_url_names_the_override_variable(tmp_path: Path) -> None:
    with pytest.raises(upstream.UpstreamError) as failure:
        upstream.resolve(pin(f"http://127.0.0.1:{free_port()}/api/"), environ={}, cache=tmp_path)
    message = str(failure.value)
    assert message.startswith("cannot download realworld/suite.json from http://127.0.0.1:")
    assert "set REALWORLD_DIR" in message
    assert "\n" not in message


def test_missing_file_on_the_server_is_a_clear_error(server: str, tmp_path: Path) -> None:
    with pytest.raises(upstream.UpstreamError, match=r"cannot download realworld/other\.json"):
        upstream.resolve(pin(server, name="other.json"), environ={}, cache=tmp_path)


def test_override_folder_is_used_and_checked(tmp_path: Path) -> None:
    (tmp_path / "suite.json").write_bytes(BODY)
    unreachable = pin(f"http://127.0.0.1:{free_port()}/")
    assert upstream.resolve(unreachable, environ={"REALWORLD_DIR": str(tmp_path)}) == (
        tmp_path / "suite.json"
    )
    (tmp_path / "suite.json").write_bytes(BODY + b" ")
    with pytest.raises(upstream.UpstreamError, match="expected " + DIGEST):
        upstream.resolve(unreachable, environ={"REALWORLD_DIR": str(tmp_path)})
    with pytest.raises(upstream.UpstreamError, match=r"has no suite\.json"):
        upstream.resolve(unreachable, environ={"REALWORLD_DIR": str(tmp_path / "nowhere")})


def test_a_corrupted_cache_is_not_trusted(server: str, tmp_path: Path) -> None:
    cached = tmp_path / "realworld" / "suite.json"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"tampered")
    with pytest.raises(upstream.UpstreamError, match="has SHA-256"):
        upstream.resolve(pin(server), environ={}, cache=tmp_path)


def test_every_pin_in_the_manifest_is_well_formed() -> None:
    pins = upstream.load_pins()
    assert pins, "tests/upstream.toml lists no groups"
    for files in pins.values():
        for item in files.values():
            assert item.url.startswith("https://"), item
            assert len(item.sha256) == 64, item
            int(item.sha256, 16)


def test_cli_reports_an_unknown_group_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert upstream.main(["fetch", "nonesuch"]) == 1
    assert capsys.readouterr().err.strip().startswith("upstream: unknown group 'nonesuch'")


def run_without_the_spec(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    """The fuzz tests (which need the pinned spec) beside others, with no copy of it."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-q",
         "tests/api/test_spec_fuzz.py", "tests/api/test_health.py"],
        cwd=ROOT, env={**os.environ, "REALWORLD_DIR": str(tmp_path), "CI": ci},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_a_missing_input_skips_only_the_tests_that_need_it(tmp_path: Path) -> None:
    result = run_without_the_spec(tmp_path, ci="")
    assert result.returncode == 0, result.stdout
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed, 1 skipped in .*", last), last
    assert f"REALWORLD_DIR={tmp_path} has no openapi.yml" in result.stdout


def test_in_ci_a_missing_input_fails_the_tests_that_need_it(tmp_path: Path) -> None:
    result = run_without_the_spec(tmp_path, ci="true")
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"1 failed, \d+ passed in .*", last), last
    assert "(CI=true: nothing is skipped)" in result.stdout


def test_the_cache_is_per_user_and_outside_the_clone(tmp_path: Path) -> None:
    home_cache = upstream._cache_folder({})
    assert home_cache == Path.home() / ".cache" / "conduit" / "upstream"
    assert upstream.ROOT not in home_cache.parents, "a fresh clone would start empty"
    xdg = upstream._cache_folder({"XDG_CACHE_HOME": str(tmp_path)})
    assert xdg == tmp_path / "conduit" / "upstream"
    chosen = upstream._cache_folder(
        {"XDG_CACHE_HOME": str(tmp_path), "CONDUIT_UPSTREAM_CACHE": str(tmp_path / "mine")}
    )
    assert chosen == tmp_path / "mine"
