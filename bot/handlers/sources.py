"""Admin commands for the sources the corpus is fetched from: /addsource URL [name],
/removesource URL, /listsources, /ingest URL, /fetch.

The ones that go over the network answer at once ("⏳ …"), work in the background, and edit
that message to their summary, as /reindex does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial

from telegram import Update
from telegram.ext import ContextTypes

from bot.deps import deps, ui_lang
from bot.fetching import corpus_changed, fetch_sources
from bot.handlers.admin import admin_only
from bot.handlers.basics import reply
from bot.messaging import finish_html, send_html
from bot.render import escape
from bot.texts import Lang, text
from corpus.feeds import SourceFormatError
from corpus.fetch import FetchError
from corpus.ingest import add_source, ingest_url, list_sources, remove_source
from corpus.loaders import ArticleParseError
from corpus.sources import SourceExistsError, SourcesFileError, UnknownSourceError

logger = logging.getLogger(__name__)

# What an admin's URL can run into: told to the admin as it is, not a bug.
SOURCE_ERRORS = (
    FetchError,
    SourceFormatError,
    ArticleParseError,
    SourceExistsError,
    SourcesFileError,
)


async def in_background(
    update: Update,
    context: ContextTypes.DEFAULT_TYPE,
    started: str,
    work: Callable[[], Awaitable[str]],
) -> None:
    """Reply `started` now, then run `work` in the background and edit the reply to the
    markup it returns (or to what went wrong)."""
    lang = ui_lang(update, context)
    message = update.effective_message
    progress = await send_html(
        context.bot, message.chat_id, started, reply_to=message.message_id
    )

    async def run() -> None:
        try:
            markup = await work()
        except SOURCE_ERRORS as error:
            logger.info("%s: %s", message.text, error)
            markup = text("source_failed", lang, error=escape(str(error)))
        except Exception as error:
            logger.exception("%s failed", message.text)
            markup = text("source_failed", lang, error=escape(str(error)))
        await finish_html(context.bot, progress, markup)

    context.application.create_task(run(), update=update)


def _url_argument(context: ContextTypes.DEFAULT_TYPE) -> str | None:
    return context.args[0] if context.args else None


async def _added(context: ContextTypes.DEFAULT_TYPE, lang: Lang, url: str, name: str | None) -> str:
    settings = deps(context).settings
    added = await add_source(settings, url, name=name)
    logger.info("source added: %s", added.summary)
    return text(
        "source_added",
        lang,
        summary=escape(added.summary),
        minutes=settings.poll_check_minutes,
    )


@admin_only
async def on_addsource(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/addsource URL [name]: what the URL is (feed, sitemap, article page) is detected."""
    lang = ui_lang(update, context)
    url = _url_argument(context)
    if url is None:
        await reply(update, context, text("usage", lang, usage="/addsource URL [name]"))
        return
    name = " ".join(context.args[1:]) or None
    await in_background(
        update,
        context,
        text("source_checking", lang, url=escape(url)),
        partial(_added, context, lang, url, name),
    )


@admin_only
async def on_removesource(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    lang = ui_lang(update, context)
    url = _url_argument(context)
    if url is None:
        await reply(update, context, text("usage", lang, usage="/removesource URL"))
        return
    try:
        removed = await asyncio.to_thread(remove_source, deps(context).settings, url)
    except UnknownSourceError:
        await reply(update, context, text("unknown_source", lang, url=escape(url)))
        return
    logger.info("source removed: %s", removed.url)
    await reply(update, context, text("source_removed", lang, label=escape(removed.label)))


@admin_only
async def on_listsources(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Each source with its last fetch, last status (⚠️ when failing) and article count."""
    lang = ui_lang(update, context)
    try:
        sources = await asyncio.to_thread(list_sources, deps(context).settings)
    except SourcesFileError as error:
        await reply(update, context, text("source_failed", lang, error=escape(str(error))))
        return
    if not sources:
        await reply(update, context, text("no_sources", lang))
        return
    now = datetime.now(UTC)
    lines = [
        f"{'⚠️' if source.state.last_status == 'failed' else '•'} {escape(source.describe(now))}"
        for source in sources
    ]
    header = text("sources_header", lang, count=len(sources))
    await reply(update, context, header + "\n" + "\n".join(lines))


async def _ingested(context: ContextTypes.DEFAULT_TYPE, lang: Lang, url: str) -> str:
    bot_deps = deps(context)
    report = await ingest_url(bot_deps.settings, url, service=bot_deps.service)
    logger.info("ingest: %s", report.summary)
    announced = (
        await corpus_changed(context.application, report.new_article_ids)
        if report.index is not None
        else 0
    )
    return text(
        "ingest_done",
        lang,
        icon="✅" if report.status in ("new", "updated") else "ℹ️",
        summary=escape(report.summary),
        announced=announced,
    )


@admin_only
async def on_ingest(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/ingest URL: fetch one article page now, index it, queue it for subscribers."""
    lang = ui_lang(update, context)
    url = _url_argument(context)
    if url is None:
        await reply(update, context, text("usage", lang, usage="/ingest URL"))
        return
    await in_background(
        update,
        context,
        text("ingest_started", lang, url=escape(url)),
        partial(_ingested, context, lang, url),
    )


async def _fetched(context: ContextTypes.DEFAULT_TYPE, lang: Lang) -> str:
    report, announced = await fetch_sources(context.application, due_only=False)
    if not report.sources:
        return text("no_sources", lang)
    lines = [f"• {escape(source.summary)}" for source in report.sources]
    return text(
        "fetch_done",
        lang,
        summary=escape(report.summary),
        announced=announced,
        sources="\n".join(lines),
    )


@admin_only
async def on_fetch(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/fetch: poll every source now (those backing off after failures wait their turn)."""
    lang = ui_lang(update, context)
    if deps(context).fetch_lock.locked():
        await reply(update, context, text("fetch_busy", lang))
        return
    await in_background(
        update, context, text("fetch_started", lang), partial(_fetched, context, lang)
    )
