"""/subscribe, /unsubscribe and /digest."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import time

from telegram import Update
from telegram.ext import ContextTypes

from bot.deps import deps, ui_lang
from bot.digests import deliver_digest, schedule_subscription, send_latest
from bot.handlers.basics import reply
from bot.state import DigestMode, Subscription
from bot.texts import text

_HH_MM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_subscription(
    args: Sequence[str], default_time: time
) -> tuple[DigestMode, time | None] | None:
    """`[]` or `instant` → instant; `daily [HH:MM]` → daily at that time; else None."""
    words = [word.lower() for word in args]
    if words in ([], ["instant"]):
        return "instant", None
    if words and words[0] == "daily" and len(words) <= 2:
        if len(words) == 1:
            return "daily", default_time
        match = _HH_MM.match(words[1])
        if match:
            return "daily", time(int(match.group(1)), int(match.group(2)))
    return None


async def on_subscribe(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    bot_deps = deps(context)
    lang = ui_lang(update, context)
    parsed = parse_subscription(context.args or [], bot_deps.settings.digest_daily_time)
    if parsed is None:
        await reply(update, context, text("subscribe_usage", lang))
        return
    mode, at = parsed
    chat_id = update.effective_chat.id
    subscription = Subscription(chat_id=chat_id, lang=lang, mode=mode, daily_time=at)
    bot_deps.state.subscribe(subscription)
    schedule_subscription(
        context.job_queue, subscription, chat_id, bot_deps.settings.digest_timezone
    )
    if mode == "instant":
        await reply(update, context, text("subscribed_instant", lang))
    else:
        timezone = bot_deps.settings.digest_timezone
        await reply(
            update,
            context,
            text(
                "subscribed_daily", lang, time=at.strftime("%H:%M"), timezone=timezone
            ),
        )


async def on_unsubscribe(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    bot_deps = deps(context)
    lang = ui_lang(update, context)
    chat_id = update.effective_chat.id
    if bot_deps.state.unsubscribe(chat_id, reason="user"):
        schedule_subscription(
            context.job_queue, None, chat_id, bot_deps.settings.digest_timezone
        )
        await reply(update, context, text("unsubscribed", lang))
    else:
        await reply(update, context, text("not_subscribed", lang))


async def on_digest(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The articles waiting for this chat's next digest if any, else the latest articles."""
    bot_deps = deps(context)
    lang = ui_lang(update, context)
    chat_id = update.effective_chat.id
    if await deliver_digest(context.bot, bot_deps.state, chat_id, lang):
        return
    articles = await asyncio.to_thread(bot_deps.service.articles)
    await send_latest(context.bot, chat_id, lang, articles)
