"""Sending HTML to Telegram so that nothing is lost: long texts are split, and a message
whose formatting Telegram rejects is sent again as plain text."""

from __future__ import annotations

import asyncio
import contextlib
import logging
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

from bot.render import html_to_plain, split_html

logger = logging.getLogger(__name__)

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
TYPING_REFRESH_S = 4.5  # Telegram shows "typing…" for 5 s


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
