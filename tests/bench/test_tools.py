"""The benchmark's helpers: /proc parsing, profiles, the production settings it uses."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import BenchError, cpu, driver, pyspy
from bench.server import Server, deployment_settings, image_settings, server_env


def test_proc_stat_fields_are_read_after_the_command_name():
    # A process name may hold spaces and parentheses.
    line = "4242 (conduit uWSGI (worker) 1) S 4200 " + " ".join(["0"] * 9) + " 70 30 5 6 0 0"
    assert cpu.parse_stat(line) == (4200, 100, 11)


def test_the_cpu_time_of_this_process_is_found_and_grows():
    before = cpu.tree_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert cpu.tree_seconds(os.getpid()) > before
    assert cpu.parent_of(os.getpid()) == os.getppid()


def test_a_missing_process_is_an_error():
    with pytest.raises(ProcessLookupError):
        cpu.tree_seconds(2**22 + 1)  # above the kernel's pid limit


def test_profile_summary_groups_lines_of_a_function_and_skips_process_frames():
    raw = "\n".join(
        [
            'process 31165:"python3 /opt/venv/bin/uwsgi";app (a.py:10);query (q.py:5) 6',
            "thread (0x7F3A);app (a.py:12);render (r.py:7) 3",
            "app (a.py:12) 1",
            "garbage line",
        ]
    )
    summary = {name: (inclusive, leaf) for name, inclusive, leaf in pyspy.summarise_collapsed(raw)}
    assert summary["app (a.py)"] == (1.0, 0.1)
    assert summary["query (q.py)"] == (0.6, 0.6)
    assert summary["render (r.py)"] == (0.3, 0.3)
    assert not any(name.startswith(("process", "thread")) for name in summary)


UWSGI_LOG = """\
spawned uWSGI master process (pid: 100)
spawned uWSGI worker 1 (pid: 101, cores: 4)
spawned uWSGI worker 2 (pid: 102, cores: 4)
spawned uWSGI http 1 (pid: 103)
worker 1 killed successfully (pid: 101)
Respawned uWSGI worker 1 (new pid: 104)
"""


def test_the_workers_are_the_masters_children_but_its_router(monkeypatch, tmp_path):
    # pyuwsgi cannot name its processes (all are `python3 .../uwsgi`): the workers are
    # found in the process tree, the router by the pid uWSGI logged when it spawned it.
    log = tmp_path / "uwsgi.log"
    log.write_text(UWSGI_LOG)
    server = Server(Path("uwsgi"), Path("uwsgi.ini"), {}, 8000, log)
    server.process = SimpleNamespace(pid=100)
    monkeypatch.setattr(cpu, "children", lambda pid: {100: [102, 103, 104]}[pid])
    assert server.workers() == [102, 104]  # a worker respawned since is found too


FAKE_PY_SPY = """\
#!/bin/sh
# Writes a raw profile naming the pid it was asked to record.
pid=""; output=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pid) pid=$2; shift ;;
    --output) output=$2; shift ;;
    --subprocesses) echo "--subprocesses samples the master and the router" >&2; exit 2 ;;
  esac
  shift
done
echo "app (a.py:1);worker_$pid (w.py:2) 5" > "$output"
"""


def test_each_worker_is_recorded_on_its_own_and_their_samples_add_up(tmp_path, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "py-spy").write_text(FAKE_PY_SPY)
    (bin_dir / "py-spy").chmod(0o755)
    profiler = pyspy.Profiler(bin_dir, tmp_path, "raw")
    asked = []
    profiler.attach(lambda: asked.append(1) or [201, 202], {"articles"})
    assert profiler.start("tags", 1) is None  # not a profiled scenario
    assert asked == []
    recording = profiler.start("articles", 1)
    profiler.finish(recording)
    assert asked == [1]  # the workers as they are when the recording starts
    assert profiler.outputs["articles"] == [
        tmp_path / "profile-articles-201.txt",
        tmp_path / "profile-articles-202.txt",
    ]
    profiler.summarise()
    out = capsys.readouterr().out
    assert "100.0%   0.0%  app (a.py)" in out
    assert " 50.0%  50.0%  worker_201 (w.py)" in out
    assert " 50.0%  50.0%  worker_202 (w.py)" in out


def test_a_server_without_workers_cannot_be_profiled(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "py-spy").write_text(FAKE_PY_SPY)
    (bin_dir / "py-spy").chmod(0o755)
    profiler = pyspy.Profiler(bin_dir, tmp_path, "raw")
    profiler.attach(list, {"articles"})
    with pytest.raises(BenchError, match="no uWSGI worker to profile during articles"):
        profiler.start("articles", 1)


def test_the_server_gets_the_deployments_settings_and_the_callers_overrides(monkeypatch, tmp_path):
    settings = deployment_settings()
    assert settings["CONDUIT_ENV"] == "production"
    monkeypatch.setenv("TAGS_CACHE_SECONDS", "7")
    monkeypatch.setenv("CONDUIT_ENV", "development")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    env = server_env("postgresql+psycopg://u:p@127.0.0.1/db", 9999, tmp_path)
    assert env["TAGS_CACHE_SECONDS"] == "7"
    assert env["CONDUIT_ENV"] == "production"  # whatever the caller's shell says
    assert env["PORT"] == "9999"
    assert env["CONDUIT_SQL_STATEMENTS_HEADER"] == "1"
    assert len(env["CONDUIT_SECRET"]) >= 32
    assert (tmp_path / "metrics").is_dir()
    for name, value in settings.items():
        if name not in {"PORT", "CONDUIT_ENV"} and name not in os.environ:
            assert env[name] == value


def test_the_server_gets_the_images_interpreter_settings(monkeypatch, tmp_path):
    monkeypatch.delenv("PYTHONOPTIMIZE", raising=False)
    env = server_env("postgresql+psycopg://u:p@127.0.0.1/db", 9999, tmp_path)
    assert env["PYTHONOPTIMIZE"] == image_settings()["PYTHONOPTIMIZE"]
    monkeypatch.setenv("PYTHONOPTIMIZE", "0")  # the caller's override wins
    env = server_env("postgresql+psycopg://u:p@127.0.0.1/db", 9999, tmp_path)
    assert env["PYTHONOPTIMIZE"] == "0"


def test_only_the_final_stages_interpreter_settings_are_taken(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM base AS build\n"
        "ENV PYTHONOPTIMIZE=1 MALLOC_ARENA_MAX=8\n"
        "FROM base\n"
        "ENV PATH=/opt/venv/bin:$PATH \\\n"
        "    PYTHONDONTWRITEBYTECODE=1 \\\n"
        "    PYTHONOPTIMIZE=2 \\\n"
        "    CONDUIT_ENV=production\n"
    )
    assert image_settings(dockerfile) == {"PYTHONOPTIMIZE": "2"}


def test_an_unreadable_dockerfile_stops_the_run(tmp_path):
    with pytest.raises(BenchError, match="cannot read the image's settings"):
        image_settings(tmp_path / "missing")


def test_unreadable_production_settings_stop_the_run(tmp_path):
    broken = tmp_path / "kustomization.yaml"
    broken.write_text("configMapGenerator: []\n")
    with pytest.raises(BenchError, match="cannot read the production settings"):
        deployment_settings(broken)


@pytest.mark.parametrize("args", [["--duration", "0"], ["--connections", "0"], ["--warm-up", "-1"]])
def test_nonsense_load_options_are_refused(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        driver.parse_args(args)
    assert exit_info.value.code == 2
    assert "must" in capsys.readouterr().err
