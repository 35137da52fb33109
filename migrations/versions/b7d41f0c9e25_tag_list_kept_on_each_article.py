"""Each article keeps its tag names, maintained by the database

A page of articles aggregated every article's tags from article_tags and tags: 20
correlated subqueries, more than half of PostgreSQL's work for the page (make bench).
articles.tag_list now holds the names, sorted on PostgreSQL, and triggers on
article_tags keep it equal to the link rows, so it is right whichever code writes the
links: during a rolling deploy the previous release keeps writing article_tags alone.
article_tags and tags stay the truth for ?tag= and /api/tags. Tag names never change
once created (the API has no way to rename one), so no trigger watches `tags`.

Revision ID: b7d41f0c9e25
Revises: a323dbdd2e40
Create Date: 2026-11-30 14:25:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = 'b7d41f0c9e25'
down_revision = 'a323dbdd2e40'
branch_labels = None
depends_on = None

# PostgreSQL: one statement-level trigger per change of article_tags; the transition
# table names every article the statement touched, each refreshed once.
POSTGRESQL_REFRESH = """
CREATE FUNCTION articles_refresh_tag_list() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE articles
    SET tag_list = COALESCE(
        (SELECT array_agg(tags.name ORDER BY tags.name)
         FROM article_tags JOIN tags ON tags.id = article_tags.tag_id
         WHERE article_tags.article_id = articles.id),
        '{}')
    WHERE articles.id IN (SELECT article_id FROM changed_links);
    RETURN NULL;
END;
$$
"""
POSTGRESQL_TRIGGERS = [
    """CREATE TRIGGER article_tags_inserted AFTER INSERT ON article_tags
       REFERENCING NEW TABLE AS changed_links
       FOR EACH STATEMENT EXECUTE FUNCTION articles_refresh_tag_list()""",
    """CREATE TRIGGER article_tags_deleted AFTER DELETE ON article_tags
       REFERENCING OLD TABLE AS changed_links
       FOR EACH STATEMENT EXECUTE FUNCTION articles_refresh_tag_list()""",
]
POSTGRESQL_BACKFILL = """
UPDATE articles SET tag_list = (
    SELECT array_agg(tags.name ORDER BY tags.name)
    FROM article_tags JOIN tags ON tags.id = article_tags.tag_id
    WHERE article_tags.article_id = articles.id)
WHERE EXISTS (SELECT 1 FROM article_tags WHERE article_tags.article_id = articles.id)
"""

# SQLite: row triggers, a JSON array (its 3.40 cannot order inside an aggregate, so
# readers sort it: conduit/queries.py).
SQLITE_NAMES = """(
    SELECT json_group_array(tags.name)
    FROM article_tags JOIN tags ON tags.id = article_tags.tag_id
    WHERE article_tags.article_id = {article})"""
SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER article_tags_inserted AFTER INSERT ON article_tags BEGIN
        UPDATE articles SET tag_list = {SQLITE_NAMES.format(article="NEW.article_id")}
        WHERE id = NEW.article_id;
    END""",
    f"""CREATE TRIGGER article_tags_deleted AFTER DELETE ON article_tags BEGIN
        UPDATE articles SET tag_list = {SQLITE_NAMES.format(article="OLD.article_id")}
        WHERE id = OLD.article_id;
    END""",
]
SQLITE_BACKFILL = f"UPDATE articles SET tag_list = {SQLITE_NAMES.format(article='articles.id')}"


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        # CREATE TRIGGER locks article_tags against writes until this commits, so no link
        # written meanwhile escapes both the triggers and the backfill.
        # A constant default: PostgreSQL adds the column without rewriting the table.
        op.add_column(
            "articles",
            sa.Column(
                "tag_list",
                postgresql.ARRAY(sa.String(length=64)),
                server_default=sa.text("'{}'"),
                nullable=False,
            ),
        )
        op.execute(POSTGRESQL_REFRESH)
        for trigger in POSTGRESQL_TRIGGERS:
            op.execute(trigger)
        op.execute(POSTGRESQL_BACKFILL)
    else:
        op.add_column(
            "articles",
            sa.Column("tag_list", sa.JSON(), server_default=sa.text("'[]'"), nullable=False),
        )
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)
        op.execute(SQLITE_BACKFILL)


def downgrade():
    postgresql_ = op.get_bind().dialect.name == "postgresql"
    for trigger in ("article_tags_inserted", "article_tags_deleted"):
        op.execute(f"DROP TRIGGER {trigger} ON article_tags" if postgresql_ else f"DROP TRIGGER {trigger}")
    if postgresql_:
        op.execute("DROP FUNCTION articles_refresh_tag_list()")
    with op.batch_alter_table("articles") as batch_op:
        batch_op.drop_column("tag_list")
