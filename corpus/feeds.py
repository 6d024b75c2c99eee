"""Reading what the fetcher brings back: RSS/Atom feeds (feedparser), sitemaps, and article pages.

Pure functions over a `Fetched` response; no network here (see `corpus.fetch` and `corpus.ingest`).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import date
from html import escape

import feedparser
from lxml import etree

from corpus.fetch import Fetched
from corpus.loaders import ArticleParseError, article_from_html
from corpus.models import Article
from corpus.sources import SourceKind
from corpus.text import canonical_url

logger = logging.getLogger(__name__)

# A feed entry whose content has at least this much text is taken as the full article;
# shorter ones are summaries, and the article's page is fetched instead.
FULL_TEXT_MIN_CHARS = 500

_TAG = re.compile(r"<[^>]+>")
_ROOT_ELEMENT = re.compile(rb"<([A-Za-z_][\w:.-]*)")
_SNIFF_BYTES = 2048
_FEED_ROOTS = frozenset({"rss", "rdf", "feed"})
_SITEMAP_ROOTS = frozenset({"urlset", "sitemapindex"})


class SourceFormatError(ValueError):
    """The response is not a feed, sitemap or article page that can be read."""


# --- kind detection ----------------------------------------------------------------------


def _root_element(content: bytes) -> str | None:
    """The local name of the first element, past the XML declaration, comments and doctype."""
    head = re.sub(rb"<!--.*?-->|<![^>]*>|<\?.*?\?>", b"", content[:_SNIFF_BYTES], flags=re.DOTALL)
    found = _ROOT_ELEMENT.search(head)
    return found.group(1).decode("ascii").rsplit(":", 1)[-1].lower() if found else None


def detect_kind(fetched: Fetched) -> SourceKind:
    """Feed, sitemap or page, from the document's root element (then its Content-Type)."""
    root = _root_element(fetched.content.lstrip(b"\xef\xbb\xbf"))
    if root in _FEED_ROOTS:
        return "feed"
    if root in _SITEMAP_ROOTS:
        return "sitemap"
    if root == "html" or "html" in fetched.content_type.lower():
        return "page"
    raise SourceFormatError(
        f"{fetched.url} is not an RSS/Atom feed, a sitemap or a web page ({fetched.content_type or 'no content type'})"
    )


# --- feeds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedEntry:
    url: str
    title: str
    published: date | None
    stamp: str | None  # the entry's updated/published text: a change means a new version
    content_html: str  # the longest of the entry's content and summary


@dataclass(frozen=True)
class Feed:
    title: str | None
    entries: list[FeedEntry]
    problem: str | None  # what the parser complained about, for a malformed feed


def _entry_date(entry: feedparser.FeedParserDict) -> date | None:
    parsed: time.struct_time | None = entry.get("published_parsed") or entry.get("updated_parsed")
    return date(parsed.tm_year, parsed.tm_mon, parsed.tm_mday) if parsed else None


def _entry_html(entry: feedparser.FeedParserDict) -> str:
    candidates = [part.get("value", "") for part in entry.get("content", [])] + [entry.get("summary", "")]
    return max(candidates, key=len)


def parse_feed(fetched: Fetched) -> Feed:
    """The entries of an RSS or Atom feed; from a malformed feed, the entries that could be read."""
    # Decoded here like every page (header, declaration, detection), then handed over as UTF-8.
    parsed = feedparser.parse(
        fetched.text().encode("utf-8"),
        response_headers={"content-type": "application/xml; charset=utf-8", "content-location": fetched.url},
    )
    problem = f"{type(parsed.bozo_exception).__name__}: {parsed.bozo_exception}" if parsed.get("bozo") else None
    entries = [
        FeedEntry(
            url=entry["link"].strip(),
            title=entry.get("title", ""),
            published=_entry_date(entry),
            stamp=entry.get("updated") or entry.get("published"),
            content_html=_entry_html(entry),
        )
        for entry in parsed.entries
        if entry.get("link", "").strip()
    ]
    if problem:
        if not entries:
            raise SourceFormatError(f"malformed feed with no readable entries ({problem}): {fetched.url}")
        logger.warning("malformed feed %s, using the %d entries that parse: %s", fetched.url, len(entries), problem)
    return Feed(title=parsed.feed.get("title"), entries=entries, problem=problem)


def entry_article(entry: FeedEntry) -> Article | None:
    """The article from the feed's own content, or None when the feed carries only a summary."""
    if len(_TAG.sub("", entry.content_html).strip()) < FULL_TEXT_MIN_CHARS:
        return None
    html = (
        f"<html><head><title>{escape(entry.title)}</title></head>"
        f"<body><article><h1>{escape(entry.title)}</h1>{entry.content_html}</article></body></html>"
    )
    try:
        article = article_from_html(html, source_name=entry.url, url=canonical_url(entry.url))
    except ArticleParseError:
        return None
    return article.model_copy(update={"published": entry.published or article.published})


# --- sitemaps ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SitemapEntry:
    url: str
    lastmod: str | None


@dataclass(frozen=True)
class Sitemap:
    pages: list[SitemapEntry]
    children: list[SitemapEntry]  # the sitemaps a sitemap index lists


def _local_name(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _child_text(element: etree._Element, name: str) -> str | None:
    child = next((c for c in element if _local_name(c) == name), None)
    return child.text.strip() if child is not None and child.text and child.text.strip() else None


def parse_sitemap(fetched: Fetched) -> Sitemap:
    """Page URLs (newest `lastmod` first) of a sitemap, or the child sitemaps of a sitemap index."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=True, huge_tree=False)
    try:
        root = etree.fromstring(fetched.content, parser=parser)
    except etree.XMLSyntaxError:
        root = None
    if root is None:
        raise SourceFormatError(f"unreadable sitemap: {fetched.url}")
    entries = [
        SitemapEntry(url=loc, lastmod=_child_text(element, "lastmod"))
        for element in root
        if _local_name(element) in ("url", "sitemap") and (loc := _child_text(element, "loc"))
    ]
    entries.sort(key=lambda entry: entry.lastmod or "", reverse=True)
    if _local_name(root) == "sitemapindex":
        return Sitemap(pages=[], children=entries)
    return Sitemap(pages=entries, children=[])


# --- pages ---------------------------------------------------------------------------------


def page_article(fetched: Fetched) -> Article:
    """The article on a web page (trafilatura), at the canonical form of the URL the redirects ended at."""
    return article_from_html(fetched.text(), source_name=fetched.url, url=canonical_url(fetched.url))
