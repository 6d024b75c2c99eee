"""New-article digests: queued in the state database when articles are indexed, sent by JobQueue jobs.

Whoever indexes new articles (the admin's /reindex and the bot's polls of the sources here,
`talks fetch` / `talks ingest` in their own process through `queue_digests`) calls
`enqueue_new_articles`; that only writes to the state. The bot's jobs send what
is pending: instant subscribers within `digest_check_seconds` (at once after a /reindex),
daily subscribers at their time. Each (chat, article) is sent once: see `bot.state`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import time
from zoneinfo import ZoneInfo

from telegram import Bot
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import Application, ContextTypes, JobQueue

from bot.deps import deps
from bot.messaging import send_html
from bot.render import digest_messages
from bot.state import BotState, Subscription
from bot.texts import Lang, text
from retrieval.service import ArticleInfo, TalksService
from talks.metrics import DIGEST_DELIVERIES
from talks.settings import Settings

logger = logging.getLogger(__name__)

INSTANT_JOB = "digest-instant"
LATEST_ARTICLES = 5


def is_chat_gone(error: TelegramError) -> bool:
    """The chat blocked or removed the bot, or no longer exists: no digest will ever get there."""
    return isinstance(error, Forbidden) or (
        isinstance(error, BadRequest) and "chat not found" in error.message.lower()
    )


def daily_job_name(chat_id: int) -> str:
    return f"digest-daily:{chat_id}"


def enqueue_new_articles(
    state: BotState, service: TalksService, article_ids: Iterable[str]
) -> list[ArticleInfo]:
    """Queue digests of the indexed articles `article_ids` (e.g. `IndexReport.new_article_ids`)
    for every subscriber. Articles announced before are skipped, so calling it twice is harmless.
    Returns the articles queued."""
    wanted = set(article_ids)
    if not wanted:
        return []
    fresh = state.announce(
        article for article in service.articles() if article.id in wanted
    )
    if fresh:
        logger.info("queued %d new article(s) for subscribers", len(fresh))
    return fresh


def queue_digests(
    settings: Settings, article_ids: Sequence[str], service: TalksService | None = None
) -> int:
    """From a process other than the bot (`talks fetch`, `talks ingest`, e.g. run by cron): queue
    digests of the newly indexed `article_ids` in the bot's state; the running bot sends them
    within TALKS_DIGEST_CHECK_SECONDS. Before the bot's first run there is nobody to tell (and
    the bot takes the index as its baseline), so nothing is done. Returns how many were queued."""
    if not article_ids:
        return 0
    state = BotState.from_settings(settings)
    try:
        if state.announced_count() == 0:
            return 0
        return len(enqueue_new_articles(state, service or TalksService(settings), article_ids))
    finally:
        state.close()


def catch_up(state: BotState, service: TalksService) -> None:
    """At startup: queue articles that were indexed while the bot was not running (on the very
    first run, the index is the baseline). Digests a stopped worker left half-sent are claimed
    again once their lease expires (see BotState)."""
    first_run = state.announced_count() == 0
    fresh = state.announce(service.articles(), notify=not first_run)
    logger.info(
        "digests: %d article(s) %s",
        len(fresh),
        "recorded as the baseline" if first_run else "new since the last run",
    )


async def deliver_digest(bot: Bot, state: BotState, chat_id: int, lang: Lang) -> int:
    """Send the chat's pending articles; returns how many were sent. A chat that blocked the
    bot is unsubscribed; other failures leave the rest pending for the next run."""
    articles = state.claim_pending(chat_id)
    unsent = {article.id for article in articles}
    sent = 0
    for markup, ids in digest_messages(articles, text("digest_new", lang)):
        try:
            message = await send_html(bot, chat_id, markup)
        except TelegramError as error:
            if is_chat_gone(error):
                logger.info(
                    "chat %s is unavailable (%s): unsubscribed", chat_id, error.message
                )
                state.unsubscribe(chat_id, reason="blocked")
                DIGEST_DELIVERIES.labels("chat_gone").inc()
            else:
                logger.warning(
                    "digest to chat %s failed (%s); will retry", chat_id, error
                )
                state.release(chat_id, unsent)
                DIGEST_DELIVERIES.labels("failed").inc()
            return sent
        state.mark_sent(chat_id, ids, message.message_id)
        DIGEST_DELIVERIES.labels("sent").inc()
        unsent -= set(ids)
        sent += len(ids)
    return sent


async def deliver_instant(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Job: send every instant subscriber their pending articles."""
    state = deps(context).state
    chats = sent = 0
    for chat_id in state.chats_with_pending("instant"):
        subscription = state.subscription(chat_id)
        if subscription is not None:
            chats += 1
            sent += await deliver_digest(context.bot, state, chat_id, subscription.lang)
    level = (
        logging.INFO
        if sent or (context.job and context.job.data == "startup")
        else logging.DEBUG
    )
    logger.log(
        level, "instant digests: %d chat(s) pending, %d article(s) sent", chats, sent
    )


async def deliver_daily(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Job: one daily subscriber's digest (the job removes itself once they unsubscribed)."""
    state = deps(context).state
    subscription = state.subscription(context.job.chat_id)
    if subscription is None or subscription.mode != "daily":
        context.job.schedule_removal()
        return
    sent = await deliver_digest(
        context.bot, state, subscription.chat_id, subscription.lang
    )
    logger.info(
        "daily digest: %d article(s) sent to chat %s", sent, subscription.chat_id
    )


def schedule_subscription(
    job_queue: JobQueue, subscription: Subscription | None, chat_id: int, timezone: str
) -> None:
    """(Re)schedule the chat's daily job to match its subscription (none if not daily)."""
    for job in job_queue.get_jobs_by_name(daily_job_name(chat_id)):
        job.schedule_removal()
    if (
        subscription is not None
        and subscription.mode == "daily"
        and subscription.daily_time is not None
    ):
        at = time(
            subscription.daily_time.hour,
            subscription.daily_time.minute,
            tzinfo=ZoneInfo(timezone),
        )
        job_queue.run_daily(
            deliver_daily, at, chat_id=chat_id, name=daily_job_name(chat_id)
        )


def send_instant_soon(job_queue: JobQueue) -> None:
    job_queue.run_once(deliver_instant, 0, name=INSTANT_JOB)


def schedule_digests(application: Application) -> None:
    """At startup: the daily jobs from SQLite, the periodic instant check, and a first check now."""
    bot_deps = application.bot_data["deps"]
    job_queue = application.job_queue
    subscriptions = bot_deps.state.subscriptions()
    for subscription in subscriptions:
        schedule_subscription(
            job_queue,
            subscription,
            subscription.chat_id,
            bot_deps.settings.digest_timezone,
        )
    interval = bot_deps.settings.digest_check_seconds
    job_queue.run_repeating(
        deliver_instant, interval=interval, first=interval, name=INSTANT_JOB
    )
    job_queue.run_once(deliver_instant, 0, name=INSTANT_JOB, data="startup")
    logger.info("digests scheduled for %d subscription(s)", len(subscriptions))


async def send_latest(
    bot: Bot, chat_id: int, lang: Lang, articles: list[ArticleInfo]
) -> None:
    """The latest articles, newest first, whatever was delivered before (for /digest)."""
    latest = sorted(articles, key=lambda a: (a.date or "", a.title), reverse=True)[
        :LATEST_ARTICLES
    ]
    if not latest:
        await send_html(bot, chat_id, text("digest_empty", lang))
        return
    for markup, _ in digest_messages(latest, text("digest_latest", lang)):
        await send_html(bot, chat_id, markup)
