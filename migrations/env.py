"""Alembic environment for Flask-Migrate: `flask db upgrade`, `flask db migrate`."""

import logging
import time
import zlib
from logging.config import fileConfig

from alembic import context
from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from conduit import migration_lineage
from conduit.settings import database_unreachable, describe_database

config = context.config
# The app has configured JSON logging already; alembic.ini's handlers are for bare runs.
if not logging.getLogger().handlers:
    fileConfig(config.config_file_name)
logger = logging.getLogger("alembic.env")

migrate_ext = current_app.extensions["migrate"]
engine = migrate_ext.db.engine
config.set_main_option(
    "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
)
target_metadata = migrate_ext.db.metadata

# One key for every process that migrates this schema (a 32-bit value fits bigint).
MIGRATION_LOCK_KEY = zlib.crc32(b"conduit:alembic-upgrade")


def acquire_migration_lock(connection) -> None:
    """Wait for the advisory lock that serialises upgrades, polling outside transactions.

    A waiter blocked in pg_advisory_lock() would hold a snapshot for as long as it waits,
    and CREATE INDEX CONCURRENTLY in the migrating process waits for every older
    snapshot to end: the two would deadlock. pg_try_advisory_lock() returns at once.
    """
    announced = False
    while True:
        acquired = connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
        ).scalar()
        connection.commit()
        if acquired:
            return
        if not announced:
            logger.info("Another process is migrating this database; waiting for it.")
            announced = True
        time.sleep(0.5)


def skip_empty_autogenerate(context, revision, directives):
    """`flask db migrate` with no model changes writes no empty revision."""
    if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        logger.info("No changes in schema detected.")


def record_lineage(ctx, heads, **_):
    """After each step, in its transaction: the database's heads and all their ancestors,
    which tell an older release that the database descends from its head (see
    conduit/migration_lineage.py)."""
    revisions = (
        [script.revision for script in context.script.iterate_revisions(tuple(heads), "base")]
        if heads
        else []
    )
    for statement in migration_lineage.sync_statements(revisions):
        ctx.execute(statement)


def run_migrations_offline():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        on_version_apply=record_lineage,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    configure_args = dict(migrate_ext.configure_args)
    configure_args.setdefault("process_revision_directives", skip_empty_autogenerate)
    configure_args.setdefault("compare_type", True)
    configure_args.setdefault("include_name", migration_lineage.include_name)
    configure_args["on_version_apply"] = record_lineage

    # Which database, for whoever runs `flask db upgrade` (`make run`, an init container).
    logger.info("Migrating the database of DATABASE_URL: %s", describe_database(engine.url))
    try:
        connection = engine.connect()
    except OperationalError as error:
        # Unreachable, or refusing the credentials: the message and exit status 1 of a
        # configuration error (conduit/settings.py), not Alembic's traceback.
        raise database_unreachable(engine.url, error) from None
    with connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            # Several replicas' init containers upgrade at once: the first takes the lock
            # and migrates, the others wait here and then find the schema at head. The
            # lock is taken before Alembic reads the current revision.
            acquire_migration_lock(connection)
        try:
            context.configure(
                connection=connection, target_metadata=target_metadata, **configure_args
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if postgres:
                connection.rollback()
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
                connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
