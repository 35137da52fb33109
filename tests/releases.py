"""A next release's migrations for tests of rolling deploys and rollbacks: this
release's revisions plus one more, in a folder of its own (CONDUIT_MIGRATIONS_DIR)."""

from __future__ import annotations

import shutil
from pathlib import Path

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"

# What a next release may do under migrations/README's rule (expand only): a nullable
# column this release neither reads nor writes.
NEXT_REVISION = '''\
"""The next release: articles get an optional subtitle

Revision ID: {revision}
Revises: {down_revision}
"""
from alembic import op
import sqlalchemy as sa

revision = "{revision}"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("articles", sa.Column("subtitle", sa.Text(), nullable=True))


def downgrade():
    op.drop_column("articles", "subtitle")
'''


def release_migrations(folder: Path, revision: str, down_revision: str, drop=()) -> Path:
    """This release's migrations, without the revisions in `drop`, plus `revision` on
    top of `down_revision`."""
    shutil.copytree(MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in drop:
        next(folder.glob(f"versions/{name}_*.py")).unlink()
    script = NEXT_REVISION.format(revision=revision, down_revision=down_revision)
    (folder / "versions" / f"{revision}_next_release.py").write_text(script)
    return folder


def head_and_parent(directory: Path = MIGRATIONS) -> tuple[str, str]:
    """The head of the migrations in `directory` and the revision before it."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(directory))
    scripts = ScriptDirectory.from_config(config)
    head = scripts.get_current_head()
    return head, scripts.get_revision(head).down_revision
