"""The migrations build exactly the schema the models describe, and undo it."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from conduit import migration_lineage
from conduit.extensions import db


def schema_differences(app) -> list:
    with app.app_context(), db.engine.connect() as connection:
        # As migrations/env.py compares: the lineage table is the migrations' own.
        opts = {"compare_type": True, "include_name": migration_lineage.include_name}
        context = MigrationContext.configure(connection, opts=opts)
        return compare_metadata(context, db.metadata)


def test_migrated_schema_matches_the_models(app):
    # The `database_url` fixture built this database with `flask db upgrade`.
    assert schema_differences(app) == []


def test_downgrade_to_base_and_back(app):
    with app.app_context():
        downgrade(revision="base")
        tables = set(inspect(db.engine).get_table_names())
        assert tables <= {"alembic_version", migration_lineage.TABLE}
        upgrade()
        assert set(inspect(db.engine).get_table_names()) >= set(db.metadata.tables)
    assert schema_differences(app) == []
