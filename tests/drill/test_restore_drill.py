"""Restore drill: point-in-time recovery from Barman Cloud backups, rehearsed for real.

The same tools the Barman Cloud plugin runs in its sidecar (barman-cloud-wal-archive,
barman-cloud-backup, barman-cloud-restore, barman-cloud-wal-restore) against a real
PostgreSQL and a GCS-compatible store (gcp-storage-emulator):

1. the API (the Flask app, served over HTTP) takes writes on PostgreSQL, which
   archives its WAL to the bucket, while a base backup is taken;
2. time T is noted between two acknowledged writes;
3. more writes are made;
4. a fresh data directory is restored to T from the bucket alone and started.

Every write acknowledged before T must be present and none made after T. The
archive_timeout comes from k8s/base/postgres-cluster.yaml, so the delay measured
between the last write and its WAL reaching the bucket is the RPO prod has.

Run with `make restore-drill` (about 2 minutes; most of it is waiting for
archive_timeout).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
import yaml
from werkzeug.serving import make_server

from tests.drill.local import (
    LocalPostgres,
    gcs_emulator,
    give_to_server_user,
    object_sizes,
    run,
    scratch_directory,
)
from tests.drill.restored_overlay import assert_restored_overlay_renders
from tests.support import app_env, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_MANIFEST = ROOT / "k8s" / "base" / "postgres-cluster.yaml"
BUCKET = "conduit-drill"
DESTINATION = f"gs://{BUCKET}/drill"
PROVIDER = ["--cloud-provider", "google-cloud-storage"]
WRITES_BEFORE_BACKUP = 20
WRITES_AFTER_T = 30
APP_ROLE_PASSWORD = "drill-" + secrets.token_hex(8)


def cluster_spec() -> dict:
    return yaml.safe_load(CLUSTER_MANIFEST.read_text())["spec"]


def archive_timeout_seconds(value: str) -> int:
    """A PostgreSQL time setting ("60s", "5min", "1h", bare seconds) in seconds."""
    match = re.fullmatch(r"(\d+)\s*(s|min|h)?", value.strip())
    if not match:
        raise ValueError(f"archive_timeout {value!r} is not in s, min or h")
    return int(match[1]) * {"s": 1, None: 1, "min": 60, "h": 3600}[match[2]]


class Writer:
    """Registers users through the API one at a time and remembers each acknowledgement."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.acknowledged: list[str] = []
        self.lock = threading.Lock()
        self.counter = 0

    def write(self) -> None:
        self.counter += 1
        name = f"drill{self.counter:05d}"
        response = self.session.post(
            f"{self.base_url}/api/users",
            json={
                "user": {
                    "username": name,
                    "email": f"{name}@drill.test",
                    "password": "drill-password-1",
                }
            },
            timeout=10,
        )
        if response.status_code != 201:
            raise AssertionError(f"write {name}: HTTP {response.status_code} {response.text[:200]}")
        with self.lock:
            self.acknowledged.append(name)

    def taken(self) -> list[str]:
        with self.lock:
            names, self.acknowledged = self.acknowledged, []
        return names


class Background:
    """Writes in a thread until stopped: the API keeps taking writes during a backup."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        try:
            while not self.stopping.is_set():
                self.writer.write()
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)
        if self.error:
            raise self.error


@contextmanager
def serve_api(database_url: str) -> Iterator[str]:
    """The Flask app on database_url, migrated, over HTTP on a free port."""
    from flask_migrate import upgrade

    from conduit import create_app
    from conduit.extensions import db

    app = create_app(env=app_env(database_url, LOG_LEVEL="WARNING"))
    with app.app_context():
        upgrade()
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        with app.app_context():
            db.engine.dispose()


def wal_archived(server: LocalPostgres, walfile: str) -> bool:
    with server.connect() as conn:
        last = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
    # WAL file names of one timeline sort in LSN order.
    return last is not None and last[:24] >= walfile


def test_point_in_time_restore_keeps_every_acknowledged_write(
    barman: Path, postgres_bin: Path, capsys
) -> None:
    spec = cluster_spec()
    archive_timeout = spec["postgresql"]["parameters"]["archive_timeout"]
    server_name = (
        spec.get("plugins", [{}])[0]
        .get("parameters", {})
        .get("serverName", yaml.safe_load(CLUSTER_MANIFEST.read_text())["metadata"]["name"])
    )

    with scratch_directory() as root, gcs_emulator(barman, BUCKET) as emulator:
        gcs = {"STORAGE_EMULATOR_HOST": emulator}
        tool = f"STORAGE_EMULATOR_HOST={emulator} {barman}"
        primary = LocalPostgres(root / "primary", bindir=postgres_bin)
        primary.initdb(
            {
                "wal_level": "replica",
                "archive_mode": "on",
                "archive_timeout": f"'{archive_timeout}'",
                # What the plugin's sidecar runs for each completed WAL segment.
                "archive_command": (
                    f"'{tool}/barman-cloud-wal-archive {' '.join(PROVIDER)} --gzip "
                    f"{DESTINATION} {server_name} %p'"
                ),
            }
        )
        restored = LocalPostgres(root / "restored", password=primary.password, bindir=postgres_bin)
        try:
            primary.start()
            with primary.connect() as conn:
                conn.execute(f"CREATE ROLE conduit LOGIN PASSWORD '{APP_ROLE_PASSWORD}'")
                conn.execute("CREATE DATABASE conduit OWNER conduit")
            app_url = primary.url("conduit", "conduit", APP_ROLE_PASSWORD, "postgresql+psycopg")

            with serve_api(app_url) as base_url:
                writer = Writer(base_url)
                # 1. Writes flow while the base backup is taken.
                with Background(writer):
                    while len(writer.acknowledged) < WRITES_BEFORE_BACKUP:
                        time.sleep(0.05)
                    backup_started = time.monotonic()
                    run(
                        [
                            str(barman / "barman-cloud-backup"),
                            *PROVIDER,
                            "--gzip",
                            # The backup starts at once instead of after a spread
                            # checkpoint (minutes): the drill's run time stays bounded.
                            "--immediate-checkpoint",
                            *primary.client_args(),
                            DESTINATION,
                            server_name,
                        ],
                        env={**gcs, "PGPASSWORD": primary.password},
                    )
                    backup_seconds = time.monotonic() - backup_started
                # 2. T, between two acknowledged writes.
                before = writer.taken()
                with primary.connect() as conn:
                    target = conn.execute("SELECT clock_timestamp()::text").fetchone()[0]
                # 3. More writes after T.
                for _ in range(WRITES_AFTER_T):
                    writer.write()
                after = writer.taken()
                last_write = time.monotonic()

            # The last write reaches the bucket when archive_timeout closes its segment.
            with primary.connect() as conn:
                walfile = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
            wait_until(
                lambda: wal_archived(primary, walfile),
                f"WAL {walfile} in the bucket",
                timeout=archive_timeout_seconds(archive_timeout) + 60,
                detail=lambda: ":\n" + primary.log_tail(),
            )
            rpo_measured = time.monotonic() - last_write
            primary.stop()  # the disaster: from here on only the bucket is left

            # 4. Restore to T into a fresh data directory, from the bucket alone.
            started = time.monotonic()
            listing = json.loads(
                run(
                    [
                        str(barman / "barman-cloud-backup-list"),
                        *PROVIDER,
                        "--format",
                        "json",
                        DESTINATION,
                        server_name,
                    ],
                    env=gcs,
                )
            )
            backup_id = listing["backups_list"][-1]["backup_id"]
            run(
                [
                    str(barman / "barman-cloud-restore"),
                    *PROVIDER,
                    DESTINATION,
                    server_name,
                    backup_id,
                    str(restored.data),
                ],
                env=gcs,
            )
            give_to_server_user(restored.data)
            restored.configure(
                {
                    "archive_mode": "off",  # a restored copy must not write into the archive
                    "restore_command": (
                        f"'{tool}/barman-cloud-wal-restore {' '.join(PROVIDER)} "
                        f"{DESTINATION} {server_name} %f %p'"
                    ),
                    "recovery_target_time": f"'{target}'",
                    "recovery_target_action": "'promote'",
                }
            )
            (restored.data / "recovery.signal").touch()
            give_to_server_user(restored.data)
            restored.start()
            restored.wait_until_writable()
            restore_seconds = time.monotonic() - started

            with restored.connect("conduit") as conn:
                present = {
                    row[0]
                    for row in conn.execute(
                        "SELECT username FROM users WHERE username LIKE 'drill%'"
                    )
                }
            # What the bucket holds: the base of its cost estimate (k8s/README.md).
            folder = DESTINATION.removeprefix(f"gs://{BUCKET}/")
            wal_sizes = object_sizes(emulator, BUCKET, f"{folder}/{server_name}/wals/")
            base_sizes = object_sizes(emulator, BUCKET, f"{folder}/{server_name}/base/")
        finally:
            restored.stop()
            primary.stop()

    kept = [name for name in before if name in present]
    lost = len(before) - len(kept)
    leaked = [name for name in after if name in present]
    with capsys.disabled():
        print(
            f"\nrestore drill: {len(before)} writes acknowledged before T, {len(kept)} present, "
            f"{lost} lost, {len(leaked)} after T present\n"
            f"restore drill: RPO archive_timeout={archive_timeout} (last write archived after "
            f"{rpo_measured:.1f} s); restore to T took {restore_seconds:.1f} s "
            f"(download, WAL replay, promotion); base backup under load: {backup_seconds:.1f} s\n"
            f"restore drill: bucket holds {len(wal_sizes)} WAL segments "
            f"({sum(wal_sizes) / 1e6:.2f} MB gzip, 16 MiB each uncompressed) and a base backup "
            f"of {sum(base_sizes) / 1e6:.2f} MB gzip ({len(before) + len(after)} users)"
        )
    assert before, "no write was acknowledged before T"
    assert after, "no write was made after T"
    assert lost == 0, f"acknowledged before T but missing: {sorted(set(before) - present)[:10]}"
    assert leaked == [], f"written after T but present: {leaked[:10]}"
    # The same restore, as conduit-deploy would commit it: the overlay renders, valid.
    assert_restored_overlay_renders(listing, target, server_name)
