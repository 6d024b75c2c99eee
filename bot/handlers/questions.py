"""Questions in, cited answers out; the passages and feedback buttons under answers."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType
from telegram.ext import ContextTypes, filters

from bot.deps import deps, ui_lang
from bot.messaging import DraftStream, edit_html, send_html, typing
from bot.render import passage_pages, render_answer
from bot.state import Admission
from bot.texts import text
from retrieval.answering import Answer
from retrieval.service import Exchange, QuestionError, TalksService
from retrieval.store import StoreError, StoreUnavailableError, StoreWriteError
from talks.metrics import QUESTIONS_REFUSED, record_answer

logger = logging.getLogger(__name__)

PASSAGES = "pg"  # callback data "pg:<answer id>[:<page>]"
FEEDBACK = "fb"  # callback data "fb:<answer id>:<+|->"
PASSAGES_PATTERN = rf"^{PASSAGES}:\d+(:\d+)?$"
FEEDBACK_PATTERN = rf"^{FEEDBACK}:\d+:[+-]$"


class AddressedToBot(filters.MessageFilter):
    """A group message that mentions the bot or replies to one of its messages."""

    __slots__ = ()

    def filter(self, message: Message) -> bool:
        bot = message.get_bot()
        replied = message.reply_to_message
        if (
            replied is not None
            and replied.from_user is not None
            and replied.from_user.id == bot.id
        ):
            return True
        mention = f"@{bot.username}".lower()
        return any(
            value.lower() == mention
            for value in message.parse_entities(["mention"]).values()
        )


def answer_keyboard(answer_id: int, answer: Answer) -> InlineKeyboardMarkup:
    rows = []
    if answer.citations:
        rows.append(
            [
                InlineKeyboardButton(
                    text("passages_button", answer.language),
                    callback_data=f"{PASSAGES}:{answer_id}",
                )
            ]
        )
    rows.append(
        [
            InlineKeyboardButton("👍", callback_data=f"{FEEDBACK}:{answer_id}:+"),
            InlineKeyboardButton("👎", callback_data=f"{FEEDBACK}:{answer_id}:-"),
        ]
    )
    return InlineKeyboardMarkup(rows)


def pages_keyboard(
    answer_id: int, page: int, pages: int
) -> InlineKeyboardMarkup | None:
    if pages <= 1:
        return None
    buttons = []
    if page > 1:
        buttons.append(
            InlineKeyboardButton(
                "◀", callback_data=f"{PASSAGES}:{answer_id}:{page - 1}"
            )
        )
    if page < pages:
        buttons.append(
            InlineKeyboardButton(
                "▶", callback_data=f"{PASSAGES}:{answer_id}:{page + 1}"
            )
        )
    return InlineKeyboardMarkup([buttons])


async def streamed_answer(
    service: TalksService,
    question: str,
    history: Sequence[Exchange],
    drafts: DraftStream | None,
) -> Answer:
    """The service's answer to `question`; the drafts it streams while an LLM writes (none
    from the extractive answerer) are shown through `drafts` when given."""
    try:
        async with contextlib.aclosing(
            service.astream(question, history=history)
        ) as updates:
            async for update in updates:
                if isinstance(update, Answer):
                    return update
                if drafts is not None:
                    drafts.show(update)
    finally:
        if drafts is not None:
            await drafts.stop()
    raise RuntimeError("the answer stream ended without an answer")


async def answer_question(
    update: Update, context: ContextTypes.DEFAULT_TYPE, question: str
) -> None:
    """Check the question, answer it (streaming drafts in private chats), send the final
    answer once with its buttons."""
    bot_deps = deps(context)
    lang = ui_lang(update, context)
    message, chat, user = (
        update.effective_message,
        update.effective_chat,
        update.effective_user,
    )
    if message is None or chat is None or user is None:
        return

    async def say_back(key: str, **values: object) -> None:
        QUESTIONS_REFUSED.labels(key).inc()  # every say_back is a refusal, named by its text
        await send_html(context.bot, chat.id, text(key, lang, **values), reply_to=message.message_id)

    question = question.strip()
    limit = bot_deps.settings.max_question_chars
    if not question:
        await say_back("empty_question")
        return
    if len(question) > limit:
        await say_back("too_long", length=len(question), limit=limit)
        return
    admission = await bot_deps.limiter.admit(user.id)
    if admission is not Admission.ASK:
        logger.info("rate limit: user %s", user.id)
        if admission is Admission.REFUSE_AND_TELL:
            await say_back("rate_limited")
        return
    history = bot_deps.state.last_exchange(chat.id)
    drafts = (
        DraftStream(context.bot, chat.id, draft_id=message.message_id)
        if chat.type == ChatType.PRIVATE
        else None
    )
    started = time.perf_counter()
    # A question waits for one of the answer slots, in order of arrival; "typing…" shows from
    # its turn on (refreshing it for every waiting question would flood Telegram's rate limit).
    async with bot_deps.answer_slots, typing(context.bot, chat.id):
        try:
            answer = await streamed_answer(bot_deps.service, question, history, drafts)
        except QuestionError as error:
            logger.info("question refused: %s", error)
            await say_back("empty_question")
            return
        except (StoreUnavailableError, StoreWriteError) as error:  # the Chroma server is down, its disk full
            logger.warning("index unavailable: %s", error)
            await say_back("store_unavailable")
            return
        except Exception as error:
            # A full reindex replaces the index under running questions (see /reindex).
            if not (isinstance(error, StoreError) or bot_deps.reindex_lock.locked()):
                raise
            logger.warning("no index to answer from: %r", error)
            await say_back("no_index")
            return
    duration_ms = (time.perf_counter() - started) * 1000
    record_answer(answer.language, answer.answered, duration_ms / 1000)
    answer_id = bot_deps.state.record_answer(chat.id, user.id, answer, duration_ms)
    logger.info(
        "answer %d to user %s in %.0f ms (%s, %d sources)",
        answer_id,
        user.id,
        duration_ms,
        "answered" if answer.answered else "declined",
        len(answer.citations),
    )
    await send_html(
        context.bot,
        chat.id,
        render_answer(answer),
        reply_to=message.message_id,
        keyboard=answer_keyboard(answer_id, answer),
    )


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A private message: the whole text is the question."""
    await answer_question(update, context, update.effective_message.text or "")


async def on_ask(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/ask <question>, in any chat."""
    message = update.effective_message
    parts = (message.text or "").split(maxsplit=1)
    if len(parts) < 2:
        await send_html(
            context.bot,
            message.chat_id,
            text("ask_usage", ui_lang(update, context)),
            reply_to=message.message_id,
        )
        return
    await answer_question(update, context, parts[1])


async def on_group_mention(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A group message addressed to the bot: the text without the mention is the question."""
    mention = re.compile(re.escape(f"@{context.bot.username}"), re.IGNORECASE)
    await answer_question(
        update, context, mention.sub(" ", update.effective_message.text or "")
    )


async def on_passages(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """📄 under an answer opens its passages in a new message; ◀ ▶ there turn its pages."""
    query = update.callback_query
    _, answer_id, *page = query.data.split(":")
    stored = deps(context).state.stored_answer(int(answer_id))
    if (
        stored is None
        or query.message is None
        or stored.chat_id != query.message.chat.id
    ):
        await query.answer(text("expired", ui_lang(update, context)), show_alert=True)
        return
    await query.answer()
    pages = passage_pages(stored.answer)
    number = min(max(int(page[0]) if page else 1, 1), len(pages))
    keyboard = pages_keyboard(stored.id, number, len(pages))
    if page:
        await edit_html(query.message, pages[number - 1], keyboard)
    else:
        await send_html(
            context.bot,
            query.message.chat.id,
            pages[0],
            reply_to=query.message.message_id,
            keyboard=keyboard,
        )


async def on_feedback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """👍/👎 under an answer: stored with the answer for the admins' /feedback."""
    query = update.callback_query
    _, answer_id, vote = query.data.split(":")
    lang = ui_lang(update, context)
    state = deps(context).state
    if state.stored_answer(int(answer_id)) is None:
        await query.answer(text("expired", lang), show_alert=True)
        return
    state.record_feedback(int(answer_id), query.from_user.id, 1 if vote == "+" else -1)
    logger.info(
        "feedback %s on answer %s from user %s", vote, answer_id, query.from_user.id
    )
    await query.answer(text("feedback_thanks", lang))
