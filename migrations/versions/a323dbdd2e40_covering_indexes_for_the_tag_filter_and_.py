"""Covering indexes for the tag filter and per-author lists

The tag filter finds article ids in (tag_id, article_id) without reading the table,
and per-author pages (the feed, ?author=) walk (author_id, created_at, id) in the
lists' order. Each replaces an index that is a prefix of it.

Revision ID: a323dbdd2e40
Revises: 6a46d21c70fd
Create Date: 2026-11-25 16:06:15.456914

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'a323dbdd2e40'
down_revision = '6a46d21c70fd'
branch_labels = None
depends_on = None

# (table, old index, old columns, new index, new columns)
CHANGES = [
    ("article_tags", "ix_article_tags_tag_id", ["tag_id"],
     "ix_article_tags_tag_id_article_id", ["tag_id", "article_id"]),
    ("articles", "ix_articles_author_id_created_at", ["author_id", "created_at"],
     "ix_articles_author_id_created_at_id", ["author_id", "created_at", "id"]),
]


def _replace(table, drop_name, create_name, create_columns):
    # The new index is built before the old one goes, so no query is ever without one.
    if op.get_bind().dialect.name == "postgresql":
        # CONCURRENTLY keeps the table writable while a large one is indexed; it cannot
        # run inside a transaction. If it is interrupted, drop the INVALID index it left
        # (\d <table> shows it) before upgrading again.
        with op.get_context().autocommit_block():
            op.create_index(create_name, table, create_columns, postgresql_concurrently=True)
            op.drop_index(drop_name, table_name=table, postgresql_concurrently=True)
    else:
        with op.batch_alter_table(table) as batch_op:
            batch_op.create_index(create_name, create_columns)
            batch_op.drop_index(drop_name)


def upgrade():
    for table, old, _, new, new_columns in CHANGES:
        _replace(table, old, new, new_columns)


def downgrade():
    for table, old, old_columns, new, _ in reversed(CHANGES):
        _replace(table, new, old, old_columns)
