"""Tag links carry their article's creation time, indexed in the lists' order

A page of ?tag=<name> walked every link of the tag and sorted them all to keep 20:
for a tag on half of the articles, most of PostgreSQL's work for the page. Each link
now carries its article's created_at (which never changes), copied by a trigger
whichever code inserts the link (a previous release during a rolling deploy too), and
(tag_id, article_created_at, article_id) serves the page as a walk that stops after
it, and the tag's count from the index alone. It replaces (tag_id, article_id).

Revision ID: d8f3b6a1c402
Revises: c5e2a9d7f310
Create Date: 2026-11-30 15:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd8f3b6a1c402'
down_revision = 'c5e2a9d7f310'
branch_labels = None
depends_on = None

NEW_INDEX = "ix_article_tags_tag_id_article_created_at_article_id"
NEW_COLUMNS = ["tag_id", "article_created_at", "article_id"]
OLD_INDEX = "ix_article_tags_tag_id_article_id"
OLD_COLUMNS = ["tag_id", "article_id"]

POSTGRESQL = [
    """CREATE FUNCTION article_tags_copy_created_at() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.article_created_at := (SELECT created_at FROM articles WHERE id = NEW.article_id);
        RETURN NEW;
    END;
    $$""",
    """CREATE TRIGGER article_tags_created_at BEFORE INSERT ON article_tags
       FOR EACH ROW EXECUTE FUNCTION article_tags_copy_created_at()""",
]
# SQLite's BEFORE triggers cannot change the row: the new link is completed after.
SQLITE = [
    """CREATE TRIGGER article_tags_created_at AFTER INSERT ON article_tags BEGIN
        UPDATE article_tags
        SET article_created_at = (SELECT created_at FROM articles WHERE id = NEW.article_id)
        WHERE article_id = NEW.article_id AND tag_id = NEW.tag_id;
    END""",
]
BACKFILL = """UPDATE article_tags SET article_created_at = (
    SELECT created_at FROM articles WHERE articles.id = article_tags.article_id)"""


def upgrade():
    postgresql_ = op.get_bind().dialect.name == "postgresql"
    op.add_column(
        "article_tags",
        sa.Column("article_created_at", sa.DateTime(timezone=True), nullable=True),
    )
    # The trigger first: on PostgreSQL it locks article_tags against writes until this
    # commits, so no link escapes both it and the backfill.
    for statement in POSTGRESQL if postgresql_ else SQLITE:
        op.execute(statement)
    op.execute(BACKFILL)
    # Plain ALTERs, no batch mode: SQLite's batch mode rebuilds the table, and with it
    # would go the triggers earlier migrations put on article_tags.
    op.create_index(NEW_INDEX, "article_tags", NEW_COLUMNS)
    op.drop_index(OLD_INDEX, table_name="article_tags")


def downgrade():
    postgresql_ = op.get_bind().dialect.name == "postgresql"
    op.create_index(OLD_INDEX, "article_tags", OLD_COLUMNS)
    op.drop_index(NEW_INDEX, table_name="article_tags")
    if postgresql_:
        op.execute("DROP TRIGGER article_tags_created_at ON article_tags")
        op.execute("DROP FUNCTION article_tags_copy_created_at()")
    else:
        op.execute("DROP TRIGGER article_tags_created_at")
    op.drop_column("article_tags", "article_created_at")  # SQLite 3.35+ drops in place
