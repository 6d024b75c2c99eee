"""The sources file: which feeds, pages and sitemaps to poll, their filters, and their polling state.

`sources.yaml` (path: `Settings.sources_path`) holds one entry per source::

    sources:
      - url: https://example.org/world/rss.xml
        kind: feed            # feed | page | sitemap, detected when the source is added
        name: Example World
        lang: en              # optional: overrides the detected language of its articles
        include: [Geneva, NATO, Ryabkov, جنيف, الناتو]   # optional: only articles naming one of these
        exclude: [football]   # optional: never articles naming one of these
        interval_minutes: 30  # optional: default TALKS_POLL_INTERVAL_MINUTES
        state: {...}          # written by the fetcher: last fetch, status, failures, ETag, counts

Admins may edit the file by hand; the fetcher rewrites only the `state` of the sources it polled
(re-reading the file under a lock first, so additions made meanwhile are kept).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from corpus.models import Language
from corpus.store import file_lock, write_atomically
from corpus.text import canonical_url, is_arabic_letter, normalize_text
from retrieval.lexical import normalize_arabic

SourceKind = Literal["feed", "page", "sitemap"]
PollStatus = Literal["ok", "not_modified", "failed"]


class SourcesFileError(ValueError):
    """The sources file cannot be read or is not a valid list of sources."""


class SourceExistsError(ValueError):
    """A source with the same (canonical) URL is already in the sources file."""


class UnknownSourceError(KeyError):
    """No source with that URL is in the sources file."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown source"


# --- keyword filters ----------------------------------------------------------------

# Arabic words carry their conjunction, preposition and article: والناتو, وبجنيف, للناتو.
_ARABIC_CLITICS = "(?:[وف]?[بكل]?(?:ال|لل)?)"
_ARABIC_ARTICLE = re.compile(r"^(?:ال|لل)(?=\w{2,})")


def fold_text(text: str) -> str:
    """Text for matching: normalised, lower case, Arabic letter variants and diacritics folded."""
    return normalize_arabic(normalize_text(text).lower())


@lru_cache(maxsize=1024)
def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Whole words of `keyword` in folded text; Arabic ones also after و ف ب ك ل and ال / لل."""
    words = fold_text(keyword).split()
    if not words:
        raise ValueError("empty keyword")
    arabic = any(map(is_arabic_letter, words[0]))
    if arabic:
        words[0] = _ARABIC_ARTICLE.sub("", words[0])
    body = r"\s+".join(map(re.escape, words))
    return re.compile(rf"(?<!\w){_ARABIC_CLITICS if arabic else ''}{body}(?!\w)")


def mentions_any(folded_text: str, keywords: Sequence[str]) -> str | None:
    """The first keyword found in `folded_text` (see `fold_text`), else None."""
    return next((keyword for keyword in keywords if keyword_pattern(keyword).search(folded_text)), None)


def keyword_verdict(text: str, *, include: Sequence[str], exclude: Sequence[str]) -> str | None:
    """Why the text is filtered out, or None when it passes the include/exclude keywords."""
    folded = fold_text(text)
    if excluded := mentions_any(folded, exclude):
        return f"mentions excluded keyword {excluded!r}"
    if include and mentions_any(folded, include) is None:
        return "mentions none of the include keywords"
    return None


# --- sources ------------------------------------------------------------------------------


class SourceState(BaseModel):
    """What the fetcher remembers about a source between polls."""

    last_fetch: datetime | None = None
    last_status: PollStatus | None = None
    last_error: str | None = None
    last_new: int = 0
    failures: int = Field(default=0, description="Consecutive failed polls.")
    backoff_until: datetime | None = None
    etag: str | None = None
    last_modified: str | None = None
    articles: int = Field(default=0, description="Articles this source has added to the corpus store.")


class Source(BaseModel):
    url: str
    kind: SourceKind
    name: str | None = None
    lang: Language | None = None
    include: list[str] = []
    exclude: list[str] = []
    interval_minutes: int | None = Field(None, gt=0)
    state: SourceState = Field(default_factory=SourceState)

    @field_validator("include", "exclude")
    @classmethod
    def _drop_blank_keywords(cls, keywords: list[str]) -> list[str]:
        return [keyword.strip() for keyword in keywords if keyword.strip()]

    @property
    def key(self) -> str:
        return canonical_url(self.url)

    @property
    def label(self) -> str:
        return self.name or self.url

    def interval(self, default_minutes: int) -> timedelta:
        return timedelta(minutes=self.interval_minutes or default_minutes)

    def backing_off(self, now: datetime) -> bool:
        return self.state.backoff_until is not None and self.state.backoff_until > now

    def is_due(self, now: datetime, default_minutes: int) -> bool:
        """Not backing off, and never polled or polled at least one interval ago."""
        if self.backing_off(now):
            return False
        last = self.state.last_fetch
        return last is None or now - last >= self.interval(default_minutes)

    def filter_reason(self, title: str, text: str) -> str | None:
        """Why an article from this source is left out (keywords), or None when it is kept."""
        return keyword_verdict(f"{title}\n{text}", include=self.include, exclude=self.exclude)

    def describe(self, now: datetime) -> str:
        """One line for `/listsources` and `talks sources list`."""
        state = self.state
        parts = [f"{self.label} [{self.kind}]"]
        if self.name:
            parts.append(self.url)
        if state.last_fetch is None:
            parts.append("never fetched")
        else:
            parts.append(f"last fetch {state.last_fetch:%Y-%m-%d %H:%M} UTC")
            if state.last_status == "failed":
                parts.append(f"FAILING ({state.failures}×): {state.last_error}")
            elif state.last_status == "not_modified":
                parts.append("not modified")
            else:
                parts.append(f"ok, {state.last_new} new")
        if self.backing_off(now) and state.backoff_until is not None:
            parts.append(f"backing off until {state.backoff_until:%Y-%m-%d %H:%M} UTC")
        parts.append(f"{state.articles} articles")
        if self.include:
            parts.append("include: " + ", ".join(self.include))
        if self.exclude:
            parts.append("exclude: " + ", ".join(self.exclude))
        return " — ".join(parts)


StateChange = Callable[[SourceState], SourceState]


def succeeded(
    state: SourceState,
    now: datetime,
    *,
    modified: bool,
    new: int = 0,
    etag: str | None = None,
    last_modified: str | None = None,
) -> SourceState:
    """The state after a poll that worked; validators are kept when the response sent none."""
    return state.model_copy(
        update={
            "last_fetch": now,
            "last_status": "ok" if modified else "not_modified",
            "last_error": None,
            "last_new": new,
            "failures": 0,
            "backoff_until": None,
            "etag": etag or state.etag,
            "last_modified": last_modified or state.last_modified,
            "articles": state.articles + new,
        }
    )


def failed(
    state: SourceState,
    now: datetime,
    *,
    error: str,
    interval: timedelta,
    max_backoff: timedelta,
    retry_after: float | None = None,
) -> SourceState:
    """The state after a failed poll: backed off for interval × 2^(failures-1), at most `max_backoff`,
    and at least as long as the server's Retry-After."""
    failures = state.failures + 1
    delay = min(interval * 2 ** (failures - 1), max_backoff)
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=retry_after))
    return state.model_copy(
        update={
            "last_fetch": now,
            "last_status": "failed",
            "last_error": error,
            "last_new": 0,
            "failures": failures,
            "backoff_until": now + delay,
        }
    )


# --- the file -------------------------------------------------------------------------------


class _SourcesDocument(BaseModel):
    sources: list[Source] = []


class SourcesFile:
    """Load and change `sources.yaml`; every change re-reads the file under a lock, then replaces it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[Source]:
        if not self.path.exists():
            return []
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise SourcesFileError(f"cannot read {self.path}: {exc}") from exc
        try:
            return _SourcesDocument.model_validate(data or {}).sources
        except ValidationError as exc:
            raise SourcesFileError(f"{self.path} is not a valid sources file: {exc}") from exc

    def find(self, url: str) -> Source | None:
        key = canonical_url(url)
        return next((source for source in self.load() if source.key == key), None)

    def add(self, source: Source) -> Source:
        def change(sources: list[Source]) -> list[Source]:
            if any(existing.key == source.key for existing in sources):
                raise SourceExistsError(f"already a source: {source.url}")
            return [*sources, source]

        self._change(change)
        return source

    def remove(self, url: str) -> Source:
        key = canonical_url(url)
        removed: list[Source] = []

        def change(sources: list[Source]) -> list[Source]:
            removed.extend(source for source in sources if source.key == key)
            if not removed:
                raise UnknownSourceError(f"no source with the URL {url}")
            return [source for source in sources if source.key != key]

        self._change(change)
        return removed[0]

    def update_state(self, url: str, change: StateChange) -> None:
        """Record a poll's outcome on the state as it is now in the file (another poll may have
        finished meanwhile); a source removed while it was being polled stays removed."""
        key = canonical_url(url)
        self._change(
            lambda sources: [
                source.model_copy(update={"state": change(source.state)}) if source.key == key else source
                for source in sources
            ]
        )

    def _change(self, change: Callable[[list[Source]], list[Source]]) -> None:
        with file_lock(self.path):
            sources = change(self.load())
            document = _SourcesDocument(sources=sources).model_dump(mode="json", exclude_none=True)
            write_atomically(self.path, yaml.safe_dump(document, allow_unicode=True, sort_keys=False))
