"""Sending HTML to Telegram so that nothing is lost: long texts are split, and a message
whose formatting Telegram rejects is sent again as plain text. Also the "typing…" status and
the drafts of an answer being written."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from telegram import (
    Bot,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
)
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, TelegramError

from bot.render import bidi, escape, html_to_plain, split_html

logger = logging.getLogger(__name__)

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
TYPING_REFRESH_S = 4.5  # Telegram shows "typing…" for 5 s
DRAFT_INTERVAL_S = 1.0  # at most one draft a second
DRAFT_CHARS = 4000  # a draft shows at most this much of the text (Telegram's limit: 4096)


def is_formatting_error(error: BadRequest) -> bool:
    return "can't parse entities" in error.message.lower()


async def send_html(
    bot: Bot,
    chat_id: int,
    markup: str,
    *,
    reply_to: int | None = None,
    keyboard: InlineKeyboardMarkup | None = None,
) -> Message:
    """Send `markup` in as many messages as it takes; the keyboard goes under the last one,
    the first one replies to `reply_to`. Returns the last message."""
    parts = split_html(markup)
    message: Message | None = None
    for number, part in enumerate(parts):
        options = {
            "reply_parameters": ReplyParameters(
                reply_to, allow_sending_without_reply=True
            )
            if reply_to is not None and number == 0
            else None,
            "reply_markup": keyboard if number == len(parts) - 1 else None,
            "link_preview_options": NO_PREVIEW,
        }
        try:
            message = await bot.send_message(
                chat_id, part, parse_mode=ParseMode.HTML, **options
            )
        except BadRequest as error:
            if not is_formatting_error(error):
                raise
            logger.warning(
                "Telegram rejected the formatting (%s); sending plain text to chat %s",
                error.message,
                chat_id,
            )
            message = await bot.send_message(chat_id, html_to_plain(part), **options)
    if message is None:
        raise ValueError("nothing to send: the message is empty")
    return message


async def edit_html(
    message: Message, markup: str, keyboard: InlineKeyboardMarkup | None = None
) -> None:
    """Replace a message's text (one message's worth); unchanged text is not an error."""
    try:
        await message.edit_text(
            markup,
            parse_mode=ParseMode.HTML,
            reply_markup=keyboard,
            link_preview_options=NO_PREVIEW,
        )
    except BadRequest as error:
        if "not modified" in error.message.lower():
            return
        if not is_formatting_error(error):
            raise
        await message.edit_text(
            html_to_plain(markup),
            reply_markup=keyboard,
            link_preview_options=NO_PREVIEW,
        )


async def finish_html(bot: Bot, message: Message, markup: str) -> None:
    """Replace a message's text with `markup`; what does not fit in one message follows it."""
    first, *rest = split_html(markup)
    await edit_html(message, first)
    for part in rest:
        await send_html(bot, message.chat_id, part)


class DraftStream:
    """A text being written, shown as a message draft in a private chat (sendMessageDraft):
    at most one draft per `DRAFT_INTERVAL_S`, each sent in the background so that drafts never
    hold up the text itself. Drafts are a nicety: when Telegram refuses one, no more are sent
    and the final message is all the user gets."""

    def __init__(self, bot: Bot, chat_id: int, draft_id: int) -> None:
        self.bot, self.chat_id, self.draft_id = bot, chat_id, draft_id
        self._last_shown: float | None = None
        self._sending: asyncio.Task[None] | None = None
        self._refused = False

    def show(self, text: str) -> None:
        """Show `text` (the whole text so far) unless a draft was shown or is on its way
        less than `DRAFT_INTERVAL_S` ago."""
        now = time.monotonic()
        busy = self._sending is not None and not self._sending.done()
        recent = (
            self._last_shown is not None
            and now - self._last_shown < DRAFT_INTERVAL_S
        )
        if self._refused or busy or recent:
            return
        self._last_shown = now
        self._sending = asyncio.create_task(self._send(text[:DRAFT_CHARS]))

    async def _send(self, text: str) -> None:
        try:
            await self.bot.send_message_draft(
                self.chat_id,
                self.draft_id,
                bidi(escape(text)),
                parse_mode=ParseMode.HTML,
            )
        except TelegramError as error:
            logger.info("no drafts in chat %s: %s", self.chat_id, error)
            self._refused = True

    async def stop(self) -> None:
        """Before the final message: a draft still on its way would only show a stale text."""
        if self._sending is not None and not self._sending.done():
            self._sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sending


@contextlib.asynccontextmanager
async def typing(bot: Bot, chat_id: int) -> AsyncIterator[None]:
    """Show "typing…" in the chat until the block is done."""

    async def keep_typing() -> None:
        while True:
            with contextlib.suppress(TelegramError):
                await bot.send_chat_action(chat_id, ChatAction.TYPING)
            await asyncio.sleep(TYPING_REFRESH_S)

    task = asyncio.create_task(keep_typing())
    try:
        yield
    finally:
        task.cancel()
