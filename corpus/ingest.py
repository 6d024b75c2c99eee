"""Keeping the corpus current: poll the sources, ingest single URLs, manage the sources file.

The public API (async where the network is involved; every result has a `.summary` for people):

- `fetch_all(settings, service=..., due_only=...) -> FetchReport`: poll the sources once, store
  what is new or changed, index it; `report.new_article_ids` are the digest items.
- `ingest_url(settings, url, service=...) -> IngestReport`: fetch one article page now.
- `add_source(settings, url, ...) -> AddedSource`, `remove_source(settings, url) -> Source`,
  `list_sources(settings) -> list[Source]` (`Source.describe(now)` is its one-line status).

A poll has two phases. The network phase fetches every chosen source at once (one shared
client, bounded per host) and turns feed entries, sitemap URLs and pages into candidate
articles, skipping links already seen at the same version (page extraction runs in worker
threads, off the event loop). The commit phase, in a worker thread under the store's lock, applies the source's keyword filters and the deduplication, writes new and changed
articles to the corpus store, and records each source's outcome in the sources file. Then the
index is brought up to date (in a worker thread: embedding is CPU-bound).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property, partial
from typing import TYPE_CHECKING, Literal

from corpus.feeds import (
    FeedEntry,
    SourceFormatError,
    detect_kind,
    entry_article,
    page_article,
    parse_feed,
    parse_sitemap,
)
from corpus.fetch import Fetched, Fetcher, FetchError, InvalidURLError
from corpus.loaders import ArticleParseError, load_corpus
from corpus.models import Article, Language
from corpus.sources import (
    Source,
    SourceExistsError,
    SourceKind,
    SourcesFile,
    StateChange,
    failed,
    succeeded,
)
from corpus.store import CorpusStore, SeenLink, SeenVerdict, StoredArticle
from corpus.text import stable_article_id
from talks.settings import Settings

if TYPE_CHECKING:  # at run time these load only when something is stored or indexed
    from corpus.dedup import Deduplicator, Verdict
    from retrieval.indexing import IndexReport
    from retrieval.service import TalksService

logger = logging.getLogger(__name__)

# A sitemap index can list thousands of sitemaps: a poll reads the newest few.
MAX_CHILD_SITEMAPS = 3
INGESTED_ORIGIN = "ingest"

# What a source's document or an item can fail with; anything else is a bug, logged with its traceback.
_READ_ERRORS = (FetchError, SourceFormatError, ArticleParseError)


# --- reports -------------------------------------------------------------------------------


@dataclass
class SourceReport:
    """One source's part of a poll."""

    url: str
    kind: SourceKind
    status: Literal["ok", "not_modified", "failed", "skipped"]
    name: str | None = None
    error: str | None = None  # why it failed, or why it was skipped
    new_article_ids: list[str] = field(default_factory=list)
    updated_article_ids: list[str] = field(default_factory=list)
    duplicates: int = 0
    filtered: int = 0
    known: int = 0
    problems: list[str] = field(default_factory=list)  # items that could not be fetched or read; a malformed feed

    @property
    def summary(self) -> str:
        label = self.name or self.url
        if self.status in ("failed", "skipped"):
            return f"{label}: {self.status} ({self.error})"
        if self.status == "not_modified":
            return f"{label}: not modified"
        counts = [
            f"{len(self.new_article_ids)} new",
            f"{len(self.updated_article_ids)} updated",
            f"{self.duplicates} duplicates",
            f"{self.filtered} filtered out",
            f"{self.known} already known",
        ]
        problems = f"; {len(self.problems)} problems" if self.problems else ""
        return f"{label}: " + ", ".join(counts) + problems


@dataclass
class FetchReport:
    sources: list[SourceReport]
    new_article_ids: list[str] = field(default_factory=list)  # stored and indexed for the first time: the digest items
    updated_article_ids: list[str] = field(default_factory=list)
    index: IndexReport | None = None  # None when nothing changed

    @property
    def failed(self) -> list[SourceReport]:
        return [report for report in self.sources if report.status == "failed"]

    @property
    def summary(self) -> str:
        polled = [report for report in self.sources if report.status != "skipped"]
        skipped = len(self.sources) - len(polled)
        parts = [f"{len(polled)} sources polled"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if skipped:
            parts.append(f"{skipped} skipped")
        parts.append(f"{len(self.new_article_ids)} new articles, {len(self.updated_article_ids)} updated")
        return ", ".join(parts)


@dataclass
class IngestReport:
    url: str
    status: Literal["new", "updated", "unchanged", "duplicate"]
    article_id: str
    title: str
    reason: str = ""
    new_article_ids: list[str] = field(default_factory=list)
    index: IndexReport | None = None

    @property
    def summary(self) -> str:
        text = {
            "new": f"added {self.title!r}",
            "updated": f"updated {self.title!r}",
            "unchanged": f"already in the corpus: {self.title!r}",
            "duplicate": f"not added, {self.reason}",
        }[self.status]
        return f"{text} ({self.url})"


@dataclass
class AddedSource:
    source: Source
    detail: str  # what was found at the URL: "feed with 12 entries", "article page 'Title'"

    @property
    def summary(self) -> str:
        return f"added {self.source.kind} source {self.source.label!r}: {self.detail}"


# --- the network phase ---------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """An article read from a source, and the link it was listed under (before redirects)."""

    article: Article
    link: str
    stamp: str | None


@dataclass
class _Poll:
    source: Source
    fetched: Fetched | None = None  # the source's own document; None when the poll failed
    candidates: list[Candidate] = field(default_factory=list)
    known: int = 0
    problems: list[str] = field(default_factory=list)
    error: Exception | None = None


def _link_id(url: str) -> str:
    return stable_article_id(url, url)


def _with_source_defaults(article: Article, source: Source) -> Article:
    """The source's language (when set) and its name as the publisher when the page names none."""
    update: dict[str, object] = {}
    if source.lang and article.lang != source.lang:
        update["lang"] = source.lang
    if not article.source and source.name:
        update["source"] = source.name
    return article.model_copy(update=update) if update else article


class _Poller:
    """Reads one poll's sources through one fetcher; `seen` is the store's ledger of links."""

    def __init__(self, fetcher: Fetcher, seen: dict[str, SeenLink], max_items: int) -> None:
        self.fetcher = fetcher
        self.seen = seen
        self.max_items = max_items

    def _is_seen(self, url: str, stamp: str | None) -> bool:
        link = self.seen.get(_link_id(url))
        return link is not None and link.stamp == stamp

    async def poll(self, source: Source) -> _Poll:
        poll = _Poll(source)
        readers: dict[SourceKind, Callable[[_Poll, Fetched], Awaitable[None]]] = {
            "feed": self._read_feed,
            "sitemap": self._read_sitemap,
            "page": self._read_page,
        }
        try:
            fetched = await self.fetcher.get(
                source.url, etag=source.state.etag, last_modified=source.state.last_modified
            )
            if not fetched.not_modified:
                await readers[source.kind](poll, fetched)
            poll.fetched = fetched
        except _READ_ERRORS as exc:
            logger.warning("source %s failed: %s", source.url, exc)
            poll.error = exc
        except Exception as exc:  # a bug or a library surprise in one source must not stop the others
            logger.exception("source %s failed unexpectedly", source.url)
            poll.error = exc
        return poll

    async def _read_feed(self, poll: _Poll, fetched: Fetched) -> None:
        feed = parse_feed(fetched)
        if feed.problem:
            poll.problems.append(f"malformed feed, used the {len(feed.entries)} entries that parse: {feed.problem}")
        fresh = [entry for entry in feed.entries if not self._is_seen(entry.url, entry.stamp)]
        poll.known = len(feed.entries) - len(fresh)

        async def read(entry: FeedEntry) -> Candidate:
            article = await asyncio.to_thread(entry_article, entry) or await self._page(entry.url)
            if entry.published and not article.published:
                article = article.model_copy(update={"published": entry.published})
            return Candidate(article, entry.url, entry.stamp)

        await self._gather(poll, [(entry.url, read(entry)) for entry in fresh[: self.max_items]])

    async def _read_sitemap(self, poll: _Poll, fetched: Fetched) -> None:
        sitemap = parse_sitemap(fetched)
        pages = list(sitemap.pages)
        for child in sitemap.children[:MAX_CHILD_SITEMAPS]:
            try:
                pages.extend(parse_sitemap(await self.fetcher.get(child.url)).pages)
            except _READ_ERRORS as exc:
                poll.problems.append(f"{child.url}: {exc}")
        fresh = [page for page in pages if not self._is_seen(page.url, page.lastmod)]
        poll.known = len(pages) - len(fresh)

        async def read(page_url: str, stamp: str | None) -> Candidate:
            return Candidate(await self._page(page_url), page_url, stamp)

        await self._gather(poll, [(page.url, read(page.url, page.lastmod)) for page in fresh[: self.max_items]])

    async def _read_page(self, poll: _Poll, fetched: Fetched) -> None:
        article = await asyncio.to_thread(page_article, fetched)
        poll.candidates.append(Candidate(article, poll.source.url, fetched.etag or fetched.last_modified))

    async def _page(self, url: str) -> Article:
        """The article at `url`; extraction runs in a worker thread, off the event loop."""
        return await asyncio.to_thread(page_article, await self.fetcher.get(url))

    @staticmethod
    async def _gather(poll: _Poll, reads: Sequence[tuple[str, Awaitable[Candidate]]]) -> None:
        """Run the item reads at once; a failed item is a problem of the poll, not a failure."""
        results = await asyncio.gather(*(read for _, read in reads), return_exceptions=True)
        for (url, _), result in zip(reads, results, strict=True):
            if isinstance(result, Candidate):
                poll.candidates.append(result)
            elif isinstance(result, _READ_ERRORS):
                logger.info("skipped %s: %s", url, result)
                poll.problems.append(f"{url}: {result}")
            else:
                raise result


# --- the commit phase ----------------------------------------------------------------------


_SEEN_AS: dict[str, SeenVerdict] = {"new": "stored", "updated": "stored", "unchanged": "unchanged", "duplicate": "duplicate"}


class _Committer:
    """Filters, dedupes and stores candidates; holds the store's lock while it exists."""

    def __init__(self, settings: Settings, store: CorpusStore, now: datetime) -> None:
        self.settings = settings
        self.store = store
        self.now = now
        self.seen: dict[str, SeenLink] = {}

    @cached_property
    def dedup(self) -> Deduplicator:
        """Built on first use: a poll that brought nothing new never loads the corpus."""
        from corpus.dedup import Deduplicator

        others = [folder for folder in self.settings.corpus_dirs if folder.resolve() != self.store.folder.resolve()]
        return Deduplicator(
            (item.article for item in self.store.articles().values()),
            load_corpus(others).articles if others else (),
            threshold=self.settings.near_duplicate_threshold,
        )

    def commit(self, candidate: Candidate, *, origin: str) -> Verdict:
        article = candidate.article
        verdict = self.dedup.check(article)
        if verdict.kind in ("new", "updated"):
            self.store.save(StoredArticle(article=article, fetched_at=self.now, origin=origin, stamp=candidate.stamp))
            self.dedup.add(article)
        logger.info("%s: %s %r %s", verdict.kind, article.id, article.title, verdict.reason)
        self.remember(candidate, _SEEN_AS[verdict.kind])
        return verdict

    def remember(self, candidate: Candidate, verdict: SeenVerdict) -> None:
        link = SeenLink(stamp=candidate.stamp, verdict=verdict, at=self.now)
        self.seen[_link_id(candidate.link)] = link
        self.seen[candidate.article.id] = link

    def commit_poll(self, poll: _Poll) -> SourceReport:
        source = poll.source
        report = SourceReport(
            url=source.url,
            name=source.name,
            kind=source.kind,
            status="not_modified" if poll.fetched is not None and poll.fetched.not_modified else "ok",
            known=poll.known,
            problems=poll.problems,
        )
        for candidate in poll.candidates:
            candidate = Candidate(_with_source_defaults(candidate.article, source), candidate.link, candidate.stamp)
            if reason := source.filter_reason(candidate.article.title, candidate.article.text):
                logger.info("filtered out %r from %s: %s", candidate.article.title, source.url, reason)
                self.remember(candidate, "filtered")
                report.filtered += 1
                continue
            verdict = self.commit(candidate, origin=source.url)
            if verdict.kind == "new":
                report.new_article_ids.append(candidate.article.id)
            elif verdict.kind == "updated":
                report.updated_article_ids.append(candidate.article.id)
            elif verdict.kind == "duplicate":
                report.duplicates += 1
            else:
                report.known += 1
        return report


def _commit_polls(settings: Settings, polls: Sequence[_Poll], now: datetime) -> list[SourceReport]:
    """Store what the polls found and record each source's outcome (in a worker thread)."""
    store = CorpusStore(settings.fetched_dir)
    sources_file = SourcesFile(settings.sources_path)
    reports = []
    with store.locked():
        committer = _Committer(settings, store, now)
        for poll in polls:
            report = _failed_report(poll) if poll.fetched is None else committer.commit_poll(poll)
            reports.append(report)
            sources_file.update_state(poll.source.url, _state_change(poll, report, settings, now))
        store.remember(committer.seen)
    return reports


def _commit_one(settings: Settings, candidate: Candidate) -> Verdict:
    """Store one ingested article unless it is a duplicate (in a worker thread)."""
    store = CorpusStore(settings.fetched_dir)
    with store.locked():
        committer = _Committer(settings, store, _now())
        verdict = committer.commit(candidate, origin=INGESTED_ORIGIN)
        store.remember(committer.seen)
    return verdict


def _failed_report(poll: _Poll) -> SourceReport:
    source = poll.source
    return SourceReport(url=source.url, name=source.name, kind=source.kind, status="failed", error=str(poll.error))


def _state_change(poll: _Poll, report: SourceReport, settings: Settings, now: datetime) -> StateChange:
    """How the poll changes the source's state (applied to the state as it is in the file then)."""
    source = poll.source
    if poll.fetched is None:
        return partial(
            failed,
            now=now,
            error=str(poll.error),
            interval=source.interval(settings.poll_interval_minutes),
            max_backoff=timedelta(hours=settings.source_backoff_max_hours),
            retry_after=getattr(poll.error, "retry_after", None),
        )
    return partial(
        succeeded,
        now=now,
        modified=not poll.fetched.not_modified,
        new=len(report.new_article_ids),
        etag=poll.fetched.etag,
        last_modified=poll.fetched.last_modified,
    )


async def _index(settings: Settings, service: TalksService | None) -> IndexReport:
    """Bring the index up to date with the corpus folders and the store, off the event loop."""
    if service is None:
        from retrieval.service import TalksService  # the model loads only when there is something to index

        service = await asyncio.to_thread(TalksService, settings)
    return await asyncio.to_thread(service.index, settings.index_dirs)


# --- the public API ------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _skip_reason(source: Source, now: datetime, settings: Settings, *, due_only: bool, force: bool) -> str | None:
    if force:
        return None
    if source.backing_off(now) and source.state.backoff_until is not None:
        return f"backing off after {source.state.failures} failures, until {source.state.backoff_until:%Y-%m-%d %H:%M} UTC"
    if due_only and not source.is_due(now, settings.poll_interval_minutes):
        return "not due yet"
    return None


async def fetch_all(
    settings: Settings,
    *,
    service: TalksService | None = None,
    due_only: bool = False,
    force: bool = False,
) -> FetchReport:
    """Poll the sources once and index what is new or changed.

    `due_only`: only sources whose poll interval has passed (the bot's scheduled job).
    `force`: also the sources that are backing off after failures. A failing source is
    reported and backed off; it never stops the others. `service`: the running
    `TalksService` (else one is made, only if there is something to index).
    """
    now = _now()
    chosen: list[Source] = []
    reports: list[SourceReport] = []
    for source in SourcesFile(settings.sources_path).load():
        if reason := _skip_reason(source, now, settings, due_only=due_only, force=force):
            reports.append(SourceReport(url=source.url, name=source.name, kind=source.kind, status="skipped", error=reason))
        else:
            chosen.append(source)

    async with Fetcher(settings) as fetcher:
        poller = _Poller(fetcher, CorpusStore(settings.fetched_dir).seen(), settings.fetch_max_items_per_poll)
        polls = await asyncio.gather(*(poller.poll(source) for source in chosen))

    reports.extend(await asyncio.to_thread(_commit_polls, settings, polls, now))

    result = FetchReport(
        sources=reports,
        new_article_ids=sorted({i for report in reports for i in report.new_article_ids}),
        updated_article_ids=sorted({i for report in reports for i in report.updated_article_ids}),
    )
    if result.new_article_ids or result.updated_article_ids:
        result.index = await _index(settings, service)
    logger.info("fetch: %s", result.summary)
    return result


async def ingest_url(settings: Settings, url: str, *, service: TalksService | None = None) -> IngestReport:
    """Fetch one article page now and add it (no keyword filter: an admin asked for it).

    Raises `FetchError`, `ArticleParseError` (no article text on the page) or `SourceFormatError`
    (a feed or sitemap: add those as sources).
    """
    _require_http(url)
    async with Fetcher(settings) as fetcher:
        fetched = await fetcher.get(url)
    kind = detect_kind(fetched)
    if kind != "page":
        raise SourceFormatError(f"{url} is a {kind}, not an article page: add it as a source instead")
    article = await asyncio.to_thread(page_article, fetched)
    verdict = await asyncio.to_thread(_commit_one, settings, Candidate(article, url, fetched.etag or fetched.last_modified))
    report = IngestReport(
        url=article.url or url,
        status=verdict.kind,
        article_id=verdict.of or article.id,
        title=article.title,
        reason=verdict.reason,
        new_article_ids=[article.id] if verdict.kind == "new" else [],
    )
    if verdict.kind in ("new", "updated"):
        report.index = await _index(settings, service)
    return report


def _require_http(url: str) -> None:
    if not url.strip().lower().startswith(("http://", "https://")):
        raise InvalidURLError(f"not an http(s) URL: {url!r}")


def _describe_found(kind: SourceKind, fetched: Fetched) -> tuple[str, str | None]:
    """What is at the URL, for the admin, and a name for the source when none was given."""
    if kind == "feed":
        feed = parse_feed(fetched)
        return f"feed with {len(feed.entries)} entries", feed.title
    if kind == "sitemap":
        sitemap = parse_sitemap(fetched)
        if sitemap.children:
            return f"sitemap index of {len(sitemap.children)} sitemaps", None
        return f"sitemap of {len(sitemap.pages)} pages", None
    article = page_article(fetched)
    return f"article page {article.title!r}", article.source


async def add_source(
    settings: Settings,
    url: str,
    *,
    name: str | None = None,
    lang: Language | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    interval_minutes: int | None = None,
) -> AddedSource:
    """Fetch the URL once to see what it is (feed, sitemap or article page) and add it as a source.

    Its articles enter at the next poll. Raises `SourceExistsError`, `FetchError`,
    `SourceFormatError` or `ArticleParseError` (a page without article text).
    """
    _require_http(url)
    sources_file = SourcesFile(settings.sources_path)
    if sources_file.find(url) is not None:
        raise SourceExistsError(f"already a source: {url}")
    async with Fetcher(settings) as fetcher:
        fetched = await fetcher.get(url)
    kind = detect_kind(fetched)
    detail, found_name = await asyncio.to_thread(_describe_found, kind, fetched)
    source = Source(
        url=url.strip(),
        kind=kind,
        name=name or found_name,
        lang=lang,
        include=list(include),
        exclude=list(exclude),
        interval_minutes=interval_minutes,
    )
    sources_file.add(source)
    logger.info("added source %s (%s)", url, detail)
    return AddedSource(source=source, detail=detail)


def remove_source(settings: Settings, url: str) -> Source:
    """Remove a source (its articles stay in the corpus). Raises `UnknownSourceError`."""
    return SourcesFile(settings.sources_path).remove(url)


def list_sources(settings: Settings) -> list[Source]:
    return SourcesFile(settings.sources_path).load()
