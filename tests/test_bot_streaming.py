"""Streaming answers, end to end: the real `talks bot` process with TALKS_LLM=openai pointed at the
fake OpenAI-compatible server, against the fake Telegram Bot API.

In private chats the answer appears as message drafts while the model writes it, then the final
checked answer is sent once, with its sources and buttons; groups get the final message only.
With the model's server down, users still get the cited extractive answer, with a note.
One bot process serves the module; the tests run in file order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from bot_process import JSON, BotProcess, bot_env, buttons, reply_to, say
from fake_llm import FakeLLM, Reply
from fake_telegram import FakeTelegram

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

QUESTION = "What did Russia demand at the Geneva talks?"
STREAMED = (
    "Russia demanded legally binding guarantees that NATO would not expand further east [1]."
)
CHUNK_DELAY_S = 0.2  # 14 words: the reply takes ~3 s to stream, drafts come at most once a second


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    server = FakeLLM()
    server.start()
    yield server
    with contextlib.suppress(RuntimeError):  # "event loop is closed": stopped by a test already
        server.stop()


@pytest.fixture(scope="module")
def bot(
    fake: FakeTelegram,
    llm: FakeLLM,
    corpus_dir: Path,
    model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BotProcess]:
    workdir = tmp_path_factory.mktemp("bot_streaming")
    env = bot_env(
        fake,
        workdir / "data",
        corpus_dir,
        model_dir,
        TALKS_LLM="openai",
        TALKS_LLM_BASE_URL=llm.openai_base_url,
        TALKS_LLM_MODEL="fake-model",
        TALKS_LLM_TIMEOUT="10",
        TALKS_LLM_MAX_RETRIES="0",
    )
    process = BotProcess(fake, env, workdir)
    process.start()
    yield process
    process.stop()


def drafts_in(fake: FakeTelegram, chat_id: int) -> list[JSON]:
    return [
        call["params"]
        for call in fake.calls("sendMessageDraft")
        if call["params"]["chat_id"] == chat_id and call["status"] == 200
    ]


def test_a_private_answer_streams_as_drafts_then_comes_once(
    bot: BotProcess, fake: FakeTelegram, llm: FakeLLM
) -> None:
    alice = fake.user(1001, "Alice")
    llm.script(Reply(STREAMED, chunk_delay=CHUNK_DELAY_S))
    question = fake.send_text(alice, QUESTION)["message"]
    answer = reply_to(fake, {"message": question})

    request = llm.requests[-1]
    assert request.stream and not request.structured and QUESTION in request.user
    drafts = drafts_in(fake, alice["id"])
    assert 2 <= len(drafts) <= 4, drafts  # throttled: at most one a second
    assert {draft["draft_id"] for draft in drafts} == {question["message_id"]}
    texts = [draft["text"] for draft in drafts]
    assert all(STREAMED.startswith(text) for text in texts)
    assert texts == sorted(texts, key=len) and len(texts[0]) < len(STREAMED)

    assert answer["text"].startswith(STREAMED.removesuffix(" [1]."))
    assert "[1]" in answer["text"] and "\nSources\n" in answer["text"]
    assert buttons(answer)[0].startswith("pg:") and len(buttons(answer)) == 3
    after_question = [
        m for m in fake.sent(alice["id"]) if m["message_id"] > question["message_id"]
    ]
    assert after_question == [answer]  # the final answer, once


def test_a_group_answer_comes_without_drafts(
    bot: BotProcess, fake: FakeTelegram, llm: FakeLLM
) -> None:
    group = fake.group_chat(-1001234567890, "Talks readers")
    llm.script(Reply(STREAMED, chunk_delay=0.05))
    answer = say(fake, fake.user(1002, "Bob"), f"@talks_test_bot {QUESTION}", group)
    assert answer["text"].startswith("Russia demanded") and "[1]" in answer["text"]
    assert drafts_in(fake, group["id"]) == []
    assert not any(
        call["params"]["chat_id"] == group["id"] for call in fake.calls("sendMessageDraft")
    )


def test_with_the_llm_down_the_answer_is_quoted_with_a_note(
    bot: BotProcess, fake: FakeTelegram, llm: FakeLLM
) -> None:
    llm.stop()
    english = say(fake, fake.user(1003, "Carol"), QUESTION)
    assert english["text"].startswith("ℹ️ The language model did not respond")
    assert "[1]" in english["text"] and "\nSources\n" in english["text"]
    arabic = say(fake, fake.user(1004, "Samir", language_code="ar"), "ماذا طلبت روسيا في محادثات جنيف؟")
    assert "لم يستجب النموذج اللغوي" in arabic["text"] and "المصادر" in arabic["text"]
    assert drafts_in(fake, 1003) == [] and drafts_in(fake, 1004) == []
    bot.wait_for_log("giving the extractive answer")


def test_nothing_crashed(bot: BotProcess) -> None:
    log = bot.log()
    assert "error while handling an update" not in log and "Traceback" not in log
