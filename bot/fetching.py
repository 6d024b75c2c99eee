"""Keeping the bot's corpus current: the scheduled poll of the sources (JobQueue), and what
follows newly indexed articles (the statistics the bot shows, digests for subscribers)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

from telegram.ext import Application, ContextTypes

from bot.deps import BotDeps, deps
from bot.digests import enqueue_new_articles, send_instant_soon
from corpus.ingest import FetchReport, fetch_all
from corpus.sources import SourcesFileError
from talks.metrics import record_fetch, record_index

logger = logging.getLogger(__name__)

POLL_JOB = "sources-poll"


async def corpus_changed(application: Application, new_article_ids: Sequence[str]) -> int:
    """After indexing: refresh the index statistics (/start, /help, /stats), queue digests of
    the new articles and send the instant ones now. Returns how many articles were queued."""
    bot_deps: BotDeps = application.bot_data["deps"]
    bot_deps.index_stats = await asyncio.to_thread(bot_deps.service.stats)
    record_index(bot_deps.index_stats)
    fresh = await asyncio.to_thread(
        enqueue_new_articles, bot_deps.state, bot_deps.service, new_article_ids
    )
    if fresh:
        send_instant_soon(application.job_queue)
    return len(fresh)


async def fetch_sources(
    application: Application, *, due_only: bool
) -> tuple[FetchReport, int]:
    """Poll the sources (only those due, or all), index what is new, queue its digests.
    Returns the report and how many articles were queued for subscribers."""
    bot_deps: BotDeps = application.bot_data["deps"]
    async with bot_deps.fetch_lock:
        report = await fetch_all(
            bot_deps.settings, service=bot_deps.service, due_only=due_only
        )
        record_fetch(report)
        announced = (
            await corpus_changed(application, report.new_article_ids)
            if report.index is not None
            else 0
        )
    return report, announced


async def poll_sources(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Job: poll the sources that are due. A failure is logged; the next run tries again."""
    if deps(context).fetch_lock.locked():
        logger.info("scheduled poll skipped: a fetch is still running")
        return
    try:
        report, announced = await fetch_sources(context.application, due_only=True)
    except SourcesFileError as error:
        logger.error("scheduled poll: %s", error)
        return
    except Exception:
        logger.exception("scheduled poll of the sources failed")
        return
    if report.index is not None:
        logger.info(
            "scheduled poll: %s; %d queued for subscribers", report.summary, announced
        )


def schedule_polling(application: Application) -> None:
    minutes = application.bot_data["deps"].settings.poll_check_minutes
    interval = timedelta(minutes=minutes)
    application.job_queue.run_repeating(
        poll_sources, interval=interval, first=interval, name=POLL_JOB
    )
    logger.info("sources polled every %g min", minutes)
