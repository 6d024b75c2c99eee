"""What every handler shares: settings, the answering service, the SQLite state, limits."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiolimiter import AsyncLimiter
from telegram import Update
from telegram.ext import ContextTypes

from bot.state import BotState
from bot.texts import Lang
from retrieval.service import IndexStats, TalksService
from talks.settings import Settings


class QuestionRateLimiter:
    """Per-user leaky bucket: `per_minute` questions in a burst, then one every 60/`per_minute` s.

    A limited user is told once; they are told again only after they could ask once more.
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[int, AsyncLimiter] = {}
        self._told: set[int] = set()

    async def admit(self, user_id: int) -> bool:
        bucket = self._buckets.setdefault(user_id, AsyncLimiter(self.per_minute, 60))
        if not bucket.has_capacity():
            return False
        self._told.discard(user_id)
        await bucket.acquire()
        return True

    def should_tell(self, user_id: int) -> bool:
        """True the first time a limited user is refused."""
        if user_id in self._told:
            return False
        self._told.add(user_id)
        return True


@dataclass
class BotDeps:
    settings: Settings
    service: TalksService
    state: BotState
    index_stats: IndexStats
    limiter: QuestionRateLimiter
    reindex_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    fetch_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one poll of the sources at a time

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.settings.admin_ids


def deps(context: ContextTypes.DEFAULT_TYPE) -> BotDeps:
    return context.application.bot_data["deps"]


def ui_lang(update: Update, context: ContextTypes.DEFAULT_TYPE) -> Lang:
    """The language of the bot's own texts for the user behind `update` (recording the user)."""
    user = update.effective_user
    if user is None:
        return "en"
    return deps(context).state.seen_user(user.id, user.language_code)
