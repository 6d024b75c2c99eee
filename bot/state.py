"""The bot's memory, in SQLite under TALKS_DATA_DIR: users and their language, answers
(follow-ups, the passages button, /stats), feedback, subscriptions and digest deliveries.

Digest deliveries are one row per (chat, article) moving pending → claimed → sent: an
article is claimed before its message is sent and marked sent right after Telegram accepts
it, so a restart resends only what was never accepted (see `release_claims`).
"""

from __future__ import annotations

import sqlite3
import statistics
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from bot.texts import Lang, language_of
from retrieval.answering import Answer
from retrieval.service import ArticleInfo, Exchange

DigestMode = Literal["instant", "daily"]
FOLLOW_UP_WINDOW = timedelta(hours=1)  # older exchanges are not used for follow-ups

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id INTEGER PRIMARY KEY,
    lang TEXT,                      -- chosen with /lang; NULL: from Telegram's language_code
    telegram_lang TEXT,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    asked_at TEXT NOT NULL,
    question TEXT NOT NULL,
    answered INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    answer_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_chat ON answers (chat_id, id);
CREATE INDEX IF NOT EXISTS answers_by_time ON answers (asked_at);
CREATE TABLE IF NOT EXISTS feedback (
    answer_id INTEGER NOT NULL REFERENCES answers (id),
    user_id INTEGER NOT NULL,
    vote INTEGER NOT NULL CHECK (vote IN (-1, 1)),
    at TEXT NOT NULL,
    PRIMARY KEY (answer_id, user_id)
);
CREATE TABLE IF NOT EXISTS subscriptions (
    chat_id INTEGER PRIMARY KEY,
    lang TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('instant', 'daily')),
    daily_time TEXT,
    active INTEGER NOT NULL,
    changed_at TEXT NOT NULL,
    ended_reason TEXT
);
CREATE TABLE IF NOT EXISTS articles (     -- articles announced to subscribers, once each
    article_id TEXT PRIMARY KEY,
    info_json TEXT NOT NULL,
    announced_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    chat_id INTEGER NOT NULL,
    article_id TEXT NOT NULL REFERENCES articles (article_id),
    state TEXT NOT NULL CHECK (state IN ('pending', 'claimed', 'sent')),
    updated_at TEXT NOT NULL,
    message_id INTEGER,
    PRIMARY KEY (chat_id, article_id)
);
CREATE INDEX IF NOT EXISTS deliveries_by_state ON deliveries (state, chat_id);
"""


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
    return datetime.now(UTC).isoformat(timespec="seconds")


class BotState:
    """One SQLite connection shared by the bot's handlers and jobs (thread-safe)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Iterable[object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    # --- users ------------------------------------------------------------------

    def seen_user(self, user_id: int, telegram_lang: str | None) -> Lang:
        """Record that the user wrote (and their Telegram language); returns their UI language."""
        now = _now()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO users (user_id, telegram_lang, first_seen, last_seen) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET telegram_lang = excluded.telegram_lang, last_seen = excluded.last_seen",
                (user_id, telegram_lang, now, now),
            )
            row = db.execute(
                "SELECT lang FROM users WHERE user_id = ?", (user_id,)
            ).fetchone()
        return row["lang"] or language_of(telegram_lang)

    def set_language(self, user_id: int, lang: Lang) -> None:
        with self._transaction() as db:
            db.execute("UPDATE users SET lang = ? WHERE user_id = ?", (lang, user_id))
            db.execute(
                "UPDATE subscriptions SET lang = ? WHERE chat_id = ?", (lang, user_id)
            )

    # --- answers and feedback ------------------------------------------------------

    def record_answer(
        self, chat_id: int, user_id: int, answer: Answer, duration_ms: float
    ) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO answers (chat_id, user_id, asked_at, question, answered, duration_ms, answer_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    chat_id,
                    user_id,
                    _now(),
                    answer.question,
                    int(answer.answered),
                    duration_ms,
                    answer.model_dump_json(),
                ),
            )
            return int(cursor.lastrowid or 0)

    def stored_answer(self, answer_id: int) -> StoredAnswer | None:
        rows = self._query(
            "SELECT id, chat_id, answer_json FROM answers WHERE id = ?", (answer_id,)
        )
        if not rows:
            return None
        row = rows[0]
        return StoredAnswer(
            id=row["id"],
            chat_id=row["chat_id"],
            answer=Answer.model_validate_json(row["answer_json"]),
        )

    def last_exchange(self, chat_id: int) -> list[Exchange]:
        """The chat's last question and answer, if recent enough to be followed up on."""
        since = (datetime.now(UTC) - FOLLOW_UP_WINDOW).isoformat(timespec="seconds")
        rows = self._query(
            "SELECT question, answer_json FROM answers WHERE chat_id = ? AND asked_at >= ? ORDER BY id DESC LIMIT 1",
            (chat_id, since),
        )
        return [
            Exchange(
                question=row["question"],
                answer=Answer.model_validate_json(row["answer_json"]).answer,
            )
            for row in rows
        ]

    def record_feedback(
        self, answer_id: int, user_id: int, vote: Literal[-1, 1]
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO feedback (answer_id, user_id, vote, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (answer_id, user_id) DO UPDATE SET vote = excluded.vote, at = excluded.at",
                (answer_id, user_id, vote, _now()),
            )

    def negative_feedback(self, limit: int = 10) -> list[FeedbackItem]:
        rows = self._query(
            "SELECT f.answer_id, f.user_id, f.at, a.answer_json FROM feedback f JOIN answers a ON a.id = f.answer_id "
            "WHERE f.vote = -1 ORDER BY f.at DESC, f.answer_id DESC LIMIT ?",
            (limit,),
        )
        return [
            FeedbackItem(
                answer_id=row["answer_id"],
                user_id=row["user_id"],
                at=row["at"],
                answer=Answer.model_validate_json(row["answer_json"]),
            )
            for row in rows
        ]

    def usage_stats(self) -> UsageStats:
        today = datetime.now(UTC).date().isoformat()
        durations = [
            row["duration_ms"]
            for row in self._query(
                "SELECT duration_ms FROM answers WHERE asked_at >= ?", (today,)
            )
        ]
        declines = self._query(
            "SELECT COUNT(*) FROM answers WHERE asked_at >= ? AND answered = 0",
            (today,),
        )[0][0]
        return UsageStats(
            users=self._query("SELECT COUNT(*) FROM users")[0][0],
            subscribers=self._query(
                "SELECT COUNT(*) FROM subscriptions WHERE active = 1"
            )[0][0],
            questions_today=len(durations),
            declines_today=declines,
            median_answer_ms=statistics.median(durations) if durations else None,
        )

    # --- subscriptions ----------------------------------------------------------------

    def subscribe(self, subscription: Subscription) -> None:
        daily = (
            subscription.daily_time.strftime("%H:%M")
            if subscription.daily_time
            else None
        )
        with self._transaction() as db:
            db.execute(
                "INSERT INTO subscriptions (chat_id, lang, mode, daily_time, active, changed_at) VALUES (?, ?, ?, ?, 1, ?) "
                "ON CONFLICT (chat_id) DO UPDATE SET lang = excluded.lang, mode = excluded.mode, "
                "daily_time = excluded.daily_time, active = 1, changed_at = excluded.changed_at, ended_reason = NULL",
                (
                    subscription.chat_id,
                    subscription.lang,
                    subscription.mode,
                    daily,
                    _now(),
                ),
            )

    def unsubscribe(self, chat_id: int, reason: str) -> bool:
        """End the chat's subscription and drop its undelivered digests; False if none was active."""
        with self._transaction() as db:
            ended = db.execute(
                "UPDATE subscriptions SET active = 0, changed_at = ?, ended_reason = ? WHERE chat_id = ? AND active = 1",
                (_now(), reason, chat_id),
            ).rowcount
            db.execute(
                "DELETE FROM deliveries WHERE chat_id = ? AND state != 'sent'",
                (chat_id,),
            )
        return bool(ended)

    def subscription(self, chat_id: int) -> Subscription | None:
        rows = self._query(
            "SELECT * FROM subscriptions WHERE chat_id = ? AND active = 1", (chat_id,)
        )
        return self._subscription(rows[0]) if rows else None

    def subscriptions(self) -> list[Subscription]:
        return [
            self._subscription(row)
            for row in self._query(
                "SELECT * FROM subscriptions WHERE active = 1 ORDER BY chat_id"
            )
        ]

    @staticmethod
    def _subscription(row: sqlite3.Row) -> Subscription:
        return Subscription(
            chat_id=row["chat_id"],
            lang=row["lang"],
            mode=row["mode"],
            daily_time=row["daily_time"],
        )

    # --- digests --------------------------------------------------------------------------

    def announced_count(self) -> int:
        return self._query("SELECT COUNT(*) FROM articles")[0][0]

    def announce(
        self, articles: Iterable[ArticleInfo], *, notify: bool = True
    ) -> list[ArticleInfo]:
        """Record articles never announced before and, with `notify`, queue them for every
        active subscriber. Returns the newly announced articles; repeats are ignored."""
        fresh = []
        now = _now()
        with self._transaction() as db:
            chats = [
                row[0]
                for row in db.execute(
                    "SELECT chat_id FROM subscriptions WHERE active = 1"
                )
            ]
            for article in articles:
                inserted = db.execute(
                    "INSERT OR IGNORE INTO articles (article_id, info_json, announced_at) VALUES (?, ?, ?)",
                    (article.id, article.model_dump_json(), now),
                ).rowcount
                if not inserted:
                    continue
                fresh.append(article)
                if notify:
                    db.executemany(
                        "INSERT OR IGNORE INTO deliveries (chat_id, article_id, state, updated_at) VALUES (?, ?, 'pending', ?)",
                        [(chat_id, article.id, now) for chat_id in chats],
                    )
        return fresh

    def chats_with_pending(self, mode: DigestMode | None = None) -> list[int]:
        rows = self._query(
            "SELECT DISTINCT d.chat_id FROM deliveries d JOIN subscriptions s ON s.chat_id = d.chat_id "
            "WHERE d.state = 'pending' AND s.active = 1 AND (? IS NULL OR s.mode = ?) ORDER BY d.chat_id",
            (mode, mode),
        )
        return [row[0] for row in rows]

    def claim_pending(self, chat_id: int) -> list[ArticleInfo]:
        """Claim the chat's pending articles (oldest first) for sending; nobody else gets them."""
        with self._transaction() as db:
            claimed = db.execute(
                "UPDATE deliveries SET state = 'claimed', updated_at = ? WHERE chat_id = ? AND state = 'pending' "
                "RETURNING article_id",
                (_now(), chat_id),
            ).fetchall()
            ids = [row[0] for row in claimed]
            infos = db.execute(
                f"SELECT info_json FROM articles WHERE article_id IN ({','.join('?' * len(ids))})",
                ids,
            ).fetchall()
        articles = [ArticleInfo.model_validate_json(row[0]) for row in infos]
        return sorted(articles, key=lambda a: (a.date or "", a.title))

    def mark_sent(
        self, chat_id: int, article_ids: Iterable[str], message_id: int
    ) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE deliveries SET state = 'sent', updated_at = ?, message_id = ? "
                "WHERE chat_id = ? AND article_id = ? AND state = 'claimed'",
                [
                    (_now(), message_id, chat_id, article_id)
                    for article_id in article_ids
                ],
            )

    def release(self, chat_id: int, article_ids: Iterable[str]) -> None:
        """Give claimed articles back (sending failed for a reason that may pass)."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE deliveries SET state = 'pending', updated_at = ? WHERE chat_id = ? AND article_id = ? AND state = 'claimed'",
                [(_now(), chat_id, article_id) for article_id in article_ids],
            )

    def release_claims(self) -> int:
        """At startup: claims left by a process that stopped mid-send go back to pending.

        Only a message in flight at the moment of a crash can be both accepted by Telegram
        and still claimed here; that one is sent again, everything else exactly once.
        """
        with self._transaction() as db:
            return db.execute(
                "UPDATE deliveries SET state = 'pending', updated_at = ? WHERE state = 'claimed'",
                (_now(),),
            ).rowcount
