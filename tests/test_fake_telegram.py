"""The fake Telegram Bot API server, exercised through python-telegram-bot itself."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
import telegram
from fake_telegram import FakeTelegram, parse_html, utf16_len
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters, Update
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    RetryAfter,
)
from telegram.ext import Application, ContextTypes, MessageHandler, filters

ALICE_ID = 1001
GROUP_ID = -1001234567890


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opt in to PTB's future timedelta durations (and out of its deprecation warnings)."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture
def alice(fake: FakeTelegram) -> dict[str, Any]:
    return fake.user(ALICE_ID, "Alice", username="alice")


@pytest_asyncio.fixture(loop_scope="function")
async def bot(fake: FakeTelegram, alice: dict[str, Any]) -> AsyncIterator[telegram.Bot]:
    async with telegram.Bot(
        fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url
    ) as client:
        yield client


# --------------------------------------------------------------------------- HTML parse mode


@pytest.mark.parametrize(
    ("markup", "text", "entities"),
    [
        (
            "<b>bold</b> and <i>it</i>",
            "bold and it",
            [("bold", 0, 4), ("italic", 9, 2)],
        ),
        ("&lt;b&gt; &amp; &quot;", '<b> & "', []),
        ("x & y &ge; &Or;", "x & y &ge; &Or;", []),  # unknown entities stay as typed
        ("&lt🏟", "<🏟", []),  # the ';' is optional
        ("🏟<i>🏟</i>", "🏟🏟", [("italic", 2, 2)]),  # UTF-16 offsets
        ("<i>a</>", "a", [("italic", 0, 1)]),  # </> closes the innermost tag
        ("<b></b>x", "x", []),  # empty entities vanish
        ('<span class="tg-spoiler">s</span>', "s", [("spoiler", 0, 1)]),
        (
            "<blockquote expandable>q</blockquote>",
            "q",
            [("expandable_blockquote", 0, 1)],
        ),
    ],
)
def test_parse_html_gives_visible_text_and_entities(
    markup: str, text: str, entities: list[tuple[str, int, int]]
) -> None:
    visible, parsed = parse_html(markup)
    assert visible == text
    assert [(e["type"], e["offset"], e["length"]) for e in parsed] == entities


def test_parse_html_links_and_code_languages() -> None:
    assert parse_html('<a href="telegram.org">t</a>')[1] == [
        {"type": "text_link", "url": "http://telegram.org/", "offset": 0, "length": 1}
    ]
    assert (
        parse_html("<a>https://example.org/x?y</a>")[1][0]["url"]
        == "https://example.org/x?y"
    )
    assert parse_html("<a>not a link</a>")[1] == []
    assert parse_html('<pre><code class="language-python">x</code></pre>')[1] == [
        {"type": "pre", "language": "python", "offset": 0, "length": 1}
    ]
    assert [e["type"] for e in parse_html("<pre><code>x</code></pre>")[1]] == [
        "pre",
        "code",
    ]


@pytest.mark.parametrize(
    ("markup", "error"),
    [
        ("<b>never closed", 'Can\'t find end tag corresponding to start tag "b"'),
        (
            "<b>x</i>",
            'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"',
        ),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<p>x</p>", 'Unsupported start tag "p" at byte offset 0'),
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("🏟 <br/>", 'Unsupported start tag "br/" at byte offset 5'),
        ("<!-- note -->", 'Unsupported start tag "!--" at byte offset 0'),
        ("ends with <b", "Unclosed start tag at byte offset 10"),
        (
            '<span class="x">s</span>',
            'Tag "span" must have class "tg-spoiler" at byte offset 0',
        ),
        ("<i =x>a</i>", 'Empty attribute name in the tag "i" at byte offset 0'),
        (
            "&#xD83D;",
            (
                "Text contains invalid Unicode characters after decoding HTML entities, "
                "check for unmatched surrogate code units"
            ),
        ),
    ],
)
def test_parse_html_refuses_what_telegram_refuses(markup: str, error: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_html(markup)
    assert str(caught.value) == error


# --------------------------------------------------------------------------- basics


async def test_get_me_describes_the_bot(fake: FakeTelegram, bot: telegram.Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (123456, True, "talks_test_bot")
    assert me.can_join_groups
    assert fake.calls("getMe")[0]["status"] == 200


async def test_wrong_token_and_unknown_method(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    with pytest.raises(InvalidToken, match="rejected by the server"):
        async with telegram.Bot("999:wrong", base_url=fake.base_url):
            pass  # initialize() already calls getMe
    assert fake.calls("getMe")[-1]["response"] == {
        "ok": False,
        "error_code": 401,
        "description": "Unauthorized",
    }
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("fetchTheWeather")
    # An existing method the fake does not model is recorded and answered with true.
    assert await bot.set_my_short_description(
        "Answers questions about the January 2022 talks"
    )
    assert fake.calls("setMyShortDescription")[0]["params"] == {
        "short_description": "Answers questions about the January 2022 talks"
    }


def test_raw_http_json_body_and_404(fake: FakeTelegram, alice: dict[str, Any]) -> None:
    body = json.dumps({"chat_id": ALICE_ID, "text": "via JSON"}).encode()
    request = urllib.request.Request(
        f"{fake.base_url}{fake.token}/sendMessage",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        reply = json.load(response)
    assert reply["ok"] and reply["result"]["text"] == "via JSON"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{fake.base_url}{fake.token}/noSuchMethod", timeout=5)
    assert caught.value.code == 404
    assert json.load(caught.value) == {
        "ok": False,
        "error_code": 404,
        "description": "Not Found",
    }


async def test_send_message_is_returned_logged_and_inspectable(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    markup = InlineKeyboardMarkup(
        [[InlineKeyboardButton("Sources", callback_data="src:1")]]
    )
    sent = await bot.send_message(
        ALICE_ID,
        "<b>Answer</b>: see <a href='https://example.org'>here</a>",
        parse_mode="HTML",
        reply_markup=markup,
    )
    assert sent.text == "Answer: see here"
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [
        ("bold", 0, 6),
        ("text_link", 12, 4),
    ]
    assert sent.from_user.username == "talks_test_bot"
    assert sent.chat.type == "private" and sent.chat.first_name == "Alice"
    assert sent.reply_markup == markup

    second = await bot.send_message(ALICE_ID, "plain")
    assert second.message_id == sent.message_id + 1
    assert [m["text"] for m in fake.sent(ALICE_ID)] == ["Answer: see here", "plain"]
    call = fake.calls("sendMessage")[0]
    # PTB 22 posts form-encoded fields, JSON-encoding everything but strings.
    assert call["content_type"] == "application/x-www-form-urlencoded"
    assert call["params"]["chat_id"] == ALICE_ID
    assert (
        call["params"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        == "src:1"
    )


async def test_unknown_chat_and_chat_action(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(555, "hello?")
    assert await bot.send_chat_action(ALICE_ID, "typing")
    with pytest.raises(BadRequest, match="Wrong parameter action in request"):
        await bot.send_chat_action(ALICE_ID, "dancing")


# --------------------------------------------------------------------------- Telegram's refusals


@pytest.mark.parametrize(
    ("html", "message"),
    [
        (
            "<b>unclosed",
            "Can't parse entities: can't find end tag corresponding to start tag \"b\"",
        ),
        (
            "<think>hm</think>",
            'Can\'t parse entities: unsupported start tag "think" at byte offset 0',
        ),
        ("1 < 2", 'Can\'t parse entities: unsupported start tag "" at byte offset 2'),
    ],
)
async def test_invalid_html_is_a_bad_request(
    fake: FakeTelegram, bot: telegram.Bot, html: str, message: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        await bot.send_message(ALICE_ID, html, parse_mode="HTML")
    # PTB strips "Bad Request: " and capitalizes the rest.
    assert caught.value.message == message
    assert fake.calls("sendMessage")[0]["response"]["description"].startswith(
        "Bad Request: can't parse entities: "
    )
    assert fake.sent() == []


async def test_text_limits_count_visible_utf16(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(ALICE_ID, "<b> </b>\n", parse_mode="HTML")
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(ALICE_ID, "x" * 4097)
    emoji = "😀" * 2049  # 2049 characters, 4098 UTF-16 code units
    assert utf16_len(emoji) == 4098
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(ALICE_ID, emoji)
    # Markup does not count: 4096 visible characters inside tags are fine.
    long_html = "<b>" + "&lt;" * 4096 + "</b>"
    sent = await bot.send_message(ALICE_ID, long_html, parse_mode="HTML")
    assert len(sent.text) == 4096


async def test_blocked_chat_is_forbidden(fake: FakeTelegram, bot: telegram.Bot) -> None:
    fake.group_chat(GROUP_ID, "Arms control")
    fake.block(ALICE_ID)
    fake.block(GROUP_ID)
    with pytest.raises(Forbidden, match="Forbidden: bot was blocked by the user"):
        await bot.send_message(ALICE_ID, "hello")
    with pytest.raises(Forbidden, match="bot was kicked from the supergroup chat"):
        await bot.send_message(GROUP_ID, "hello")
    fake.unblock(ALICE_ID)
    assert (await bot.send_message(ALICE_ID, "hello again")).text == "hello again"


async def test_flood_control_then_normal_replies(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    fake.arm_flood("sendMessage", 2, retry_after=3, chat_id=ALICE_ID)
    for _ in range(2):
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(ALICE_ID, "hi")
        assert caught.value.retry_after == dtm.timedelta(seconds=3)
    assert fake.calls("sendMessage")[0]["response"] == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }
    assert (await bot.send_message(ALICE_ID, "hi")).text == "hi"


async def test_callback_data_over_64_bytes(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    markup = InlineKeyboardMarkup(
        [[InlineKeyboardButton("more", callback_data="é" * 33)]]
    )
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(ALICE_ID, "answer", reply_markup=markup)


# --------------------------------------------------------------------------- edits and deletes


async def test_edit_message_text(fake: FakeTelegram, bot: telegram.Bot) -> None:
    keyboard = InlineKeyboardMarkup(
        [[InlineKeyboardButton("Sources", callback_data="src")]]
    )
    placeholder = await bot.send_message(ALICE_ID, "Thinking…", reply_markup=keyboard)

    edited = await bot.edit_message_text(
        "<i>Final</i> answer",
        ALICE_ID,
        placeholder.message_id,
        parse_mode="HTML",
        reply_markup=keyboard,
    )
    assert edited.text == "Final answer" and edited.edit_date is not None
    [current] = fake.sent(ALICE_ID)
    assert (
        current["text"] == "Final answer" and current["entities"][0]["type"] == "italic"
    )

    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text(
            "<i>Final</i> answer",
            ALICE_ID,
            placeholder.message_id,
            parse_mode="HTML",
            reply_markup=keyboard,
        )
    # Leaving reply_markup out removes the keyboard, which is a modification.
    await bot.edit_message_text("Final answer", ALICE_ID, placeholder.message_id)
    assert "reply_markup" not in fake.sent(ALICE_ID)[0]
    with pytest.raises(BadRequest, match="Message_too_long"):
        await bot.edit_message_text("x" * 5000, ALICE_ID, placeholder.message_id)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", ALICE_ID, 999)


async def test_edit_reply_markup_and_delete(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    message = await bot.send_message(ALICE_ID, "answer")
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("👍", callback_data="up")]])
    updated = await bot.edit_message_reply_markup(
        ALICE_ID, message.message_id, reply_markup=keyboard
    )
    assert updated.reply_markup == keyboard
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_reply_markup(
            ALICE_ID, message.message_id, reply_markup=keyboard
        )

    assert await bot.delete_message(ALICE_ID, message.message_id)
    assert fake.sent(ALICE_ID) == []
    assert len(fake.sent(ALICE_ID, include_deleted=True)) == 1
    with pytest.raises(BadRequest, match="Message to delete not found"):
        await bot.delete_message(ALICE_ID, message.message_id)


# --------------------------------------------------------------------------- updates


async def test_long_poll_wakes_when_an_update_arrives(
    fake: FakeTelegram, alice: dict[str, Any], bot: telegram.Bot
) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0.3)
    queued = fake.send_text(alice, "/ask@talks_test_bot what was agreed?")
    updates = await asyncio.wait_for(poll, 5)
    assert time.monotonic() - started < 2
    [update] = updates
    assert update.update_id == queued["update_id"]
    assert update.message.text == "/ask@talks_test_bot what was agreed?"
    assert update.message.from_user.username == "alice"
    command = update.message.entities[0]
    assert (command.type, command.offset, command.length) == ("bot_command", 0, 19)


async def test_long_poll_times_out_empty(bot: telegram.Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == ()
    assert 0.9 <= time.monotonic() - started < 3


async def test_offset_confirms_and_limit_and_allowed_updates(
    fake: FakeTelegram, alice: dict[str, Any], bot: telegram.Bot
) -> None:
    ids = [fake.send_text(alice, f"q{n}")["update_id"] for n in range(3)]
    assert [u.update_id for u in await bot.get_updates()] == ids
    assert [
        u.update_id for u in await bot.get_updates()
    ] == ids  # nothing confirmed yet
    assert [u.update_id for u in await bot.get_updates(offset=ids[1], limit=1)] == [
        ids[1]
    ]
    assert [u.update_id for u in await bot.get_updates(offset=ids[2] + 1)] == []
    assert fake.pending_updates() == []

    fake.send_text(alice, "ignored")
    bot_message = await bot.send_message(
        ALICE_ID,
        "pick",
        reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("A", callback_data="a")]]
        ),
    )
    press = fake.press_button(alice, bot_message.to_dict(), "a")
    updates = await bot.get_updates(allowed_updates=["callback_query"])
    assert [u.update_id for u in updates] == [press["update_id"]]


async def test_a_second_poller_terminates_the_first(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.3)
    # A second bot instance: one Bot polls over a single connection, one poll at a time.
    async with telegram.Bot(fake.token, base_url=fake.base_url) as other_instance:
        second = asyncio.create_task(other_instance.get_updates(timeout=1))
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await asyncio.wait_for(first, 3)
        assert await second == ()


async def test_webhook_blocks_get_updates_until_deleted(
    fake: FakeTelegram, alice: dict[str, Any], bot: telegram.Bot
) -> None:
    assert await bot.set_webhook("https://example.org/hook")
    assert (await bot.get_webhook_info()).url == "https://example.org/hook"
    with pytest.raises(Conflict, match="webhook is active"):
        await bot.get_updates()
    fake.send_text(alice, "dropped")
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.get_updates() == ()


async def test_callback_query_round_trip(
    fake: FakeTelegram, alice: dict[str, Any], bot: telegram.Bot
) -> None:
    keyboard = InlineKeyboardMarkup(
        [[InlineKeyboardButton("Sources", callback_data="src:7")]]
    )
    sent = await bot.send_message(ALICE_ID, "The answer.", reply_markup=keyboard)
    with pytest.raises(ValueError, match="no button"):
        fake.press_button(alice, fake.sent(ALICE_ID)[0], "src:8")
    fake.press_button(alice, fake.sent(ALICE_ID)[0], "src:7")

    [update] = await bot.get_updates()
    query = update.callback_query
    assert query.data == "src:7" and query.from_user.id == ALICE_ID
    assert (
        query.message.message_id == sent.message_id
        and query.message.text == "The answer."
    )
    assert await bot.answer_callback_query(query.id, text="Loading sources")
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query(query.id)


async def test_user_edits_replies_and_groups(
    fake: FakeTelegram, alice: dict[str, Any], bot: telegram.Bot
) -> None:
    group = fake.group_chat(GROUP_ID, "Arms control")
    original = fake.send_text(alice, "what about NATO?", chat=group)["message"]
    fake.edit_text(alice, original, "what about NATO enlargement?")
    answer = await bot.send_message(
        GROUP_ID,
        "It was discussed.",
        reply_parameters=ReplyParameters(original["message_id"]),
    )
    assert answer.reply_to_message.text == "what about NATO enlargement?"
    fake.send_text(alice, "thanks", chat=group, reply_to_message=answer.to_dict())

    message_update, edit_update, reply_update = await bot.get_updates()
    assert message_update.message.chat.type == "supergroup"
    assert message_update.message.chat.title == "Arms control"
    assert edit_update.edited_message.text == "what about NATO enlargement?"
    assert edit_update.edited_message.message_id == original["message_id"]
    assert reply_update.message.reply_to_message.message_id == answer.message_id
    with pytest.raises(BadRequest, match="Message to be replied not found"):
        await bot.send_message(GROUP_ID, "x", reply_parameters=ReplyParameters(999))


async def test_media_in_both_directions(
    fake: FakeTelegram, alice: dict[str, Any], bot: telegram.Bot
) -> None:
    fake.send_document(
        alice, data=b"question list", file_name="questions.txt", caption="see /ask"
    )
    fake.send_voice(alice)
    fake.send_photo(alice)
    fake.send_sticker(alice)
    (
        document_update,
        voice_update,
        photo_update,
        sticker_update,
    ) = await bot.get_updates()
    document = document_update.message.document
    assert document.file_name == "questions.txt"
    assert document_update.message.caption_entities[0].type == "bot_command"
    downloaded = await (await bot.get_file(document.file_id)).download_as_bytearray()
    assert bytes(downloaded) == b"question list"
    assert voice_update.message.voice.duration
    assert photo_update.message.photo[0].width == 800
    assert sticker_update.message.sticker.emoji == "👍"

    uploaded = await bot.send_document(
        ALICE_ID, b"sources", filename="sources.txt", caption="Sources"
    )
    assert (
        uploaded.document.file_name == "sources.txt" and uploaded.caption == "Sources"
    )
    call = fake.calls("sendDocument")[0]
    assert call["content_type"] == "multipart/form-data"
    assert call["params"]["document"] == {
        "filename": "sources.txt",
        "content_type": "text/plain",
        "size": 7,
    }


async def test_commands_per_scope_and_language(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    await bot.set_my_commands([("ask", "Ask a question")])
    await bot.set_my_commands([("ask", "Задать вопрос")], language_code="ru")
    await bot.set_my_commands(
        [("help", "Help")], scope=telegram.BotCommandScopeAllGroupChats()
    )
    assert [c.description for c in await bot.get_my_commands(language_code="ru")] == [
        "Задать вопрос"
    ]
    assert fake.commands() == [{"command": "ask", "description": "Ask a question"}]
    assert fake.commands({"type": "all_group_chats"})[0]["command"] == "help"
    assert await bot.delete_my_commands(language_code="ru")
    assert await bot.get_my_commands(language_code="ru") == ()
    with pytest.raises(BadRequest, match="Bot_command_invalid"):
        await bot.set_my_commands([("Ask-Now", "bad")])


async def test_message_drafts_are_recorded(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    fake.group_chat(GROUP_ID, "Arms control")
    assert await bot.send_message_draft(
        ALICE_ID, 7, "Looking through the <b>corpus</b>", parse_mode="HTML"
    )
    assert await bot.send_message_draft(
        ALICE_ID, 7
    )  # empty text: the "Thinking..." placeholder
    with pytest.raises(BadRequest, match="Can't parse entities"):
        await bot.send_message_draft(ALICE_ID, 7, "<b>half", parse_mode="HTML")
    with pytest.raises(BadRequest):
        await bot.send_message_draft(GROUP_ID, 7, "not here")
    assert [c["params"].get("text") for c in fake.calls("sendMessageDraft")][:2] == [
        "Looking through the <b>corpus</b>",
        None,
    ]
    assert fake.sent() == []


# --------------------------------------------------------------------------- a real polling bot


async def _echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.message.reply_text(f"echo: {update.message.text}")


async def test_polling_application_echoes(
    fake: FakeTelegram, alice: dict[str, Any]
) -> None:
    application = (
        Application.builder()
        .token(fake.token)
        .base_url(fake.base_url)
        .base_file_url(fake.base_file_url)
        .build()
    )
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, _echo))
    async with application:
        await application.updater.start_polling(poll_interval=0, timeout=1)
        await application.start()
        try:
            fake.send_text(alice, "hello bot")
            reply = await fake.wait_for_message_async(
                ALICE_ID, contains="echo: hello bot", timeout=5
            )
        finally:
            await application.updater.stop()
            await application.stop()
    assert reply["from"]["username"] == "talks_test_bot"
    startup = [c["method"] for c in fake.calls()][:3]
    assert startup == ["getMe", "deleteWebhook", "getUpdates"]
    assert fake.pending_updates() == []  # PTB confirmed the update on its way out


_ECHO_BOT = """
import sys

from telegram.ext import Application, MessageHandler, filters

async def echo(update, context):
    await update.message.reply_text("echo: " + update.message.text)

application = (
    Application.builder().token(sys.argv[1]).base_url(sys.argv[2]).build()
)
application.add_handler(MessageHandler(filters.TEXT, echo))
application.run_polling(poll_interval=0, timeout=1)
"""


def test_bot_in_another_process(fake: FakeTelegram, alice: dict[str, Any]) -> None:
    bot_process = subprocess.Popen(
        [sys.executable, "-c", _ECHO_BOT, fake.token, fake.base_url],
        stdout=subprocess.DEVNULL,  # stderr is inherited: pytest shows it on failure
    )
    try:
        fake.send_text(alice, "from the test thread")
        reply = fake.wait_for_message(
            ALICE_ID, contains="echo: from the test thread", timeout=20
        )
        assert reply["chat"]["id"] == ALICE_ID
    finally:
        bot_process.terminate()
        bot_process.wait(10)


def test_wait_for_reports_recent_calls_on_timeout(fake: FakeTelegram) -> None:
    with pytest.raises(AssertionError, match="condition not met within 0.1 s"):
        fake.wait_for_message(ALICE_ID, contains="never", timeout=0.1)
