"""The number of articles, kept by the database

Every page of the whole article list carried the number of all articles, counted
anew: an index scan of every article per page (half of PostgreSQL's work for a page
of 2,000 articles, growing with the table). article_totals holds the number in one
row that triggers on `articles` keep, whichever code inserts or deletes: the list
reads one row. Writers of articles take that row only while they commit (deferred
triggers on PostgreSQL). (Filtered lists count only their matches, found
through their indexes.)

Revision ID: c5e2a9d7f310
Revises: b7d41f0c9e25
Create Date: 2026-11-30 14:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c5e2a9d7f310'
down_revision = 'b7d41f0c9e25'
branch_labels = None
depends_on = None

# Adding creates the row when it is missing (e.g. after a TRUNCATE of both tables);
# subtracting from a missing row changes nothing. Readers take a missing row as 0.
ADD = """INSERT INTO article_totals (id, articles) VALUES (1, {count})
    ON CONFLICT (id) DO UPDATE SET articles = article_totals.articles + excluded.articles"""
SUBTRACT = "UPDATE article_totals SET articles = articles - {count} WHERE id = 1"

# On PostgreSQL the counting waits for the commit (deferred constraint triggers, one
# call per row): the row is then locked from the commit's start to its end, not for
# the whole transaction, so concurrent creates do not queue behind each other's work
# (immediate triggers halved the benchmark's article creates per second).
POSTGRESQL = [
    f"""CREATE FUNCTION article_totals_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {ADD.format(count="1")};
        RETURN NULL;
    END;
    $$""",
    f"""CREATE FUNCTION article_totals_subtract() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {SUBTRACT.format(count="1")};
        RETURN NULL;
    END;
    $$""",
    """CREATE FUNCTION article_totals_reset() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM article_totals;
        RETURN NULL;
    END;
    $$""",
    """CREATE CONSTRAINT TRIGGER articles_inserted AFTER INSERT ON articles
       DEFERRABLE INITIALLY DEFERRED
       FOR EACH ROW EXECUTE FUNCTION article_totals_add()""",
    """CREATE CONSTRAINT TRIGGER articles_deleted AFTER DELETE ON articles
       DEFERRABLE INITIALLY DEFERRED
       FOR EACH ROW EXECUTE FUNCTION article_totals_subtract()""",
    # TRUNCATE fires no DELETE trigger.
    """CREATE TRIGGER articles_truncated AFTER TRUNCATE ON articles
       FOR EACH STATEMENT EXECUTE FUNCTION article_totals_reset()""",
]
SQLITE = [
    f"""CREATE TRIGGER articles_inserted AFTER INSERT ON articles BEGIN
        {ADD.format(count="1")};
    END""",
    f"""CREATE TRIGGER articles_deleted AFTER DELETE ON articles BEGIN
        {SUBTRACT.format(count="1")};
    END""",
]


def upgrade():
    op.create_table(
        "article_totals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("articles", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_article_totals_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_article_totals")),
    )
    postgresql_ = op.get_bind().dialect.name == "postgresql"
    # On PostgreSQL, CREATE TRIGGER locks `articles` against writes until this commits,
    # so the count below and the triggers together miss no article.
    for statement in POSTGRESQL if postgresql_ else SQLITE:
        op.execute(statement)
    op.execute("INSERT INTO article_totals (id, articles) SELECT 1, count(*) FROM articles")


def downgrade():
    postgresql_ = op.get_bind().dialect.name == "postgresql"
    for trigger in ("articles_inserted", "articles_deleted", "articles_truncated"):
        if postgresql_:
            op.execute(f"DROP TRIGGER {trigger} ON articles")
        elif trigger != "articles_truncated":
            op.execute(f"DROP TRIGGER {trigger}")
    if postgresql_:
        for function in ("article_totals_add", "article_totals_subtract", "article_totals_reset"):
            op.execute(f"DROP FUNCTION {function}()")
    op.drop_table("article_totals")
