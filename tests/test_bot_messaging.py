"""Sending through python-telegram-bot to the fake Bot API: splitting, the plain-text fallback
when Telegram rejects the HTML, and digest delivery outcomes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import telegram
from fake_telegram import FakeTelegram
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.digests import deliver_digest
from bot.messaging import send_html
from bot.state import BotState, Subscription
from retrieval.service import ArticleInfo

ALICE = 1001


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        server.user(ALICE, "Alice")
        yield server


@pytest_asyncio.fixture(loop_scope="function")
async def bot(fake: FakeTelegram) -> AsyncIterator[telegram.Bot]:
    async with telegram.Bot(
        fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url
    ) as client:
        yield client


@pytest.mark.asyncio(loop_scope="function")
async def test_rejected_html_is_resent_as_plain_text(
    bot: telegram.Bot, fake: FakeTelegram
) -> None:
    message = await send_html(
        bot, ALICE, '<b>Sources <i>unclosed\n[1] <a href="https://e.org/">Title</a>'
    )
    assert message.text == "Sources unclosed\n[1] Title (https://e.org/)"
    statuses = [call["status"] for call in fake.calls("sendMessage")]
    assert statuses == [400, 200]
    assert "parse_mode" not in fake.calls("sendMessage")[-1]["params"]


@pytest.mark.asyncio(loop_scope="function")
async def test_long_answer_is_split_with_buttons_under_the_last_part(
    bot: telegram.Bot, fake: FakeTelegram
) -> None:
    question = fake.send_text(fake.user(ALICE, "Alice"), "q")["message"]
    keyboard = InlineKeyboardMarkup(
        [[InlineKeyboardButton("👍", callback_data="fb:1:+")]]
    )
    markup = "\n\n".join(f"<b>Paragraph {n}</b> " + "word " * 200 for n in range(10))
    last = await send_html(
        bot, ALICE, markup, reply_to=question["message_id"], keyboard=keyboard
    )
    sent = fake.sent(ALICE)
    assert len(sent) == 3 and sent[-1]["message_id"] == last.message_id
    assert [("reply_to_message" in m, "reply_markup" in m) for m in sent] == [
        (True, False),
        (False, False),
        (False, True),
    ]
    assert "".join(m["text"] for m in sent).count("Paragraph") == 10


def article(n: int) -> ArticleInfo:
    return ArticleInfo(
        id=f"id{n}",
        title=f"Article {n}",
        url=f"https://example.org/{n}",
        date="2022-01-10",
        lang="en",
        source="Example",
        source_name=f"{n}.md",
        chunks=1,
        lead="Lead sentence.",
    )


@pytest.fixture
def state(tmp_path: Path) -> Iterator[BotState]:
    state = BotState(f"sqlite:///{tmp_path / 'state.sqlite3'}")
    state.subscribe(Subscription(chat_id=ALICE, lang="en", mode="instant"))
    yield state
    state.close()


@pytest.mark.asyncio(loop_scope="function")
async def test_digest_is_delivered_and_marked_sent(
    bot: telegram.Bot, fake: FakeTelegram, state: BotState
) -> None:
    state.announce([article(1), article(2)])
    assert await deliver_digest(bot, state, ALICE, "en") == 2
    [message] = fake.sent(ALICE)
    assert "Article 1" in message["text"] and "Article 2" in message["text"]
    assert await deliver_digest(bot, state, ALICE, "en") == 0


@pytest.mark.asyncio(loop_scope="function")
async def test_blocked_subscriber_is_unsubscribed(
    bot: telegram.Bot, fake: FakeTelegram, state: BotState
) -> None:
    state.announce([article(1)])
    fake.block(ALICE)
    assert await deliver_digest(bot, state, ALICE, "en") == 0
    assert state.subscription(ALICE) is None


@pytest.mark.asyncio(loop_scope="function")
async def test_other_failures_leave_the_digest_pending(
    bot: telegram.Bot, fake: FakeTelegram, state: BotState
) -> None:
    state.announce([article(1)])
    fake.arm_flood(
        "sendMessage", 1, retry_after=1
    )  # a bare Bot has no rate limiter to wait it out
    assert await deliver_digest(bot, state, ALICE, "en") == 0
    assert state.subscription(ALICE) is not None
    assert await deliver_digest(bot, state, ALICE, "en") == 1


@pytest.mark.asyncio(loop_scope="function")
async def test_subscriber_whose_chat_is_gone_is_unsubscribed(
    bot: telegram.Bot, state: BotState
) -> None:
    state.subscribe(
        Subscription(chat_id=999, lang="en", mode="instant")
    )  # unknown to Telegram
    state.announce([article(1)])
    assert await deliver_digest(bot, state, 999, "en") == 0
    assert state.subscription(999) is None and state.subscription(ALICE) is not None
