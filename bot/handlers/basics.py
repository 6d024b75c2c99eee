"""/start, /help, /lang, and replies to what the bot cannot use (media, edits, unknown
commands), plus the error handler: every update gets a sensible reply or is ignored on purpose."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.constants import ChatType
from telegram.error import Forbidden
from telegram.ext import ContextTypes

from bot.deps import deps, ui_lang
from bot.messaging import send_html
from bot.state import StateUnavailableError
from bot.texts import LANGUAGES, Lang, language_of, text

logger = logging.getLogger(__name__)


def about(context: ContextTypes.DEFAULT_TYPE, lang: Lang) -> str:
    """What the bot knows: how many articles, from when to when."""
    stats = deps(context).index_stats
    if not stats.articles:
        return text("about_empty", lang)
    return text(
        "about",
        lang,
        articles=stats.articles,
        first=stats.first_date or "?",
        last=stats.last_date or "?",
    )


async def reply(
    update: Update, context: ContextTypes.DEFAULT_TYPE, markup: str
) -> None:
    message = update.effective_message
    await send_html(context.bot, message.chat_id, markup, reply_to=message.message_id)


async def on_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    lang = ui_lang(update, context)
    await reply(
        update,
        context,
        text("start", lang, about=about(context, lang), how_to=text("how_to", lang)),
    )


async def on_help(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """What the bot knows and how to ask; admins also see their commands (in private only)."""
    lang = ui_lang(update, context)
    sections = [about(context, lang), text("how_to", lang)]
    user = update.effective_user
    if update.effective_chat.type == ChatType.PRIVATE and deps(context).is_admin(
        user.id if user else None
    ):
        sections.append(text("admin_how_to", lang))
    await reply(update, context, "\n\n".join(sections))


async def on_lang(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    lang = ui_lang(update, context)
    choice = context.args[0].lower() if context.args else ""
    if choice not in LANGUAGES:
        await reply(update, context, text("lang_usage", lang, current=lang))
        return
    deps(context).state.set_language(update.effective_user.id, choice)
    await reply(update, context, text("lang_set", choice))


async def on_unknown_command(
    update: Update, context: ContextTypes.DEFAULT_TYPE
) -> None:
    if update.effective_chat.type == ChatType.PRIVATE:
        await reply(update, context, text("unknown_command", ui_lang(update, context)))


async def on_unreadable(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Photos, stickers, voice, documents… in a private chat: ask for text."""
    await reply(update, context, text("text_only", ui_lang(update, context)))


async def on_edited(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """An edited message in a private chat: say that edits are not re-answered."""
    await reply(update, context, text("edited", ui_lang(update, context)))


async def on_stale_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A button whose data this bot does not (or no longer) understand."""
    await update.callback_query.answer(
        text("expired", ui_lang(update, context)), show_alert=True
    )


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the error; tell the user something went wrong rather than staying silent."""
    if isinstance(context.error, Forbidden):
        logger.info("chat unavailable: %s", context.error)
        return
    if not isinstance(update, Update) or update.effective_chat is None:
        logger.error("error outside an update", exc_info=context.error)
        return
    if isinstance(context.error, StateUnavailableError):  # e.g. PostgreSQL down, disk full
        logger.warning("%s", context.error)
        key = "state_unavailable"
    else:
        logger.error("error while handling an update", exc_info=context.error)
        key = "error"
    try:
        lang = ui_lang(update, context)
    except StateUnavailableError:  # the user's chosen language is in the state
        lang = language_of(update.effective_user.language_code if update.effective_user else None)
    try:
        await context.bot.send_message(update.effective_chat.id, text(key, lang))
    except Exception:  # noqa: BLE001 - the error is already logged; nothing more to tell
        logger.warning("could not tell chat %s about the error", update.effective_chat.id)
