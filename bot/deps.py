"""What every handler shares: settings, the answering service, the state database, limits."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from telegram import Update
from telegram.ext import ContextTypes

from bot.state import Admission, BotState
from bot.texts import Lang
from retrieval.service import IndexStats, TalksService
from talks.settings import Settings


class QuestionRateLimiter:
    """The per-user question limit, kept in the shared state so that every worker counts alike
    (see `BotState.admit_question`)."""

    def __init__(self, state: BotState, per_minute: int) -> None:
        self.state, self.per_minute = state, per_minute

    async def admit(self, user_id: int) -> Admission:
        return await asyncio.to_thread(self.state.admit_question, user_id, self.per_minute)


@dataclass
class BotDeps:
    settings: Settings
    service: TalksService
    state: BotState
    index_stats: IndexStats
    limiter: QuestionRateLimiter
    answer_slots: asyncio.Semaphore  # bounds the CPU-bound answers computed at once
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
