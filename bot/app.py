"""The Telegram bot: one python-telegram-bot Application over one TalksService."""

from __future__ import annotations

import asyncio
import gc
import logging
from urllib.parse import urlsplit

from telegram import BotCommand, BotCommandScopeChat, Update
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError
from telegram.ext import (
    AIORateLimiter,
    Application,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.deps import BotDeps, QuestionRateLimiter
from bot.digests import catch_up, schedule_digests
from bot.fetching import schedule_polling
from bot.handlers import admin, basics, questions, sources, subscriptions
from bot.startup import (
    BOTFATHER_HINT,
    BotStartError,
    TokenError,
    bot_token,
    load_service,
)
from bot.state import BotState
from bot.texts import LANGUAGES, Lang
from retrieval.service import TalksService
from talks.health import service_health
from talks.metrics import record_index, serve_operations
from talks.settings import Settings

logger = logging.getLogger(__name__)

ALLOWED_UPDATES = [Update.MESSAGE, Update.EDITED_MESSAGE, Update.CALLBACK_QUERY]

USER_COMMANDS: dict[str, dict[Lang, str]] = {
    "ask": {"en": "Ask a question about the talks", "ar": "اطرح سؤالًا عن المحادثات"},
    "help": {"en": "What I know and how to ask", "ar": "ما أعرفه وطريقة السؤال"},
    "lang": {
        "en": "Language: /lang ar or /lang en",
        "ar": "اللغة: ‎/lang ar‎ أو ‎/lang en‎",
    },
    "subscribe": {"en": "Digests of new articles", "ar": "ملخصات المقالات الجديدة"},
    "unsubscribe": {"en": "Stop the digests", "ar": "إيقاف الملخصات"},
    "digest": {"en": "The latest articles now", "ar": "أحدث المقالات الآن"},
}
ADMIN_COMMANDS: dict[str, str] = {
    "addsource": "Add a feed, sitemap or article page: /addsource URL [name]",
    "removesource": "Remove a source: /removesource URL",
    "listsources": "Sources: last fetch, status, articles",
    "fetch": "Poll every source now",
    "ingest": "Add one article now: /ingest URL",
    "reindex": "Reindex the corpus (/reindex full: from scratch)",
    "stats": "Index and usage statistics",
    "sources": "Articles in the index",
    "feedback": "Latest 👎 feedback",
    "health": "Index, model, Chroma, state database, last fetch",
}


def _commands(lang: Lang) -> list[BotCommand]:
    return [
        BotCommand(name, descriptions[lang])
        for name, descriptions in USER_COMMANDS.items()
    ]


async def register_commands(application: Application) -> None:
    """setMyCommands: the user commands in Arabic and English; admins also see theirs (in English)."""
    bot = application.bot
    await bot.set_my_commands(_commands("en"))
    for lang in LANGUAGES:
        await bot.set_my_commands(_commands(lang), language_code=lang)
    admin_commands = [
        BotCommand(name, description) for name, description in ADMIN_COMMANDS.items()
    ]
    for admin_id in application.bot_data["deps"].settings.admin_ids:
        try:
            for lang in (None, *LANGUAGES):
                await bot.set_my_commands(
                    _commands(lang or "en") + admin_commands,
                    scope=BotCommandScopeChat(admin_id),
                    language_code=lang,
                )
        except (
            BadRequest,
            Forbidden,
        ) as error:  # the admin has not started a chat with the bot yet
            logger.info("admin commands not shown to %s: %s", admin_id, error.message)


async def post_init(application: Application) -> None:
    bot_deps: BotDeps = application.bot_data["deps"]
    await register_commands(application)
    await asyncio.to_thread(catch_up, bot_deps.state, bot_deps.service)
    schedule_digests(application)
    schedule_polling(application)
    record_index(bot_deps.index_stats)
    logger.info("bot @%s ready", application.bot.username)


def add_handlers(application: Application) -> None:
    new = filters.UpdateType.MESSAGE  # edited messages only reach `on_edited`
    private, groups = filters.ChatType.PRIVATE, filters.ChatType.GROUPS
    plain_text = filters.TEXT & ~filters.COMMAND
    commands = {
        "start": basics.on_start,
        "help": basics.on_help,
        "lang": basics.on_lang,
        "ask": questions.on_ask,
        "subscribe": subscriptions.on_subscribe,
        "unsubscribe": subscriptions.on_unsubscribe,
        "digest": subscriptions.on_digest,
        "reindex": admin.on_reindex,
        "stats": admin.on_stats,
        "sources": admin.on_sources,
        "feedback": admin.on_feedback,
        "health": admin.on_health,
        "addsource": sources.on_addsource,
        "removesource": sources.on_removesource,
        "listsources": sources.on_listsources,
        "ingest": sources.on_ingest,
        "fetch": sources.on_fetch,
    }
    for name, callback in commands.items():
        application.add_handler(CommandHandler(name, callback, filters=new))
    application.add_handlers(
        [
            MessageHandler(new & private & plain_text, questions.on_text),
            MessageHandler(
                new & groups & plain_text & questions.AddressedToBot(),
                questions.on_group_mention,
            ),
            MessageHandler(new & private & filters.COMMAND, basics.on_unknown_command),
            MessageHandler(new & private & ~filters.TEXT, basics.on_unreadable),
            MessageHandler(
                filters.UpdateType.EDITED_MESSAGE & private, basics.on_edited
            ),
            CallbackQueryHandler(
                questions.on_passages, pattern=questions.PASSAGES_PATTERN
            ),
            CallbackQueryHandler(
                questions.on_feedback, pattern=questions.FEEDBACK_PATTERN
            ),
            CallbackQueryHandler(basics.on_stale_button),
        ]
    )
    application.add_error_handler(basics.on_error)


def build_application(
    settings: Settings, service: TalksService, state: BotState
) -> Application:
    application = (
        Application.builder()
        .token(bot_token(settings))
        .base_url(settings.telegram_api_base_url)
        .base_file_url(settings.telegram_file_base_url)
        .concurrent_updates(True)
        .rate_limiter(AIORateLimiter(max_retries=settings.telegram_max_retries))
        .post_init(post_init)
        .build()
    )
    application.bot_data["deps"] = BotDeps(
        settings=settings,
        service=service,
        state=state,
        index_stats=service.stats(),
        limiter=QuestionRateLimiter(state, settings.rate_limit_per_minute),
        answer_slots=asyncio.Semaphore(settings.max_concurrent_answers),
    )
    add_handlers(application)
    return application


def run_bot(settings: Settings, webhook_url: str | None = None) -> None:
    """Run until interrupted: long polling, or a webhook server when `webhook_url` is given."""
    bot_token(settings)  # a missing token is reported before the model is loaded
    logging.getLogger("apscheduler").setLevel(
        logging.WARNING
    )  # else a line per job run
    service = load_service(settings)
    state = BotState.from_settings(settings)
    application = build_application(settings, service, state)
    endpoint = serve_operations(settings, lambda: service_health(settings, service))
    try:
        if webhook_url:
            secret = (
                settings.webhook_secret.get_secret_value()
                if settings.webhook_secret
                else None
            )
            logger.info(
                "webhook on %s:%s for %s",
                settings.webhook_listen,
                settings.webhook_port,
                webhook_url,
            )
            application.run_webhook(
                listen=settings.webhook_listen,
                port=settings.webhook_port,
                url_path=urlsplit(webhook_url).path.lstrip("/"),
                webhook_url=webhook_url,
                secret_token=secret,
                allowed_updates=ALLOWED_UPDATES,
            )
        else:
            application.run_polling(allowed_updates=ALLOWED_UPDATES)
    except BadRequest as error:  # e.g. a webhook URL or secret Telegram does not accept
        raise BotStartError(
            f"Telegram refused to start the bot: {error.message}"
        ) from None
    except InvalidToken:
        raise TokenError(
            f"Telegram rejected TELEGRAM_BOT_TOKEN: {BOTFATHER_HINT}"
        ) from None
    except NetworkError as error:
        raise BotStartError(
            f"cannot reach Telegram at {settings.telegram_api_base_url}: {error.message}"
        ) from None
    finally:
        if endpoint is not None:
            endpoint.shutdown()
        state.close()
        # The process exits next: spare the interpreter's last garbage collections the model's
        # half a million objects, 5 to 20 s of CPU that would outlast a supervisor's SIGTERM grace.
        gc.freeze()
