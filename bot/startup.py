"""Starting up: the bot token checked, the answering pipeline loaded once per process
(for the bot and the terminal chat)."""

from __future__ import annotations

import logging
import re
import time

from retrieval.service import TalksService
from talks.settings import Settings

logger = logging.getLogger(__name__)

TOKEN_FORMAT = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
BOTFATHER_HINT = (
    "create a bot with @BotFather in Telegram (https://t.me/BotFather, /newbot) "
    "and put its token in TELEGRAM_BOT_TOKEN (environment or .env)"
)


class BotStartError(RuntimeError):
    """The bot cannot start: Telegram is unreachable, or the token is wrong (see TokenError)."""


class TokenError(BotStartError):
    """TELEGRAM_BOT_TOKEN is missing, malformed, or rejected by Telegram."""


def has_token(settings: Settings) -> bool:
    return bool(
        settings.telegram_bot_token
        and settings.telegram_bot_token.get_secret_value().strip()
    )


def bot_token(settings: Settings) -> str:
    """The token from the settings, checked for its shape (never echoed: it is a secret)."""
    token = (
        settings.telegram_bot_token.get_secret_value().strip()
        if settings.telegram_bot_token
        else ""
    )
    if not token:
        raise TokenError(f"TELEGRAM_BOT_TOKEN is not set: {BOTFATHER_HINT}")
    if not TOKEN_FORMAT.match(token):
        raise TokenError(
            f"TELEGRAM_BOT_TOKEN is malformed (a token looks like 123456789:AAE…): {BOTFATHER_HINT}"
        )
    return token


def load_service(settings: Settings) -> TalksService:
    """The model and the index, loaded once; the index is built first if there is none."""
    started = time.perf_counter()
    service = TalksService(settings)
    if not service.has_index():
        logger.info(
            "no index found: building it from %s first",
            ", ".join(map(str, settings.index_dirs)),
        )
        service.index()
    logger.info("model and index loaded in %.1f s", time.perf_counter() - started)
    return service
