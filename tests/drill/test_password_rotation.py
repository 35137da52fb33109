"""A DB_PASSWORD rotation, as it happens in the cluster, on a real PostgreSQL.

A new DB_PASSWORD gives the role's Secret a new name, so the Cluster's
`managed.roles[].passwordSecret` changes (tests/k8s/test_cnpg.py), and the operator
runs ALTER ROLE ... PASSWORD for the role. The app's Secret changes at the same time
and its pods roll. What that means for the app is what this test shows:

* pods still running keep their pooled connections: authentication happens once,
  at connect, so the ALTER ROLE does not disconnect them;
* a new pod (or a new pooled connection) with the old password is refused;
* a new pod with the new password connects.

So the rollout may only start once the operator has updated the role; until then
new pods fail their readiness probe and the old ones keep serving.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from psycopg import sql

from tests.drill.local import (
    LocalPostgres,
    scratch_directory,
)
from tests.support import app_env, dispose_engines


def app_for(server: LocalPostgres, password: str):
    from conduit import create_app

    url = server.url("conduit", "conduit", password, "postgresql+psycopg")
    # One pooled connection, so the running app's requests reuse the same one.
    return create_app(env=app_env(url, DB_POOL_SIZE="1", DB_MAX_OVERFLOW="0", LOG_LEVEL="CRITICAL"))


def test_a_rotated_password_reaches_new_pods_and_spares_running_ones(postgres_bin: Path) -> None:
    from flask_migrate import upgrade

    old, new = "old-" + secrets.token_hex(12), "new-" + secrets.token_hex(12)
    with scratch_directory() as root:
        server = LocalPostgres(root / "db", bindir=postgres_bin)
        server.initdb({})
        running = None
        try:
            server.start()
            with server.connect() as conn:
                conn.execute(sql.SQL("CREATE ROLE conduit LOGIN PASSWORD {}").format(old))
                conn.execute("CREATE DATABASE conduit OWNER conduit")
            running = app_for(server, old)
            with running.app_context():
                upgrade()
            running_client = running.test_client()
            assert running_client.get("/api/tags").status_code == 200  # a pooled connection

            # What the operator runs for the managed role when its Secret changes.
            with server.connect() as conn:
                conn.execute(sql.SQL("ALTER ROLE conduit WITH PASSWORD {}").format(new))

            assert running_client.get("/api/tags").status_code == 200
            stale = app_for(server, old).test_client().get("/readyz")
            fresh = app_for(server, new).test_client().get("/readyz")
        finally:
            if running is not None:
                dispose_engines(running)
            server.stop()

    assert stale.status_code == 503
    assert fresh.status_code == 200
