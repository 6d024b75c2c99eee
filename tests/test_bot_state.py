"""The bot's SQLite state: digest deliveries exactly once, across restarts; users, answers, feedback."""

from __future__ import annotations

import threading
from datetime import time
from pathlib import Path

import pytest

from bot.digests import enqueue_new_articles
from bot.state import BotState, Subscription
from retrieval.answering import Answer
from retrieval.service import ArticleInfo


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


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite3"


@pytest.fixture
def state(db_path: Path) -> BotState:
    state = BotState(db_path)
    state.subscribe(Subscription(chat_id=1, lang="en", mode="instant"))
    state.subscribe(
        Subscription(chat_id=2, lang="ar", mode="daily", daily_time=time(8, 30))
    )
    return state


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


def test_sent_is_never_sent_again(state: BotState, db_path: Path) -> None:
    state.announce([article(1), article(2)])
    claimed = state.claim_pending(1)
    state.mark_sent(1, [a.id for a in claimed], message_id=10)
    assert state.claim_pending(1) == []
    state.close()
    restarted = BotState(db_path)
    assert restarted.release_claims() == 0
    assert restarted.claim_pending(1) == []


def test_crash_between_claim_and_sent_resends_only_the_unsent(
    state: BotState, db_path: Path
) -> None:
    state.announce([article(1), article(2), article(3)])
    claimed = state.claim_pending(1)
    state.mark_sent(
        1, ["id1"], message_id=10
    )  # the first message went out, then the process died
    assert state.claim_pending(1) == []  # still claimed: not handed out twice meanwhile
    state.close()
    restarted = BotState(db_path)
    assert restarted.release_claims() == 2
    assert [a.id for a in restarted.claim_pending(1)] == ["id2", "id3"]
    assert len(claimed) == 3


def test_failed_send_gives_articles_back(state: BotState) -> None:
    state.announce([article(1)])
    state.claim_pending(1)
    state.release(1, ["id1"])
    assert [a.id for a in state.claim_pending(1)] == ["id1"]


def test_concurrent_claims_never_share_an_article(db_path: Path) -> None:
    setup = BotState(db_path)
    setup.subscribe(Subscription(chat_id=1, lang="en", mode="instant"))
    setup.announce([article(n) for n in range(1, 31)])
    results: list[list[str]] = []

    def claim() -> None:
        results.append(
            [a.id for a in BotState(db_path).claim_pending(1)]
        )  # separate connections

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [article_id for result in results for article_id in result]
    assert sorted(claimed) == sorted(f"id{n}" for n in range(1, 31))


def test_unsubscribe_drops_undelivered_and_later_articles(state: BotState) -> None:
    state.announce([article(1)])
    assert state.unsubscribe(1, reason="blocked") is True
    assert state.unsubscribe(1, reason="user") is False
    state.announce([article(2)])
    state.subscribe(Subscription(chat_id=1, lang="en", mode="instant"))
    assert state.claim_pending(1) == []
    assert [s.chat_id for s in state.subscriptions()] == [1, 2]
    assert state.subscription(2) == Subscription(
        chat_id=2, lang="ar", mode="daily", daily_time=time(8, 30)
    )


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
