"""What prod's synchronous standby does to writes, on two real local PostgreSQL servers.

prod's Cluster asks for `synchronous: {method: any, number: 1, dataDurability:
required}`; CloudNativePG turns that into `synchronous_standby_names = 'ANY 1 (...)'`
(replication.md, "Quorum-based Synchronous Replication"). Here one primary and one
streaming standby are set up the same way, then:

* a commit is not acknowledged while no synchronous standby is connected, and is
  acknowledged once one is back (nothing is lost, writes wait);
* pgbench measures the commit latency with and without waiting for the standby. It is
  printed, not asserted: on one machine it shows the cost of the extra round trip
  without the network, the floor of what prod pays.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from tests.drill.local import (
    LocalPostgres,
    as_server_user,
    give_to_server_user,
    missing,
    run,
    scratch_directory,
)
from tests.support import wait_until

STANDBY_NAME = "conduit-db-2"
PGBENCH_SECONDS = 15
PGBENCH_CLIENTS = 4


@pytest.fixture
def pgbench_bin(postgres_bin: Path) -> Path:
    if not (postgres_bin / "pgbench").is_file():
        missing(f"pgbench is not in {postgres_bin}")
    return postgres_bin


def pgbench_latency_ms(server: LocalPostgres, synchronous_commit: str) -> float:
    output = run(
        [
            str(server.bindir / "pgbench"),
            *server.client_args(),
            "-N",
            "-c",
            str(PGBENCH_CLIENTS),
            "-j",
            "2",
            "-T",
            str(PGBENCH_SECONDS),
            "postgres",
        ],
        env={
            "PGPASSWORD": server.password,
            "PGOPTIONS": f"-c synchronous_commit={synchronous_commit}",
        },
    )
    match = re.search(r"latency average = ([\d.]+) ms", output)
    assert match, output
    return float(match[1])


def test_writes_wait_for_the_synchronous_standby(pgbench_bin: Path, capsys) -> None:
    postgres_bin = pgbench_bin
    with scratch_directory() as root:
        primary = LocalPostgres(root / "primary", bindir=postgres_bin)
        standby = LocalPostgres(root / "standby", password=primary.password, bindir=postgres_bin)
        primary.initdb(
            {
                "wal_level": "replica",
                "max_wal_senders": "5",
                "synchronous_standby_names": f"'ANY 1 (\"{STANDBY_NAME}\")'",
            }
        )
        try:
            primary.start()
            run(
                as_server_user(
                    [
                        str(postgres_bin / "pg_basebackup"),
                        "-d",
                        f"host=127.0.0.1 port={primary.port} user=postgres "
                        f"password={primary.password}",
                        "-D",
                        str(standby.data),
                        "-X",
                        "stream",
                        "-c",
                        "fast",
                    ]
                )
            )
            standby.configure(
                {
                    "primary_conninfo": (
                        f"'host=127.0.0.1 port={primary.port} user=postgres "
                        f"password={primary.password} application_name={STANDBY_NAME}'"
                    ),
                    "synchronous_standby_names": "''",
                }
            )
            (standby.data / "standby.signal").touch()
            give_to_server_user(standby.data)
            standby.start()
            wait_for_sync_standby(primary)

            with primary.connect() as conn:
                conn.execute("CREATE TABLE drill_writes (id int PRIMARY KEY)")
            run(
                [
                    str(postgres_bin / "pgbench"),
                    "-i",
                    "-s",
                    "1",
                    "-q",
                    *primary.client_args(),
                    "postgres",
                ],
                env={"PGPASSWORD": primary.password},
            )
            synchronous = pgbench_latency_ms(primary, "on")
            local_only = pgbench_latency_ms(primary, "local")

            # The standby goes away: a commit waits instead of being acknowledged.
            standby.stop()
            committed = threading.Event()

            def write() -> None:
                with primary.connect() as conn:
                    conn.execute("INSERT INTO drill_writes VALUES (1)")
                committed.set()

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            waited = not committed.wait(timeout=5)
            with primary.connect() as conn:
                waiting_on = conn.execute(
                    "SELECT wait_event FROM pg_stat_activity WHERE query LIKE 'INSERT INTO drill%'"
                ).fetchone()
            # The standby comes back: the waiting commit is acknowledged.
            resumed_at = time.monotonic()
            standby.start()
            assert committed.wait(timeout=60), (
                "the commit never returned after the standby came back"
            )
            resume_seconds = time.monotonic() - resumed_at
            writer.join(timeout=5)
        finally:
            standby.stop()
            primary.stop()

    with capsys.disabled():
        print(
            f"\nsynchronous standby: pgbench -N, {PGBENCH_CLIENTS} clients, {PGBENCH_SECONDS} s: "
            f"average latency {synchronous:.2f} ms waiting for the standby, "
            f"{local_only:.2f} ms without (same machine, no network)\n"
            f"synchronous standby: with the standby down a commit waited (wait_event "
            f"{waiting_on[0] if waiting_on else None}); acknowledged {resume_seconds:.1f} s "
            f"after the standby was started again"
        )
    assert waited, "a commit was acknowledged with no synchronous standby connected"
    assert waiting_on == ("SyncRep",)


def standby_is_synchronous(primary: LocalPostgres) -> bool:
    with primary.connect() as conn:
        row = conn.execute(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
            (STANDBY_NAME,),
        ).fetchone()
    return bool(row) and row[0] in ("sync", "quorum")


def wait_for_sync_standby(primary: LocalPostgres, timeout: float = 60) -> None:
    wait_until(
        lambda: standby_is_synchronous(primary),
        f"standby {STANDBY_NAME} synchronous",
        timeout,
        detail=lambda: ":\n" + primary.log_tail(),
    )
