"""Which releases' code may serve the database's schema: its own, or an older one.

A release's migrations must keep the release before it working (expand/contract:
migrations/README). So a pod is ready when the database's head is its code's head, or a
descendant of it that a later release wrote: after a release that migrates, the old
pods keep serving through the rollout, and a rollback brings back pods that can serve.

Old code cannot tell such a descendant from a foreign or diverged head by itself: it
does not have the later release's revision files. So every migration step also writes
the lineage of the database's heads (each head and all its ancestors) to a table of
its own, in the same transaction as Alembic's `alembic_version` (migrations/env.py).
The old code's head is in that lineage exactly when the database descends from it.

Nothing here imports Alembic: /readyz runs in every uWSGI worker (see
migration_heads.py).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Set
from dataclasses import dataclass

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import Column, MetaData, String, Table, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateTable

from . import migration_heads
from .extensions import db

TABLE = "migration_lineage"
lineage_table = Table(
    TABLE,
    MetaData(),
    # Alembic's own version_num is VARCHAR(32); custom revision ids may be longer.
    Column("revision", String(255), primary_key=True),
)


def sync_statements(revisions: Iterable[str]) -> list:
    """The statements that make the table hold exactly `revisions`.

    Run by migrations/env.py after each step, with the lineage of the heads after it;
    as statements (not a read, then a diff) so that `flask db upgrade --sql` writes them.
    """
    statements = [CreateTable(lineage_table, if_not_exists=True), lineage_table.delete()]
    rows = [{"revision": revision} for revision in sorted(revisions)]
    if rows:
        statements.append(lineage_table.insert().values(rows))
    return statements


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Autogenerate's filter: the lineage table belongs to the migrations, not the models
    (as alembic_version does)."""
    return not (type_ == "table" and name == TABLE)


class Compatibility(enum.Enum):
    CURRENT = enum.auto()  # at this release's head
    AHEAD = enum.auto()  # a descendant of it, written by a later release
    INCOMPATIBLE = enum.auto()  # behind it, or another lineage


@dataclass(frozen=True)
class Verdict:
    compatibility: Compatibility
    database_heads: frozenset[str]
    code_heads: frozenset[str]

    @property
    def serves(self) -> bool:
        return self.compatibility is not Compatibility.INCOMPATIBLE

    def describe(self) -> str:
        code = ", ".join(sorted(self.code_heads))
        if not self.database_heads:
            return f"database not migrated yet (this release needs {code})"
        database = ", ".join(sorted(self.database_heads))
        if self.compatibility is Compatibility.INCOMPATIBLE:
            return (
                f"database at {database}, neither this release's head ({code}) nor a "
                "descendant of it written by a later release: the migrations have not run "
                "yet, or another lineage of migrations wrote this database"
            )
        if self.compatibility is Compatibility.AHEAD:
            return (
                f"database at {database}, which a later release migrated past this "
                f"release's head ({code})"
            )
        return f"database at {database}, this release's head"


def database_heads(connection: Connection) -> frozenset[str]:
    """alembic_version's rows; none when the table does not exist (never migrated)."""
    try:
        rows = connection.execute(text("SELECT version_num FROM alembic_version"))
    except DBAPIError:
        return frozenset()
    return frozenset(row[0] for row in rows)


def recorded(connection: Connection, revisions: Set[str]) -> frozenset[str]:
    """Which of `revisions` are in the lineage table; none when the table does not exist
    (a database last migrated by a release before it)."""
    if not revisions:
        return frozenset()
    column = lineage_table.c.revision
    try:
        rows = connection.execute(select(column).where(column.in_(sorted(revisions))))
    except DBAPIError:
        return frozenset()
    return frozenset(row[0] for row in rows)


def judge(database: frozenset[str], code: frozenset[str], lineage: frozenset[str]) -> Verdict:
    """`lineage`: which of the code's heads the database's lineage table holds."""
    if database == code:
        compatibility = Compatibility.CURRENT
    elif database and code and code <= lineage:
        compatibility = Compatibility.AHEAD
    else:
        compatibility = Compatibility.INCOMPATIBLE
    return Verdict(compatibility, database, code)


def check(
    connection: Connection,
    code_heads: Set[str],
    known_descendants: Set[frozenset[str]] = frozenset(),
) -> Verdict:
    """The database's heads against the code's. The lineage is read only when they
    differ and the database's heads are not among `known_descendants` (heads already
    found to descend from the code's: that never changes). On PostgreSQL a missing table
    aborts the transaction, so nothing may follow this on `connection`'s transaction."""
    code = frozenset(code_heads)
    database = database_heads(connection)
    if not database or database == code:
        lineage = frozenset()
    elif database in known_descendants:
        lineage = code
    else:
        lineage = recorded(connection, code)
    return judge(database, code, lineage)


@click.group("schema")
def schema_cli() -> None:
    """This release's migrations and the database's schema."""


@schema_cli.command("upgrade")
@with_appcontext
def upgrade_command() -> None:
    """Upgrade the database to this release's head (`flask db upgrade`), except when a
    later release has migrated it past that head: then change nothing, as after a
    rollback. Fails on a database of another lineage."""
    from alembic import command
    from alembic.util import CommandError

    config = current_app.extensions["migrate"].migrate.get_config()
    verdict = _verdict()
    if verdict.compatibility is Compatibility.AHEAD:
        click.echo(f"{verdict.describe()}: nothing to upgrade")
        return
    try:
        command.upgrade(config, "heads")
    except CommandError as error:
        # e.g. a later release's migration committed while this one waited for the lock.
        verdict = _verdict()
        if verdict.compatibility is Compatibility.AHEAD:
            click.echo(f"{verdict.describe()}: nothing to upgrade")
            return
        raise click.ClickException(f"{verdict.describe()} ({error})") from None


@schema_cli.command("check")
@with_appcontext
def check_command() -> None:
    """Say whether this release can serve the database's schema, as /readyz does; exit 1
    when it cannot."""
    verdict = _verdict()
    if not verdict.serves:
        raise click.ClickException(verdict.describe())
    click.echo(verdict.describe())


def _verdict() -> Verdict:
    heads = migration_heads.read(current_app.config["MIGRATIONS_DIR"])
    try:
        with db.engine.connect() as connection:
            return check(connection, heads)
    except DBAPIError as error:
        reason = str(error.orig).strip().splitlines()[0]  # libpq adds a hint line
        raise click.ClickException(f"database unreachable: {reason}") from None
