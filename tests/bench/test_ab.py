"""The served A/B (python -m bench.ab): its command line, the servers' environments, the
figures it prints and when it fails; then one short real run (two uWSGI servers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import ab, cpu
from bench.scenarios import Fixtures, scenarios
from bench.server import REPO, server_env
from bench.wrk import WrkResult
from tests.support import ROOT, require_program, uwsgi_binary


def refused(argv: list[str], capsys) -> str:
    """The one-line error of a command line that parse_args refuses with status 2."""
    with pytest.raises(SystemExit) as exit_info:
        ab.parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


# --- the command line ----------------------------------------------------------------


def test_defaults_are_five_alternated_rounds_of_three_seconds_on_the_same_code():
    args = ab.parse_args(["/api/tags"])
    assert (args.rounds, args.duration, args.threads, args.connections) == (5, 3, 2, 16)
    a, b = ab.variants(args)
    assert (a.name, b.name) == ("A", "B")
    assert a.code == b.code == REPO
    assert a.uwsgi_ini == b.uwsgi_ini == REPO / "docker" / "uwsgi.ini"
    assert a.env == b.env == {}


def test_a_variant_takes_variables_a_configuration_and_another_checkout(tmp_path):
    (tmp_path / "conduit").mkdir()
    (tmp_path / "conduit" / "__init__.py").write_text("")
    ini = tmp_path / "other.ini"
    ini.write_text("[uwsgi]\n")
    args = ab.parse_args(
        [
            *("article", "--b-env", "LOG_LEVEL=WARNING", "--b-env", "X=a=b"),
            *("--b-code", str(tmp_path), "--a-ini", str(ini)),
        ]
    )
    a, b = ab.variants(args)
    assert b.env == {"LOG_LEVEL": "WARNING", "X": "a=b"}  # the value keeps its own "="
    assert b.code == tmp_path.resolve()
    assert b.uwsgi_ini == tmp_path.resolve() / "docker" / "uwsgi.ini"  # its own, by default
    assert a.uwsgi_ini == ini.resolve()
    assert a.code == REPO


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["articels"], "unknown scenario 'articels'"),
        (["minimal"], "unknown scenario 'minimal'"),  # not the API's server
        (["/x", "--b-env", "LOG_LEVEL"], "expected VAR=VALUE, got 'LOG_LEVEL'"),
        (["/x", "--b-env", "=1"], "expected VAR=VALUE, got '=1'"),
        (["/x", "--a-env", "LOG LEVEL=1"], "expected VAR=VALUE"),
        (["/x", "--b-env", "PORT=1"], "PORT is set by the tool for each server"),
        (["/x", "--b-env", "PYTHONPATH=/tmp"], "PYTHONPATH is set by the tool"),
        (["/x", "--b-ini", "/no/such.ini"], "no such file: /no/such.ini"),
        (["/x", "--b-code", "/"], "/ holds no conduit package"),
        (["/x", "--rounds", "0"], "--rounds must be between 1 and 50"),
        (["/x", "--rounds", "51"], "--rounds must be between 1 and 50"),
        (["/x", "--duration", "0"], "--duration must be between 1 and 60"),
        (["/x", "--warm-up", "-1"], "--warm-up must be between 0 and 60"),
        (["/x", "--threads", "4", "--connections", "2"], "--connections must be at least"),
        (["/x", "--auth", "--token", "t"], "not allowed with argument"),
    ],
)
def test_bad_input_gets_one_line_and_status_2(argv, message, capsys):
    line = refused(argv, capsys)
    assert line.startswith("python -m bench.ab: error: ")
    assert message in line


def test_every_scenario_of_the_apis_server_can_be_named():
    fixtures = Fixtures("a@example.com", 3, "tag", "slug", 2)
    api = [s.name for s in scenarios(fixtures) if s.server == "api"]
    assert api == ab.SCENARIOS
    for name in api:
        assert ab.parse_args([name]).target == name
    scenario = ab.target_scenario("feed", fixtures)
    assert (scenario.path, scenario.auth) == ("/api/articles/feed?limit=20", True)
    path = ab.target_scenario("/api/tags", None)
    assert (path.method, path.path, path.script, path.auth) == (
        "GET",
        "/api/tags",
        "get.lua",
        False,
    )


# --- the servers' environments -------------------------------------------------------


def test_each_server_gets_the_shared_settings_its_overrides_and_its_own_port_files_and_code(
    tmp_path,
):
    base = {"CONDUIT_SECRET": "one-secret", "LOG_LEVEL": "INFO", "PORT": "0"}
    variant = ab.Variant("B", env={"LOG_LEVEL": "WARNING"}, code=tmp_path)
    env = variant.server_env(base, 8123, tmp_path / "metrics-B")
    assert env == {
        "CONDUIT_SECRET": "one-secret",  # both servers accept the same token
        "LOG_LEVEL": "WARNING",
        "PORT": "8123",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics-B"),
        "PYTHONPATH": str(tmp_path),  # before the virtualenv's editable install
    }
    assert base["LOG_LEVEL"] == "INFO"  # not changed for the other server
    assert ab.Variant("A").describe() == "as `make bench` serves"
    assert variant.describe() == f"LOG_LEVEL=WARNING, code {tmp_path}"


# --- the figures ---------------------------------------------------------------------


def sample(
    requests: int, cpu_s: float, non_2xx: int = 0, db_cpu_s: float | None = None, **errors: int
) -> ab.Sample:
    socket_errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0, **errors}
    return ab.Sample(requests, 2.0, cpu_s, non_2xx, socket_errors, db_cpu_s)


def test_the_summary_is_the_median_and_min_of_cpu_per_request_and_the_median_rate():
    runs = [sample(1000, 1.0), sample(2000, 1.0), sample(1000, 0.8), sample(4000, 2.8)]
    summary = ab.summarise("A", runs)
    # 1.0, 0.5, 0.8, 0.7 ms per request; 500, 1000, 500, 2000 requests/s
    assert summary.cpu_ms_median == pytest.approx(0.75)
    assert summary.cpu_ms_min == pytest.approx(0.5)
    assert summary.requests_per_s_median == pytest.approx(750)
    assert (summary.runs, summary.requests, summary.non_2xx) == (4, 8000, 0)
    assert summary.failures == []


def test_the_table_gives_b_over_a():
    a = ab.summarise("A", [sample(1000, 1.0)])
    b = ab.summarise("B", [sample(1250, 1.0)])
    text = ab.table(a, b)
    rows = {line.split()[0]: line.split() for line in text.splitlines()[1:]}
    assert rows["A"][:4] == ["A", "1.000", "(1.000)", "500"]
    assert rows["B"][:4] == ["B", "0.800", "(0.800)", "625"]
    assert rows["B/A"] == ["B/A", "0.800", "1.250"]


def test_the_databases_cpu_is_summarised_and_compared_when_both_variants_have_it():
    a = ab.summarise("A", [sample(1000, 1.0, db_cpu_s=0.4), sample(1000, 1.0, db_cpu_s=0.2)])
    b = ab.summarise("B", [sample(1000, 0.9, db_cpu_s=0.15)])
    assert a.db_ms_median == pytest.approx(0.3)
    lines = ab.table(a, b).splitlines()
    assert "PostgreSQL ms median" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    assert rows["A"][:4] == ["A", "1.000", "(1.000)", "0.300"]
    assert rows["B"][:4] == ["B", "0.900", "(0.900)", "0.150"]
    assert rows["B/A"][:3] == ["B/A", "0.900", "0.500"]
    assert lines[4] == "uWSGI + PostgreSQL ms/request medians: A 1.300, B 1.050, B/A 0.808"
    # A variant measured without the database's figures leaves the column out.
    unknown = ab.summarise("B", [sample(1000, 0.9), sample(1000, 0.9, db_cpu_s=0.1)])
    assert unknown.db_ms_median is None
    assert "PostgreSQL" not in ab.table(a, unknown)


def test_a_variant_with_errors_is_named_and_fails_the_run(tmp_path):
    clean = ab.summarise("A", [sample(1000, 1.0, read=3)])  # closed kept-alive connections
    broken = ab.summarise("B", [sample(1000, 1.0, non_2xx=7), sample(900, 1.0, timeout=2)])
    refusing = ab.summarise("C", [sample(10, 1.0, connect=5)])
    assert clean.failures == []
    assert broken.failures == ["7 non-2xx responses", "2 timeout errors"]
    assert ab.errors([clean], tmp_path) == []
    complaints = ab.errors([clean, broken, refusing], tmp_path)
    assert complaints == [
        f"ab: ERROR: B answered 7 non-2xx responses, 2 timeout errors: its figures measure "
        f"errors, not the lever (see {tmp_path / 'uwsgi-B.log'})",
        f"ab: ERROR: C answered 5 connect errors: its figures measure errors, not the lever "
        f"(see {tmp_path / 'uwsgi-C.log'})",
    ]


def test_no_server_always_runs_first():
    variants = [ab.Variant("A"), ab.Variant("B")]
    names = [[v.name for v in ab.order(index, variants)] for index in range(4)]
    assert names == [["A", "B"], ["B", "A"], ["A", "B"], ["B", "A"]]


def test_a_run_is_charged_the_cpu_the_server_spent_during_it(monkeypatch):
    readings = iter([10.0, 10.9])  # the server's process tree, before and after
    server = SimpleNamespace(process=SimpleNamespace(pid=4242))
    result = WrkResult(1800, 3.0, 0, {"connect": 0, "read": 0, "write": 0, "timeout": 0}, {})
    seen = []
    monkeypatch.setattr(cpu, "tree_seconds", lambda pid: seen.append(pid) or next(readings))
    found = ab.measure(server, lambda: result)
    assert seen == [4242, 4242]
    assert found.cpu_ms_per_request == pytest.approx(0.5)
    assert found.requests_per_s == pytest.approx(600)
    assert found.db_ms_per_request is None


def test_a_run_is_charged_the_cpu_its_database_backends_spent_during_it(monkeypatch):
    readings = iter([10.0, 10.9])
    # Backend 11 ran throughout, 12 started during the run (all of it counts), 13 ended.
    listed = iter([[11, 13], [11, 12]])
    ticks = iter([{11: 500, 13: 70}, {11: 530, 12: 6}])
    server = SimpleNamespace(process=SimpleNamespace(pid=4242))
    result = WrkResult(1800, 3.0, 0, {"connect": 0, "read": 0, "write": 0, "timeout": 0}, {})
    monkeypatch.setattr(cpu, "tree_seconds", lambda pid: next(readings))
    monkeypatch.setattr(
        cpu,
        "processes_ticks",
        lambda pids: {pid: used for pid, used in next(ticks).items() if pid in pids},
    )
    found = ab.measure(server, lambda: result, backends=lambda: next(listed))
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    assert found.db_cpu_s == pytest.approx(36 / ticks_per_second)  # 30 + 6 ticks
    assert found.db_ms_per_request == pytest.approx(1000 * 36 / ticks_per_second / 1800)


# --- a real run ----------------------------------------------------------------------


def test_two_servers_alternate_on_one_database(tmp_path, capsys):
    """About 15 s: a migrated SQLite database, two uWSGI servers, 2 rounds of 1 s each."""
    require_program("wrk")
    uwsgi = Path(uwsgi_binary())
    database = f"sqlite:///{tmp_path / 'ab.sqlite'}"
    subprocess.run(
        [sys.executable, "-m", "flask", "db", "upgrade"],
        cwd=ROOT,
        env=server_env(database, 0, tmp_path),
        check=True,
        capture_output=True,
        timeout=120,
    )
    code = ab.main(
        [
            *("/api/articles?limit=20", "--b-env", "LOG_LEVEL=WARNING"),
            *("--rounds", "2", "--duration", "1", "--warm-up", "1", "--connections", "4"),
            *("--database-url", database, "--server-venv", str(uwsgi.parent.parent)),
            *("--logs", str(tmp_path / "logs")),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    runs = [line for line in out.splitlines() if line.startswith("ab: round ")]
    assert [line.split(":")[1].split()[-1] for line in runs] == ["A", "B", "B", "A"]
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:2] in {"A ", "B "}}
    rows.update(
        (line.split()[0], line.split()) for line in out.splitlines() if line.startswith("B/A")
    )
    for name in ("A", "B"):
        assert float(rows[name][1]) > 0  # CPU ms per request of that server's processes
        assert rows[name][5] == "0"  # non-2xx
    assert "B/A" in rows
    assert "LOG_LEVEL=WARNING" in out
    # Both servers were stopped, whatever happened: their logs end with the master's exit.
    for name in ("A", "B"):
        log = (tmp_path / "logs" / f"uwsgi-{name}.log").read_text()
        assert "goodbye to uWSGI" in log, log[-2000:]
