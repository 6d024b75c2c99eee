"""The bot's memory: users and their language, answers (follow-ups, the passages button,
/stats), feedback, subscriptions, digest deliveries and question rate limits.

One storage interface over SQLAlchemy: SQLite in TALKS_DATA_DIR by default, PostgreSQL (or any
database SQLAlchemy speaks with ON CONFLICT) when DATABASE_URL is set, so that several bot
workers share one state.

Digest deliveries are one row per (chat, article) moving pending → claimed → sent. A worker
claims a chat's articles with a lease before sending and marks them sent right after Telegram
accepts them; a claim whose worker died is claimed again once its lease has expired. So every
article reaches every subscriber once, whatever the number of workers; only a message in flight
at the moment a worker dies can be sent twice.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    delete,
    event,
    func,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from bot.texts import Lang, language_of
from retrieval.answering import Answer
from retrieval.service import ArticleInfo, Exchange
from talks.settings import Settings

DigestMode = Literal["instant", "daily"]
FOLLOW_UP_WINDOW = timedelta(hours=1)  # older exchanges are not used for follow-ups
UPSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}  # INSERT … ON CONFLICT, per database
SCHEMA_LOCK_KEY = 0x74616C6B73  # "talks": a PostgreSQL advisory lock held while creating the tables

metadata = MetaData()
# Telegram ids exceed 32 bits (group chats are -100…); timestamps are ISO-8601 UTC text, which
# sorts as time on every database and keeps state files of earlier versions readable.
users = Table(
    "users",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("lang", String),  # chosen with /lang; NULL: from Telegram's language_code
    Column("telegram_lang", String),
    Column("first_seen", String, nullable=False),
    Column("last_seen", String, nullable=False),
)
answers = Table(
    "answers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("chat_id", BigInteger, nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("asked_at", String, nullable=False),
    Column("question", Text, nullable=False),
    Column("answered", Integer, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("answer_json", Text, nullable=False),
    Index("answers_by_chat", "chat_id", "id"),
    Index("answers_by_time", "asked_at"),
)
feedback = Table(
    "feedback",
    metadata,
    Column("answer_id", Integer, ForeignKey("answers.id"), primary_key=True),
    Column("user_id", BigInteger, primary_key=True),
    Column("vote", Integer, CheckConstraint("vote IN (-1, 1)"), nullable=False),
    Column("at", String, nullable=False),
)
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("chat_id", BigInteger, primary_key=True, autoincrement=False),
    Column("lang", String, nullable=False),
    Column("mode", String, CheckConstraint("mode IN ('instant', 'daily')"), nullable=False),
    Column("daily_time", String),
    Column("active", Integer, nullable=False),
    Column("changed_at", String, nullable=False),
    Column("ended_reason", String),
)
announced_articles = Table(  # articles announced to subscribers, once each
    "articles",
    metadata,
    Column("article_id", String, primary_key=True),
    Column("info_json", Text, nullable=False),
    Column("announced_at", String, nullable=False),
)
deliveries = Table(
    "deliveries",
    metadata,
    Column("chat_id", BigInteger, primary_key=True, autoincrement=False),
    Column("article_id", String, ForeignKey("articles.article_id"), primary_key=True),
    Column("state", String, CheckConstraint("state IN ('pending', 'claimed', 'sent')"), nullable=False),
    Column("updated_at", String, nullable=False),
    Column("message_id", BigInteger),
    Column("claimed_by", String),  # the worker holding the claim
    Column("lease_expires", String),  # after this, the claim is anybody's again
    Index("deliveries_by_state", "state", "chat_id"),
)
question_buckets = Table(  # per-user token buckets of the question rate limit
    "question_buckets",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("tokens", Float, nullable=False),
    Column("updated", Float, nullable=False),  # epoch seconds
    Column("told", Boolean, nullable=False),  # the user was told they are limited
)


class StateConfigError(ValueError):
    """DATABASE_URL is not something SQLAlchemy can connect with."""


class StateUnavailableError(Exception):
    """The state database cannot be reached or written (server down, disk full)."""


class Admission(Enum):
    """What the question rate limit says about one more question."""

    ASK = "ask"
    REFUSE_AND_TELL = "refuse_and_tell"  # the first refusal: say why
    REFUSE_QUIETLY = "refuse_quietly"  # already told


class Subscription(BaseModel):
    chat_id: int
    lang: Lang
    mode: DigestMode
    daily_time: time | None = None


class StoredAnswer(BaseModel):
    id: int
    chat_id: int
    answer: Answer


class FeedbackItem(BaseModel):
    answer_id: int
    user_id: int
    at: str
    answer: Answer


class UsageStats(BaseModel):
    users: int
    subscribers: int
    questions_today: int
    declines_today: int
    median_answer_ms: float | None


def _now() -> str:
    return _iso(datetime.now(UTC))


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def database_url(url: str) -> str:
    """The SQLAlchemy URL for a DATABASE_URL: `postgres://` and `postgresql://` use psycopg 3."""
    scheme, _, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return url


def _sqlite_immediate_transactions(engine: Engine) -> None:
    """SQLite: WAL, foreign keys, and BEGIN IMMEDIATE, so that a transaction that reads then
    writes takes the write lock up front instead of failing halfway with "database is locked"."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy, not the driver, begins transactions
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA foreign_keys=ON")
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class BotState:
    """The bot's state in one database, shared by handlers, jobs and (with PostgreSQL) workers.

    Thread-safe: each call takes a connection from the engine's pool for one transaction.
    """

    def __init__(
        self,
        url: str,
        *,
        digest_lease: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        try:
            sa_url = make_url(database_url(url))
            if sa_url.get_backend_name() not in UPSERTS:
                raise StateConfigError(
                    f"DATABASE_URL: {sa_url.get_backend_name()} is not supported; use PostgreSQL or SQLite"
                )
            self._engine = create_engine(sa_url, pool_pre_ping=True)
        except (ArgumentError, NoSuchModuleError) as error:  # their messages would show the password
            raise StateConfigError(
                f"DATABASE_URL is not a database URL SQLAlchemy can use ({type(error).__name__}); "
                "e.g. postgresql://user:password@host/dbname"
            ) from None
        if self.backend == "sqlite":
            if sa_url.database:
                Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
            _sqlite_immediate_transactions(self._engine)
        self._insert = UPSERTS[self.backend]
        self.digest_lease = digest_lease
        self.worker_id = uuid.uuid4().hex  # marks this process's digest claims
        self.clock = clock  # what leases and the rate limit measure time with
        with self._transaction() as db:
            if self.backend == "postgresql":  # workers starting together must not create the tables twice
                db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            metadata.create_all(db)
            _add_missing_columns(db)

    @classmethod
    def from_settings(cls, settings: Settings) -> BotState:
        return cls(settings.state_url, digest_lease=timedelta(seconds=settings.digest_lease_seconds))

    @property
    def backend(self) -> str:
        """The database's kind ("sqlite", "postgresql"), never its address or password."""
        return self._engine.dialect.name

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        try:
            with self._engine.begin() as connection:
                yield connection
        except SQLAlchemyError as error:
            raise StateUnavailableError(
                f"the bot's state database failed: {type(error.orig or error).__name__}: {error.orig or error}"
            ) from error

    def _rows(self, query: Any) -> list[Any]:
        with self._transaction() as db:
            return list(db.execute(query))

    def _scalar(self, query: Any) -> Any:
        with self._transaction() as db:
            return db.execute(query).scalar_one()

    # --- users ------------------------------------------------------------------

    def seen_user(self, user_id: int, telegram_lang: str | None) -> Lang:
        """Record that the user wrote (and their Telegram language); returns their UI language."""
        now = _now()
        upsert = self._insert(users).values(user_id=user_id, telegram_lang=telegram_lang, first_seen=now, last_seen=now)
        upsert = upsert.on_conflict_do_update(
            index_elements=[users.c.user_id],
            set_={"telegram_lang": upsert.excluded.telegram_lang, "last_seen": upsert.excluded.last_seen},
        )
        with self._transaction() as db:
            db.execute(upsert)
            lang = db.execute(select(users.c.lang).where(users.c.user_id == user_id)).scalar_one()
        return lang or language_of(telegram_lang)

    def set_language(self, user_id: int, lang: Lang) -> None:
        with self._transaction() as db:
            db.execute(update(users).where(users.c.user_id == user_id).values(lang=lang))
            db.execute(update(subscriptions).where(subscriptions.c.chat_id == user_id).values(lang=lang))

    def admit_question(self, user_id: int, per_minute: int) -> Admission:
        """The question rate limit, a token bucket per user shared by every worker: a burst of
        `per_minute` questions, then one every 60/`per_minute` s. A limited user is told once,
        and again only after they could ask once more."""
        with self._transaction() as db:
            db.execute(
                self._insert(question_buckets)
                .values(user_id=user_id, tokens=float(per_minute), updated=self.clock().timestamp(), told=False)
                .on_conflict_do_nothing(index_elements=[question_buckets.c.user_id])
            )
            bucket = db.execute(
                select(question_buckets).where(question_buckets.c.user_id == user_id).with_for_update()
            ).one()
            # Read the time once the row is locked, and never let it run backwards (clock skew
            # between workers): a stale time would take tokens away.
            now = max(self.clock().timestamp(), bucket.updated)
            tokens = min(float(per_minute), bucket.tokens + (now - bucket.updated) * per_minute / 60)
            if tokens >= 1:
                admission, tokens, told = Admission.ASK, tokens - 1, False
            else:
                admission = Admission.REFUSE_QUIETLY if bucket.told else Admission.REFUSE_AND_TELL
                told = True
            db.execute(
                update(question_buckets)
                .where(question_buckets.c.user_id == user_id)
                .values(tokens=tokens, updated=now, told=told)
            )
        return admission

    # --- answers and feedback ------------------------------------------------------

    def record_answer(self, chat_id: int, user_id: int, answer: Answer, duration_ms: float) -> int:
        with self._transaction() as db:
            return db.execute(
                answers.insert()
                .values(
                    chat_id=chat_id,
                    user_id=user_id,
                    asked_at=_now(),
                    question=answer.question,
                    answered=int(answer.answered),
                    duration_ms=duration_ms,
                    answer_json=answer.model_dump_json(),
                )
                .returning(answers.c.id)
            ).scalar_one()

    def stored_answer(self, answer_id: int) -> StoredAnswer | None:
        rows = self._rows(
            select(answers.c.id, answers.c.chat_id, answers.c.answer_json).where(answers.c.id == answer_id)
        )
        if not rows:
            return None
        [row] = rows
        return StoredAnswer(id=row.id, chat_id=row.chat_id, answer=Answer.model_validate_json(row.answer_json))

    def last_exchange(self, chat_id: int) -> list[Exchange]:
        """The chat's last question and answer, if recent enough to be followed up on."""
        since = _iso(datetime.now(UTC) - FOLLOW_UP_WINDOW)
        rows = self._rows(
            select(answers.c.question, answers.c.answer_json)
            .where(answers.c.chat_id == chat_id, answers.c.asked_at >= since)
            .order_by(answers.c.id.desc())
            .limit(1)
        )
        return [
            Exchange(question=row.question, answer=Answer.model_validate_json(row.answer_json).answer) for row in rows
        ]

    def record_feedback(self, answer_id: int, user_id: int, vote: Literal[-1, 1]) -> None:
        upsert = self._insert(feedback).values(answer_id=answer_id, user_id=user_id, vote=vote, at=_now())
        upsert = upsert.on_conflict_do_update(
            index_elements=[feedback.c.answer_id, feedback.c.user_id],
            set_={"vote": upsert.excluded.vote, "at": upsert.excluded.at},
        )
        with self._transaction() as db:
            db.execute(upsert)

    def negative_feedback(self, limit: int = 10) -> list[FeedbackItem]:
        rows = self._rows(
            select(feedback.c.answer_id, feedback.c.user_id, feedback.c.at, answers.c.answer_json)
            .join(answers, answers.c.id == feedback.c.answer_id)
            .where(feedback.c.vote == -1)
            .order_by(feedback.c.at.desc(), feedback.c.answer_id.desc())
            .limit(limit)
        )
        return [
            FeedbackItem(
                answer_id=row.answer_id,
                user_id=row.user_id,
                at=row.at,
                answer=Answer.model_validate_json(row.answer_json),
            )
            for row in rows
        ]

    def usage_stats(self) -> UsageStats:
        today = datetime.now(UTC).date().isoformat()
        with self._transaction() as db:
            answered_today = db.execute(
                select(answers.c.duration_ms, answers.c.answered).where(answers.c.asked_at >= today)
            ).all()
            user_count = db.execute(select(func.count()).select_from(users)).scalar_one()
            subscriber_count = db.execute(
                select(func.count()).select_from(subscriptions).where(subscriptions.c.active == 1)
            ).scalar_one()
        durations = [row.duration_ms for row in answered_today]
        return UsageStats(
            users=user_count,
            subscribers=subscriber_count,
            questions_today=len(durations),
            declines_today=sum(1 for row in answered_today if not row.answered),
            median_answer_ms=statistics.median(durations) if durations else None,
        )

    # --- subscriptions ----------------------------------------------------------------

    def subscribe(self, subscription: Subscription) -> None:
        daily = subscription.daily_time.strftime("%H:%M") if subscription.daily_time else None
        upsert = self._insert(subscriptions).values(
            chat_id=subscription.chat_id,
            lang=subscription.lang,
            mode=subscription.mode,
            daily_time=daily,
            active=1,
            changed_at=_now(),
        )
        upsert = upsert.on_conflict_do_update(
            index_elements=[subscriptions.c.chat_id],
            set_={
                "lang": upsert.excluded.lang,
                "mode": upsert.excluded.mode,
                "daily_time": upsert.excluded.daily_time,
                "active": 1,
                "changed_at": upsert.excluded.changed_at,
                "ended_reason": None,
            },
        )
        with self._transaction() as db:
            db.execute(upsert)

    def unsubscribe(self, chat_id: int, reason: str) -> bool:
        """End the chat's subscription and drop its undelivered digests; False if none was active."""
        with self._transaction() as db:
            ended = db.execute(
                update(subscriptions)
                .where(subscriptions.c.chat_id == chat_id, subscriptions.c.active == 1)
                .values(active=0, changed_at=_now(), ended_reason=reason)
            ).rowcount
            db.execute(delete(deliveries).where(deliveries.c.chat_id == chat_id, deliveries.c.state != "sent"))
        return bool(ended)

    def subscription(self, chat_id: int) -> Subscription | None:
        rows = self._rows(select(subscriptions).where(subscriptions.c.chat_id == chat_id, subscriptions.c.active == 1))
        return _subscription(rows[0]) if rows else None

    def subscriptions(self) -> list[Subscription]:
        rows = self._rows(select(subscriptions).where(subscriptions.c.active == 1).order_by(subscriptions.c.chat_id))
        return [_subscription(row) for row in rows]

    # --- digests --------------------------------------------------------------------------

    def announced_count(self) -> int:
        return self._scalar(select(func.count()).select_from(announced_articles))

    def announce(self, articles: Iterable[ArticleInfo], *, notify: bool = True) -> list[ArticleInfo]:
        """Record articles never announced before and, with `notify`, queue them for every
        active subscriber. Returns the newly announced articles; repeats are ignored."""
        fresh = []
        now = _now()
        with self._transaction() as db:
            chats = db.execute(select(subscriptions.c.chat_id).where(subscriptions.c.active == 1)).scalars().all()
            for article in articles:
                inserted = db.execute(
                    self._insert(announced_articles)
                    .values(article_id=article.id, info_json=article.model_dump_json(), announced_at=now)
                    .on_conflict_do_nothing(index_elements=[announced_articles.c.article_id])
                    .returning(announced_articles.c.article_id)
                ).first()
                if inserted is None:
                    continue
                fresh.append(article)
                if notify and chats:
                    db.execute(
                        self._insert(deliveries).on_conflict_do_nothing(
                            index_elements=[deliveries.c.chat_id, deliveries.c.article_id]
                        ),
                        [
                            {"chat_id": chat_id, "article_id": article.id, "state": "pending", "updated_at": now}
                            for chat_id in chats
                        ],
                    )
        return fresh

    def _claimable(self, now: str) -> Any:
        """Deliveries a worker may claim: pending ones, and claims whose lease has expired."""
        return or_(
            deliveries.c.state == "pending",
            and_(deliveries.c.state == "claimed", deliveries.c.lease_expires < now),
        )

    def chats_with_pending(self, mode: DigestMode | None = None) -> list[int]:
        query = (
            select(deliveries.c.chat_id)
            .distinct()
            .join(subscriptions, subscriptions.c.chat_id == deliveries.c.chat_id)
            .where(self._claimable(_iso(self.clock())), subscriptions.c.active == 1)
            .order_by(deliveries.c.chat_id)
        )
        if mode is not None:
            query = query.where(subscriptions.c.mode == mode)
        return [row.chat_id for row in self._rows(query)]

    def claim_pending(self, chat_id: int) -> list[ArticleInfo]:
        """Claim the chat's pending articles (oldest first) for sending: no other worker gets them
        until this one marks them sent, gives them back, or lets the lease expire."""
        now = self.clock()
        with self._transaction() as db:
            ids = (
                db.execute(
                    update(deliveries)
                    .where(deliveries.c.chat_id == chat_id, self._claimable(_iso(now)))
                    .values(
                        state="claimed",
                        updated_at=_iso(now),
                        claimed_by=self.worker_id,
                        lease_expires=_iso(now + self.digest_lease),
                    )
                    .returning(deliveries.c.article_id)
                )
                .scalars()
                .all()
            )
            infos = db.execute(
                select(announced_articles.c.info_json).where(announced_articles.c.article_id.in_(ids))
            ).scalars()
            articles = [ArticleInfo.model_validate_json(info) for info in infos]
        return sorted(articles, key=lambda a: (a.date or "", a.title))

    def _own_claims(self, chat_id: int, article_ids: Iterable[str], **values: object) -> None:
        with self._transaction() as db:
            db.execute(
                update(deliveries)
                .where(
                    deliveries.c.chat_id == chat_id,
                    deliveries.c.article_id.in_(list(article_ids)),
                    deliveries.c.state == "claimed",
                    deliveries.c.claimed_by == self.worker_id,
                )
                .values(updated_at=_now(), lease_expires=None, **values)
            )

    def mark_sent(self, chat_id: int, article_ids: Iterable[str], message_id: int) -> None:
        self._own_claims(chat_id, article_ids, state="sent", message_id=message_id)

    def release(self, chat_id: int, article_ids: Iterable[str]) -> None:
        """Give claimed articles back (sending failed for a reason that may pass)."""
        self._own_claims(chat_id, article_ids, state="pending", claimed_by=None)


def _subscription(row: Mapping[str, Any] | Any) -> Subscription:
    return Subscription(chat_id=row.chat_id, lang=row.lang, mode=row.mode, daily_time=row.daily_time)


def _add_missing_columns(db: Connection) -> None:
    """State files written before digest leases existed lack their two columns."""
    present = {column["name"] for column in inspect(db).get_columns(deliveries.name)}
    for column in ("claimed_by", "lease_expires"):
        if column not in present:
            db.execute(text(f"ALTER TABLE {deliveries.name} ADD COLUMN {column} VARCHAR"))
