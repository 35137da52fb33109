"""A realistic, deterministic dataset for demos and the load benchmark.

    python -m bench.seed --users 50 --articles 300 --seed 7   # with DATABASE_URL etc. set

It lives beside the benchmark, not in the `conduit` package: no server runs it, so the
image does not ship it and no worker imports it.

The same options give the same users, articles, tags, follows, favorites and comments
(names, texts, timestamps, who follows whom) on every machine: generation draws from one
`random.Random(seed)` and timestamps count back from a fixed moment, not from now.
Popularity is skewed the way real blogs are: a few authors write much of the content, a
few tags are on most articles, and popular articles collect most favorites and comments.

Generation (`generate()`) is pure and separate from the writes (`load()`), so tests can
check the dataset without a database. The command refuses a database that already holds
data rather than mixing seeded rows with real ones.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import click
from slugify import slugify
from sqlalchemy import func, insert, inspect, select

from conduit import create_app
from conduit.auth import hash_password
from conduit.extensions import db
from conduit.models import Article, ArticleTag, Comment, Favorite, Follow, Tag, User

# Every generated timestamp lies before this moment, so reruns produce identical rows.
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)
ARTICLE_SPAN = timedelta(days=730)  # articles are spread over the two years before ANCHOR
USER_SPAN = timedelta(days=365)  # accounts were opened in the year before the first article
MAX_TAGS_PER_ARTICLE = 5
EMAIL_DOMAIN = "example.com"  # reserved for documentation (RFC 2606): never delivers mail


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "ada alan anita arjun beatriz bjorn carla chen dalia dmitri elena emeka farah felix "
    "grace hamid ines ivan jamal jana kenji kofi lara liam maya mateo nadia noor olga omar "
    "priya quentin rosa sami sofia tariq uma valentin wei xenia yara yusuf zara zoltan"
)
LAST_NAMES = _words(
    "abbott adeyemi bauer castillo dubois eriksen fischer garcia haddad ivanova jensen "
    "kowalski lindqvist moreau nakamura novak okafor petrov quinn rossi santos schmidt "
    "tanaka ueda varga weber xu yilmaz zhang"
)
# The first tags are the most used (popularity follows this order).
TAG_WORDS = _words(
    "python flask postgresql devops kubernetes docker testing security performance "
    "architecture api design databases linux networking observability rust golang "
    "javascript typescript react css career productivity opensource cloud aws gcp "
    "terraform ci cd git monitoring logging caching concurrency async sql nosql redis "
    "kafka microservices monoliths refactoring debugging algorithms compilers "
    "accessibility mobile ux writing"
)
VOCABULARY = _words(
    "the a an of to in for on with without across between over under after before "
    "system service request response database query index cache queue worker thread "
    "process memory latency throughput deploy release rollback cluster node pod "
    "container image build pipeline test suite coverage bug fix patch review design "
    "pattern model schema migration table column row transaction lock timeout retry "
    "backoff budget error failure incident alert metric trace log dashboard user team "
    "engineer product feature roadmap sprint estimate deadline tradeoff choice "
    "simple complex fast slow small large reliable fragile clear careful honest "
    "measure observe improve reduce avoid prefer keep remove add change learn share "
    "write read run ship break recover scale split merge cache every some most few "
    "often rarely always never really quite very just still already because although "
    "when while until unless since so then therefore however instead"
)
MAX_TAGS = len(TAG_WORDS) ** 2  # the words, then every ordered pair of two different ones
TITLE_WORDS = _words(
    "lessons notes thoughts guide primer field tour case study why how what when "
    "building running scaling testing debugging shipping migrating measuring caching "
    "understanding rethinking taming simple fast reliable boring modern practical "
    "production small large first last hidden real cost price joy pain art craft"
)


@dataclass(frozen=True)
class Counts:
    users: int
    articles: int
    tags: int
    follows: int
    favorites: int
    comments: int

    def problems(self) -> list[str]:
        """Why these counts cannot make a dataset (empty when they can)."""
        problems = []
        if self.articles and not self.users:
            problems.append("articles need at least one user to write them")
        if self.articles and not self.tags:
            problems.append("articles need at least one tag (each has 1 to 5)")
        if self.tags > MAX_TAGS:
            problems.append(f"at most {MAX_TAGS} distinct tags can be made")
        if self.follows > self.users * (self.users - 1):
            problems.append(
                f"{self.users} users allow at most {self.users * (self.users - 1)} follows"
            )
        if self.favorites > self.users * self.articles:
            problems.append(
                f"{self.users} users and {self.articles} articles allow at most "
                f"{self.users * self.articles} favorites"
            )
        if self.comments and not (self.users and self.articles):
            problems.append("comments need at least one user and one article")
        return problems


@dataclass
class Dataset:
    """Rows to insert. Users, articles and tags are referred to by their list index."""

    users: list[dict] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    articles: list[dict] = field(default_factory=list)  # author: user index
    article_tags: list[tuple[int, int]] = field(default_factory=list)  # (article, tag)
    follows: list[dict] = field(default_factory=list)  # follower, followed: user indexes
    favorites: list[dict] = field(default_factory=list)  # user, article: indexes
    comments: list[dict] = field(default_factory=list)  # article, author: indexes


def tag_names(count: int) -> list[str]:
    """`count` distinct tag names: single words first, then two-word combinations."""
    names = list(TAG_WORDS)
    if count > len(names):
        names += [f"{a}-{b}" for a, b in itertools.permutations(TAG_WORDS, 2)]
    return names[:count]


class ZipfPicker:
    """Picks from `items` in rank order with weight 1/rank**exponent: a few items get
    most of the picks. Cumulative weights are computed once, so a pick is O(log n)."""

    def __init__(self, items: Sequence[int], exponent: float):
        self.items = items
        self.cum_weights = list(
            itertools.accumulate(1.0 / rank**exponent for rank in range(1, len(items) + 1))
        )

    def pick(self, rng: random.Random) -> int:
        return rng.choices(self.items, cum_weights=self.cum_weights)[0]


def _sentence(rng: random.Random, low: int = 6, high: int = 18) -> str:
    words = rng.choices(VOCABULARY, k=rng.randint(low, high))
    return " ".join(words).capitalize() + rng.choice(".....?!")


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(2, 7)))


def _body(rng: random.Random) -> str:
    """Markdown from a one-liner to a long post: lengths are log-normally distributed."""
    paragraphs = min(40, max(1, round(rng.lognormvariate(1.1, 0.9))))
    parts = []
    for number in range(paragraphs):
        if number and rng.random() < 0.15:
            parts.append("## " + _sentence(rng, 2, 6).rstrip(".?!"))
        if rng.random() < 0.08:
            command = " ".join(rng.choices(VOCABULARY, k=rng.randint(2, 5)))
            parts.append(f"```\n$ {command}\n```")
        elif rng.random() < 0.08:
            parts.append("\n".join("- " + _sentence(rng, 3, 8) for _ in range(rng.randint(2, 5))))
        parts.append(_paragraph(rng))
    return "\n\n".join(parts)


def _title(rng: random.Random) -> str:
    words = rng.choices(TITLE_WORDS, k=rng.randint(2, 4)) + rng.choices(
        VOCABULARY, k=rng.randint(1, 4)
    )
    return " ".join(words).capitalize()


def _moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A moment in [start, end), to the millisecond (what the API shows)."""
    span_ms = max(1, int((end - start).total_seconds() * 1000))
    return start + timedelta(milliseconds=rng.randrange(span_ms))


def _unique_pairs(
    rng: random.Random,
    wanted: int,
    left: Sequence[int],
    right: ZipfPicker,
    allowed=lambda a, b: True,
) -> list[tuple[int, int]]:
    """`wanted` distinct (left, right) pairs, right picked by weight, in draw order.

    Weighted draws with rejection of duplicates; when the pairs are so dense that
    rejection stalls, the rest is drawn uniformly from the pairs not taken yet.
    """
    chosen: dict[tuple[int, int], None] = {}
    attempts = 0
    while len(chosen) < wanted and attempts < 20 * wanted:
        attempts += 1
        pair = (rng.choice(left), right.pick(rng))
        if allowed(*pair):
            chosen.setdefault(pair, None)
    if len(chosen) < wanted:
        pairs = itertools.product(left, right.items)
        rest = [p for p in pairs if allowed(*p) and p not in chosen]
        for pair in rng.sample(rest, wanted - len(chosen)):
            chosen[pair] = None
    return list(chosen)


def generate(counts: Counts, seed: int) -> Dataset:
    """The dataset for these counts and seed; the same arguments give the same rows."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
    data = Dataset()

    # Users: first.last, with a number when the name is taken.
    first_article = ANCHOR - ARTICLE_SPAN
    taken: set[str] = set()
    for number in range(counts.users):
        base = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}"
        username = base if base not in taken else f"{base}{number}"
        taken.add(username)
        data.users.append(
            {
                "username": username,
                "email": f"{username}@{EMAIL_DOMAIN}",
                "bio": _sentence(rng, 5, 20) if rng.random() < 0.6 else None,
                "image": (
                    f"https://images.{EMAIL_DOMAIN}/avatars/{username}.jpg"
                    if rng.random() < 0.4
                    else None
                ),
                "created_at": _moment(rng, first_article - USER_SPAN, first_article),
            }
        )

    data.tags = tag_names(counts.tags)
    tags = ZipfPicker(range(counts.tags), 0.9)  # in TAG_WORDS order: "python" is the top tag

    # Authors: a shuffled Zipf ranking, so the prolific ones are not simply the first users.
    author_rank = list(range(counts.users))
    rng.shuffle(author_rank)
    authors = ZipfPicker(author_rank, 0.8)
    slugs: set[str] = set()
    for number in range(counts.articles):
        title = _title(rng)
        slug = slugify(title, max_length=200, word_boundary=True) or "article"
        if slug in slugs:
            slug = f"{slug}-{number}"
        slugs.add(slug)
        created = _moment(rng, first_article, ANCHOR)
        edited = rng.random() < 0.2
        data.articles.append(
            {
                "slug": slug,
                "title": title,
                "description": _sentence(rng, 8, 20),
                "body": _body(rng),
                "author": authors.pick(rng),
                "created_at": created,
                "updated_at": _moment(rng, created, ANCHOR) if edited else created,
            }
        )
        how_many = min(counts.tags, rng.randint(1, MAX_TAGS_PER_ARTICLE))
        picked: dict[int, None] = {}
        while len(picked) < how_many:
            picked.setdefault(tags.pick(rng), None)
        data.article_tags.extend((number, tag) for tag in picked)

    users = list(range(counts.users))
    follows = _unique_pairs(
        rng,
        counts.follows,
        users,
        authors,  # prolific authors have the most followers
        allowed=lambda follower, followed: follower != followed,
    )
    data.follows = [
        {"follower": a, "followed": b, "created_at": _moment(rng, first_article, ANCHOR)}
        for a, b in follows
    ]

    # Article popularity: a shuffled Zipf ranking shared by favorites and comments.
    article_rank = list(range(counts.articles))
    rng.shuffle(article_rank)
    popular = ZipfPicker(article_rank, 0.7)
    favorites = _unique_pairs(rng, counts.favorites, users, popular)
    data.favorites = [
        {
            "user": user,
            "article": article,
            "created_at": _moment(rng, data.articles[article]["created_at"], ANCHOR),
        }
        for user, article in favorites
    ]

    for _ in range(counts.comments):
        article = popular.pick(rng)
        created = _moment(rng, data.articles[article]["created_at"], ANCHOR)
        data.comments.append(
            {
                "article": article,
                "author": rng.choice(users),
                "body": " ".join(_sentence(rng) for _ in range(rng.randint(1, 4))),
                "created_at": created,
                "updated_at": created,
            }
        )
    return data


def _insert_returning_ids(model, rows: list[dict]) -> list[int]:
    """Insert rows in one round trip per batch and return their ids in row order."""
    if not rows:
        return []
    statement = insert(model).returning(model.id, sort_by_parameter_order=True)
    return list(db.session.scalars(statement, rows))


def _insert(model, rows: list[dict]) -> None:
    if rows:
        db.session.execute(insert(model), rows)


def load(data: Dataset, password_hash: str) -> None:
    """Write the dataset in one transaction (all of it or nothing)."""
    user_ids = _insert_returning_ids(
        User,
        [
            {**user, "password_hash": password_hash, "updated_at": user["created_at"]}
            for user in data.users
        ],
    )
    tag_ids = _insert_returning_ids(Tag, [{"name": name} for name in data.tags])
    article_ids = _insert_returning_ids(
        Article,
        [
            {
                "slug": a["slug"],
                "title": a["title"],
                "description": a["description"],
                "body": a["body"],
                "author_id": user_ids[a["author"]],
                "created_at": a["created_at"],
                "updated_at": a["updated_at"],
            }
            for a in data.articles
        ],
    )
    _insert(
        ArticleTag,
        [{"article_id": article_ids[a], "tag_id": tag_ids[t]} for a, t in data.article_tags],
    )
    _insert(
        Follow,
        [
            {
                "follower_id": user_ids[f["follower"]],
                "followed_id": user_ids[f["followed"]],
                "created_at": f["created_at"],
            }
            for f in data.follows
        ],
    )
    _insert(
        Favorite,
        [
            {
                "user_id": user_ids[f["user"]],
                "article_id": article_ids[f["article"]],
                "created_at": f["created_at"],
            }
            for f in data.favorites
        ],
    )
    _insert(
        Comment,
        [
            {
                "article_id": article_ids[c["article"]],
                "author_id": user_ids[c["author"]],
                "body": c["body"],
                "created_at": c["created_at"],
                "updated_at": c["updated_at"],
            }
            for c in data.comments
        ],
    )
    db.session.commit()


SEEDED_TABLES = (User, Tag, Article, ArticleTag, Follow, Favorite, Comment)


def existing_rows() -> dict[str, int]:
    """Rows already in each Conduit table that holds any."""
    counts = {}
    for model in SEEDED_TABLES:
        count = db.session.execute(select(func.count()).select_from(model)).scalar_one()
        if count:
            counts[model.__tablename__] = count
    return counts


def _count_option(name: str, default: int, help: str):
    return click.option(
        f"--{name}", default=default, show_default=True, type=click.IntRange(min=0), help=help
    )


@click.command("seed")
@_count_option("users", 200, "Users to create.")
@_count_option("articles", 2000, "Articles, each with 1 to 5 tags.")
@_count_option("tags", 50, "Distinct tags.")
@_count_option("follows", 1000, "Follow relations between users.")
@_count_option("favorites", 5000, "Favorited (user, article) pairs.")
@_count_option("comments", 4000, "Comments on articles.")
@click.option(
    "--seed",
    "seed",
    default=1,
    show_default=True,
    type=int,
    help="Random seed: the same seed gives the same data.",
)
@click.option(
    "--password",
    default="conduit-seed-password",
    show_default=True,
    help="Password of every seeded user (their emails are <username>@example.com).",
)
def seed_command(
    users: int,
    articles: int,
    tags: int,
    follows: int,
    favorites: int,
    comments: int,
    seed: int,
    password: str,
) -> None:
    """Fill an empty, migrated database with a realistic, deterministic dataset.

    The database and settings come from the environment, as for the app (DATABASE_URL,
    CONDUIT_ENV, ...).
    """
    counts = Counts(users, articles, tags, follows, favorites, comments)
    problems = counts.problems()
    if problems:
        raise click.UsageError("; ".join(problems))
    with create_app().app_context():
        _seed(counts, seed, password)


def _seed(counts: Counts, seed: int, password: str) -> None:
    if not inspect(db.engine).has_table(User.__tablename__):
        raise click.ClickException(
            "the database has no Conduit tables: run `flask db upgrade` first"
        )
    existing = existing_rows()
    if existing:
        found = ", ".join(f"{table}: {count}" for table, count in existing.items())
        raise click.ClickException(
            f"refusing to seed a database that already holds data ({found}); seed an empty database"
        )

    started = time.perf_counter()
    data = generate(counts, seed)
    # One hash for all: the users share the password, and at the production cost a
    # hash per user would take longer than everything else together.
    load(data, hash_password(password))
    elapsed = time.perf_counter() - started
    click.echo(
        f"seeded {len(data.users)} users, {len(data.articles)} articles, {len(data.tags)} tags, "
        f"{len(data.article_tags)} article tags, {len(data.follows)} follows, "
        f"{len(data.favorites)} favorites, {len(data.comments)} comments "
        f"(seed {seed}) in {elapsed:.1f} s"
    )
    if data.users:
        click.echo(f"log in as {data.users[0]['email']} with the --password given")


if __name__ == "__main__":
    seed_command()
