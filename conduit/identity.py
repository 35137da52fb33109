"""When two usernames or two emails name the same person to a reader.

Usernames: two names are one when their UTS #39 confusable skeletons are equal, taken
after NFKC and case folding ("jake", "Jake" and "j\u0430ke" with a Cyrillic a are one). A name that
mixes scripts a reader cannot tell apart (Latin with Cyrillic or Greek) is refused
outright, by UTS #39's "highly restrictive" level. Both come from ICU's SpoofChecker,
the Unicode Consortium's own implementation (https://unicode.org/reports/tr39/,
https://unicode-org.github.io/icu/userguide/transforms/spoofchecker.html), through
PyICU: the confusables data is the ICU release's (icu.ICU_VERSION, icu.UNICODE_VERSION).

Emails: equal under the database's lower(), as the unique index on lower(email) is.

The migration that added those indexes (migrations/versions/f2b8d4c6a913_*) and
`flask users collisions` report accounts that already collide, with find_collisions().
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from dataclasses import dataclass

import click
import icu
from flask.cli import with_appcontext
from sqlalchemy import text
from sqlalchemy.engine import Connection

# Refused: a mix of scripts beyond UTS #39's "highly restrictive" level (one script, or
# Latin with Han and Japanese kana or Hangul or Bopomofo), digits from more than one
# numbering system, and invisible characters stacked on one another.
# One checker per process, built at import (so in uWSGI's master, conduit/preload.py):
# ICU's check and skeleton functions may be called from many threads on one configured
# checker (ICU's unicode/uspoof.h, "Thread Safety").
_checker = icu.SpoofChecker()
_checker.setRestrictionLevel(icu.URestrictionLevel.HIGHLY_RESTRICTIVE)
_checker.setChecks(
    icu.USpoofChecks.RESTRICTION_LEVEL | icu.USpoofChecks.MIXED_NUMBERS | icu.USpoofChecks.INVISIBLE
)


def mixes_scripts(username: str) -> bool:
    return _checker.check(username) != 0


def username_skeleton(username: str) -> str:
    """What a reader sees: the UTS #39 skeleton of the NFKC case-folded name. Stored in
    users.username_skeleton under a unique index."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())
    # The first argument (the skeleton type) is ignored since ICU 58: one skeleton.
    return _checker.getSkeleton(0, folded)


@dataclass(frozen=True)
class Collision:
    """Accounts that the unique indexes would refuse to hold together."""

    field: str  # "username" or "email"
    accounts: tuple[tuple[int, str], ...]  # (id, username), oldest first

    def describe(self) -> str:
        names = ", ".join(f"{id_} ({username})" for id_, username in self.accounts)
        return f"{self.field}: users {names}"


def find_collisions(connection: Connection) -> list[Collision]:
    """Every group of accounts whose usernames share a skeleton or whose emails are
    equal under lower(). Reads only; works before and after the migration."""
    rows = connection.execute(text("SELECT id, username FROM users ORDER BY id")).all()
    by_skeleton: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for id_, username in rows:
        by_skeleton[username_skeleton(username)].append((id_, username))
    collisions = [
        Collision("username", tuple(group)) for group in by_skeleton.values() if len(group) > 1
    ]
    # The database's lower(), as the index uses (SQLite's folds ASCII only).
    shared_emails = connection.execute(
        text(
            "SELECT lower(email), id, username FROM users WHERE lower(email) IN"
            " (SELECT lower(email) FROM users GROUP BY lower(email) HAVING count(*) > 1)"
            " ORDER BY 1, 2"
        )
    ).all()
    by_email: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for email, id_, username in shared_emails:
        by_email[email].append((id_, username))
    collisions += [Collision("email", tuple(group)) for group in by_email.values()]
    return collisions


RESOLVE = "rename all but one account of each group (or merge them), then run the upgrade again"


@click.group("users")
def users_cli() -> None:
    """Accounts as the unique indexes on usernames and emails see them."""


@users_cli.command("collisions")
@with_appcontext
def collisions_command() -> None:
    """List accounts whose usernames look alike or whose emails differ only by case;
    exit 1 when there are any. Changes nothing."""
    from .extensions import db

    with db.engine.connect() as connection:
        collisions = find_collisions(connection)
    if not collisions:
        click.echo("no colliding accounts")
        return
    for collision in collisions:
        click.echo(collision.describe())
    raise click.ClickException(f"{len(collisions)} groups of colliding accounts: {RESOLVE}")
