"""The bot's state, on SQLite and on PostgreSQL: digest deliveries exactly once across restarts and
workers; the shared question rate limit; users, answers, feedback."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from bot.digests import enqueue_new_articles
from bot.state import Admission, BotState, StateConfigError, StateUnavailableError, Subscription
from retrieval.answering import Answer
from retrieval.service import ArticleInfo

T = TypeVar("T")


def article(n: int) -> ArticleInfo:
    return ArticleInfo(
        id=f"id{n}",
        title=f"Article {n}",
        url=None,
        date=f"2022-01-{n:02d}",
        lang="en",
        source=None,
        source_name=f"{n}.md",
        chunks=1,
        lead="Lead.",
    )


def answer(question: str, answered: bool = True) -> Answer:
    return Answer(
        question=question,
        language="en",
        answered=answered,
        answer=f"About {question}",
        citations=[],
        evidence=0.9,
        backend="test",
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite3'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def state(state_url: str) -> BotState:
    state = BotState(state_url)
    state.subscribe(Subscription(chat_id=1, lang="en", mode="instant"))
    state.subscribe(Subscription(chat_id=2, lang="ar", mode="daily", daily_time=time(8, 30)))
    return state


def in_threads(works: list[Callable[[], list[T]]]) -> list[T]:
    """Run each work in its own thread at once; all their results, in any order."""
    results: list[T] = []
    threads = [threading.Thread(target=lambda work=work: results.extend(work())) for work in works]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_articles_are_announced_once(state: BotState) -> None:
    assert [a.id for a in state.announce([article(1), article(2)])] == ["id1", "id2"]
    assert state.announce([article(1), article(2), article(3)]) == [article(3)]
    assert [a.id for a in state.claim_pending(1)] == ["id1", "id2", "id3"]
    assert [a.id for a in state.claim_pending(2)] == ["id1", "id2", "id3"]


def test_baseline_queues_nothing(state: BotState) -> None:
    state.announce([article(1)], notify=False)
    assert state.chats_with_pending() == [] and state.announced_count() == 1
    state.announce([article(1), article(2)])
    assert [a.id for a in state.claim_pending(1)] == ["id2"]


def test_pending_by_mode(state: BotState) -> None:
    state.announce([article(1)])
    assert state.chats_with_pending("instant") == [1]
    assert state.chats_with_pending("daily") == [2]


def test_sent_is_never_sent_again(state: BotState, state_url: str) -> None:
    state.announce([article(1), article(2)])
    claimed = state.claim_pending(1)
    state.mark_sent(1, [a.id for a in claimed], message_id=10)
    assert state.claim_pending(1) == []
    state.close()
    restarted = BotState(state_url, digest_lease=timedelta(0))
    assert restarted.chats_with_pending() == [2]
    assert restarted.claim_pending(1) == []


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = datetime(2022, 1, 10, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_a_dead_workers_claim_is_taken_over_when_its_lease_expires(state_url: str) -> None:
    clock = Clock()
    dying = BotState(state_url, digest_lease=timedelta(minutes=2), clock=clock)
    dying.subscribe(Subscription(chat_id=1, lang="en", mode="instant"))
    dying.announce([article(1), article(2), article(3)])
    claimed = dying.claim_pending(1)
    dying.mark_sent(1, ["id1"], message_id=10)  # the first message went out, then the worker died
    dying.close()
    survivor = BotState(state_url, clock=clock)
    clock.advance(119)
    assert survivor.claim_pending(1) == [] and survivor.chats_with_pending() == []  # still leased
    clock.advance(2)
    assert survivor.chats_with_pending() == [1]
    assert [a.id for a in survivor.claim_pending(1)] == ["id2", "id3"]
    assert len(claimed) == 3


def test_a_late_worker_cannot_touch_a_claim_taken_over(state_url: str) -> None:
    slow = BotState(state_url, digest_lease=timedelta(0))
    slow.subscribe(Subscription(chat_id=1, lang="en", mode="instant"))
    slow.announce([article(1)])
    slow.claim_pending(1)  # and its lease expires at once
    other = BotState(state_url)
    assert [a.id for a in other.claim_pending(1)] == ["id1"]
    slow.release(1, ["id1"])  # too late: the claim is the other worker's now
    slow.mark_sent(1, ["id1"], message_id=1)
    assert other.claim_pending(1) == [] and slow.claim_pending(1) == []
    other.mark_sent(1, ["id1"], message_id=2)
    assert other.chats_with_pending() == []


def test_failed_send_gives_articles_back(state: BotState) -> None:
    state.announce([article(1)])
    state.claim_pending(1)
    state.release(1, ["id1"])
    assert [a.id for a in state.claim_pending(1)] == ["id1"]


def test_concurrent_workers_never_share_an_article(state_url: str) -> None:
    setup = BotState(state_url)
    setup.subscribe(Subscription(chat_id=1, lang="en", mode="instant"))
    setup.announce([article(n) for n in range(1, 31)])
    workers = [BotState(state_url) for _ in range(4)]  # separate engines, as separate processes have
    claimed = in_threads([lambda worker=worker: [a.id for a in worker.claim_pending(1)] for worker in workers])
    assert sorted(claimed) == sorted(f"id{n}" for n in range(1, 31))


def test_rate_limit_is_a_burst_then_a_steady_rate_and_tells_once(state_url: str) -> None:
    clock = Clock()
    state = BotState(state_url, clock=clock)
    per_minute = 6  # a burst of 6, then one more question every 10 s
    assert [state.admit_question(7, per_minute) for _ in range(per_minute)] == [Admission.ASK] * per_minute
    assert state.admit_question(7, per_minute) is Admission.REFUSE_AND_TELL
    clock.advance(9)
    assert state.admit_question(7, per_minute) is Admission.REFUSE_QUIETLY
    assert state.admit_question(8, per_minute) is Admission.ASK  # per user
    clock.advance(1)
    assert state.admit_question(7, per_minute) is Admission.ASK
    assert state.admit_question(7, per_minute) is Admission.REFUSE_AND_TELL  # told again after asking again
    clock.advance(600)
    assert [state.admit_question(7, per_minute) for _ in range(per_minute + 1)].count(Admission.ASK) == per_minute


def test_rate_limit_holds_across_workers(state_url: str) -> None:
    workers = [BotState(state_url) for _ in range(6)]
    admissions = in_threads(
        [lambda worker=worker: [worker.admit_question(7, 3) for _ in range(2)] for worker in workers]
    )
    assert admissions.count(Admission.ASK) == 3 and admissions.count(Admission.REFUSE_AND_TELL) == 1


def test_a_state_file_from_before_leases_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript(
            "CREATE TABLE articles (article_id TEXT PRIMARY KEY, info_json TEXT NOT NULL, announced_at TEXT NOT NULL);"
            "CREATE TABLE deliveries (chat_id INTEGER NOT NULL, article_id TEXT NOT NULL REFERENCES articles (article_id),"
            " state TEXT NOT NULL, updated_at TEXT NOT NULL, message_id INTEGER, PRIMARY KEY (chat_id, article_id));"
            "CREATE TABLE subscriptions (chat_id INTEGER PRIMARY KEY, lang TEXT NOT NULL, mode TEXT NOT NULL,"
            " daily_time TEXT, active INTEGER NOT NULL, changed_at TEXT NOT NULL, ended_reason TEXT);"
        )
        old.execute(
            "INSERT INTO articles VALUES ('id1', ?, '2022-01-10T00:00:00+00:00')", (article(1).model_dump_json(),)
        )
        old.execute("INSERT INTO subscriptions VALUES (1, 'en', 'instant', NULL, 1, '2022-01-10T00:00:00+00:00', NULL)")
        old.execute("INSERT INTO deliveries VALUES (1, 'id1', 'pending', '2022-01-10T00:00:00+00:00', NULL)")
    state = BotState(f"sqlite:///{path}")
    assert [a.id for a in state.claim_pending(1)] == ["id1"]


def test_unsubscribe_drops_undelivered_and_later_articles(state: BotState) -> None:
    state.announce([article(1)])
    assert state.unsubscribe(1, reason="blocked") is True
    assert state.unsubscribe(1, reason="user") is False
    state.announce([article(2)])
    state.subscribe(Subscription(chat_id=1, lang="en", mode="instant"))
    assert state.claim_pending(1) == []
    assert [s.chat_id for s in state.subscriptions()] == [1, 2]
    assert state.subscription(2) == Subscription(chat_id=2, lang="ar", mode="daily", daily_time=time(8, 30))


def test_language_from_telegram_until_chosen(state: BotState) -> None:
    assert state.seen_user(7, "ar-EG") == "ar"
    assert state.seen_user(8, None) == "en"
    state.set_language(7, "en")
    assert state.seen_user(7, "ar") == "en"


def test_last_exchange_and_stored_answers(state: BotState) -> None:
    assert state.last_exchange(5) == []
    first = state.record_answer(5, 7, answer("Geneva?"), 120.0)
    state.record_answer(5, 7, answer("NATO?", answered=False), 80.0)
    [last] = state.last_exchange(5)
    assert (last.question, last.answer) == ("NATO?", "About NATO?")
    assert state.stored_answer(first).answer.question == "Geneva?"
    assert state.stored_answer(999) is None


def test_feedback_and_usage_stats(state: BotState) -> None:
    state.seen_user(7, "en")
    first = state.record_answer(5, 7, answer("Geneva?"), 100.0)
    second = state.record_answer(5, 7, answer("Weather?", answered=False), 300.0)
    state.record_feedback(first, 7, -1)
    state.record_feedback(first, 7, 1)  # changed their mind
    state.record_feedback(second, 7, -1)
    assert [item.answer.question for item in state.negative_feedback()] == ["Weather?"]
    stats = state.usage_stats()
    assert (
        stats.users,
        stats.subscribers,
        stats.questions_today,
        stats.declines_today,
    ) == (1, 2, 2, 1)
    assert stats.median_answer_ms == 200.0


def test_enqueue_new_articles_from_an_index_report(state: BotState, service) -> None:
    """What the sources fetcher calls after indexing: only the given, never-announced ids."""
    indexed = service.articles()
    state.announce(indexed[:-1], notify=False)
    fresh = enqueue_new_articles(state, service, [indexed[-1].id, "not-in-the-index"])
    assert [a.id for a in fresh] == [indexed[-1].id]
    assert enqueue_new_articles(state, service, [indexed[-1].id]) == []
    assert [a.title for a in state.claim_pending(1)] == [indexed[-1].title]


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        ("postgresql://talks:hunter2@127.0.0.1:1/talks", StateUnavailableError, "state database failed"),
        ("postgresql//talks:hunter2@nowhere", StateConfigError, "not a database URL"),
        ("postgresql+nodriver://talks:hunter2@db/talks", StateConfigError, "not a database URL"),
        ("mssql+pyodbc://talks:hunter2@db/talks", StateConfigError, "mssql is not supported"),
    ],
)
def test_a_bad_database_is_a_named_error_without_the_password(url: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as raised:
        BotState(url)
    assert "hunter2" not in str(raised.value)
