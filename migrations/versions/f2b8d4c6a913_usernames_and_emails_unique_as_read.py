"""Usernames and emails unique as a reader sees them, enforced by the database

users.username_skeleton holds each username's UTS #39 skeleton after NFKC and case
folding (conduit/identity.py: ICU, which SQL cannot call, so the app computes it and
this migration backfills it), under a unique index; emails get a unique index on
lower(email). Two registrations racing with look-alike names or emails differing by
case can then no longer both succeed.

Accounts that already collide are not touched: the upgrade stops before changing
anything, naming them (`flask users collisions` lists them beforehand), and an
operator decides which to rename.

The column is nullable (migrations/README: the previous release inserts users without
it during a rollout); the release after this one backfills those and makes it NOT NULL.

Revision ID: f2b8d4c6a913
Revises: e4a7c2d9b158
Create Date: 2026-12-06 02:20:00

"""

from alembic import op
from alembic.util import CommandError
import sqlalchemy as sa

from conduit.identity import RESOLVE, find_collisions, username_skeleton


# revision identifiers, used by Alembic.
revision = "f2b8d4c6a913"
down_revision = "e4a7c2d9b158"
branch_labels = None
depends_on = None

# How many groups the error names; `flask users collisions` lists them all.
NAMED_GROUPS = 5


def refuse_collisions(connection) -> None:
    collisions = find_collisions(connection)
    if not collisions:
        return
    named = "; ".join(collision.describe() for collision in collisions[:NAMED_GROUPS])
    more = len(collisions) - NAMED_GROUPS
    if more > 0:
        named += f"; and {more} more groups (flask users collisions lists them)"
    # flask db upgrade prints a CommandError as one line and exits 1; the transaction
    # is rolled back, and nothing was written before this point anyway.
    raise CommandError(f"accounts collide, nothing was changed: {named}. To resolve: {RESOLVE}")


def upgrade():
    connection = op.get_bind()
    if connection.dialect.name == "postgresql":
        # No account written between the check and the indexes (reads go on).
        op.execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
    refuse_collisions(connection)
    op.add_column("users", sa.Column("username_skeleton", sa.Text(), nullable=True))
    users = connection.execute(sa.text("SELECT id, username FROM users")).all()
    if users:
        connection.execute(
            sa.text("UPDATE users SET username_skeleton = :skeleton WHERE id = :id"),
            [{"id": id_, "skeleton": username_skeleton(username)} for id_, username in users],
        )
    op.create_index("uq_users_username_skeleton", "users", ["username_skeleton"], unique=True)
    op.create_index("uq_users_lower_email", "users", [sa.text("lower(email)")], unique=True)


def downgrade():
    op.drop_index("uq_users_lower_email", table_name="users")
    op.drop_index("uq_users_username_skeleton", table_name="users")
    # In place, no batch mode: rebuilding users on SQLite would drop it first, and its
    # foreign keys' ON DELETE CASCADE would empty the tables that refer to it.
    op.drop_column("users", "username_skeleton")
