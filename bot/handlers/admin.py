"""Admin commands (TALKS_ADMIN_IDS only): /reindex [full], /stats, /sources, /feedback,
/health (the sources to fetch from: `bot.handlers.sources`)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future

from telegram import Message, Update
from telegram.ext import ContextTypes

from bot.deps import deps, ui_lang
from bot.fetching import corpus_changed
from bot.handlers.basics import reply
from bot.messaging import edit_html, finish_html, send_html
from bot.render import escape, link, shorten
from bot.texts import Lang, text
from retrieval.indexing import IndexReport
from talks.health import service_health
from talks.metrics import REINDEXES

logger = logging.getLogger(__name__)

Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[None]]
PROGRESS_EDIT_INTERVAL_S = 1.5
FEEDBACK_ITEMS = 10


def admin_only(handler: Handler) -> Handler:
    """Run `handler` for admins; anyone else gets a refusal that reveals nothing, and is logged."""

    @functools.wraps(handler)
    async def guarded(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        user = update.effective_user
        if not deps(context).is_admin(user.id if user else None):
            command = (update.effective_message.text or "").split(maxsplit=1)[0]
            logger.warning(
                "refused %s from non-admin user %s", command, user.id if user else None
            )
            await reply(update, context, text("refused", ui_lang(update, context)))
            return
        await handler(update, context)

    return guarded


class ProgressMessage:
    """Edits one message with the indexing progress, reported from the indexing thread."""

    def __init__(
        self, message: Message, lang: Lang, mode: str, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.message, self.lang, self.mode, self.loop = message, lang, mode, loop
        self._last_edit = 0.0
        self._edits: list[Future[None]] = []

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last_edit < PROGRESS_EDIT_INTERVAL_S and done < total:
            return
        self._last_edit = now
        markup = text(
            "reindex_progress", self.lang, mode=self.mode, done=done, total=total
        )
        self._edits.append(
            asyncio.run_coroutine_threadsafe(edit_html(self.message, markup), self.loop)
        )

    async def finish(self, markup: str) -> None:
        """Wait for the progress edits still in flight, then show `markup`."""
        for edit in self._edits:
            try:
                await asyncio.wrap_future(edit)
            except Exception:
                logger.warning("a reindex progress edit failed", exc_info=True)
        await finish_html(self.message.get_bot(), self.message, markup)


def report_text(report: IndexReport, lang: Lang, mode: str, announced: int) -> str:
    errors = ""
    if report.errors:
        listed = "\n".join(
            f"• {escape(error.path)}: {escape(error.reason)}"
            for error in report.errors[:10]
        )
        errors = text("reindex_errors", lang, errors=listed)
    return text(
        "reindex_done",
        lang,
        mode=mode,
        seconds=report.seconds,
        articles=report.articles,
        added=report.articles_added,
        updated=report.articles_updated,
        removed=report.articles_removed,
        chunks_added=report.chunks_added,
        chunks_removed=report.chunks_removed,
        chunks_unchanged=report.chunks_unchanged,
        announced=announced,
        errors=errors,
    )


async def run_reindex(
    context: ContextTypes.DEFAULT_TYPE, progress: ProgressMessage, full: bool
) -> None:
    """Index in a worker thread (answers keep coming from the old index), then report and
    queue the new articles' digests."""
    bot_deps = deps(context)
    async with bot_deps.reindex_lock:
        try:
            report = await asyncio.to_thread(
                bot_deps.service.index, full=full, progress=progress.update
            )
            announced = await corpus_changed(
                context.application, report.new_article_ids
            )
        except Exception as error:
            logger.exception("reindex failed")
            REINDEXES.labels("failed").inc()
            await progress.finish(
                text("reindex_failed", progress.lang, error=escape(str(error)))
            )
            return
    REINDEXES.labels("ok").inc()
    await progress.finish(report_text(report, progress.lang, progress.mode, announced))


@admin_only
async def on_reindex(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    bot_deps = deps(context)
    lang = ui_lang(update, context)
    if bot_deps.reindex_lock.locked():
        await reply(update, context, text("reindex_busy", lang))
        return
    full = bool(context.args) and context.args[0].lower() == "full"
    mode = "full" if full else "incremental"
    message = update.effective_message
    started = await send_html(
        context.bot,
        message.chat_id,
        text("reindex_started", lang, mode=mode),
        reply_to=message.message_id,
    )
    logger.info("%s reindex requested by user %s", mode, update.effective_user.id)
    progress = ProgressMessage(started, lang, mode, asyncio.get_running_loop())
    context.application.create_task(run_reindex(context, progress, full), update=update)


@admin_only
async def on_stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    bot_deps = deps(context)
    index, usage = bot_deps.index_stats, bot_deps.state.usage_stats()
    median = (
        f"{usage.median_answer_ms:.0f} ms"
        if usage.median_answer_ms is not None
        else "–"
    )
    await reply(
        update,
        context,
        text(
            "stats",
            ui_lang(update, context),
            articles=index.articles,
            chunks=index.chunks,
            first=index.first_date or "–",
            last=index.last_date or "–",
            users=usage.users,
            subscribers=usage.subscribers,
            questions=usage.questions_today,
            declines=usage.declines_today,
            median=median,
        ),
    )


@admin_only
async def on_sources(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    articles = await asyncio.to_thread(deps(context).service.articles)
    lines = [
        f"• {escape(article.date or '–')} — {link(article.title, article.url)} "
        f"({escape(article.source or article.source_name)}, {article.lang}, {article.chunks})"
        for article in articles
    ]
    await reply(
        update,
        context,
        "\n".join(lines) or text("digest_empty", ui_lang(update, context)),
    )


@admin_only
async def on_feedback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    items = deps(context).state.negative_feedback(FEEDBACK_ITEMS)
    if not items:
        await reply(update, context, text("no_feedback", ui_lang(update, context)))
        return
    blocks = []
    for item in items:
        answer = item.answer
        sources = (
            "; ".join(
                f"[{c.n}] {escape(shorten(c.title, 80))}" for c in answer.citations
            )
            or "–"
        )
        blocks.append(
            f"👎 <b>#{item.answer_id}</b> {escape(item.at)} · user {item.user_id}\n"
            f"<b>Q:</b> {escape(shorten(answer.question, 300))}\n"
            f"<b>A:</b> {escape(shorten(answer.answer, 400))}\n"
            f"<b>Sources:</b> {sources}"
        )
    await reply(update, context, "\n\n".join(blocks))


@admin_only
async def on_health(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """What `talks health` and the HTTP /health report, for this running bot."""
    bot_deps = deps(context)
    report = await asyncio.to_thread(service_health, bot_deps.settings, bot_deps.service)
    verdict, *checks = report.lines()
    await reply(update, context, "\n".join([f"<b>{escape(verdict)}</b>", *map(escape, checks)]))
