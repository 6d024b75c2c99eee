"""The corpus store: every fetched article saved once, as a JSON record `load_corpus` reads.

`<TALKS_DATA_DIR>/fetched/<article id>.json` holds title, url, date, lang, source and text (the
record format of `corpus.loaders.article_from_record`) plus fetched_at, content_hash, origin (the
source it came from) and stamp (the feed's or sitemap's version stamp). A reindex from scratch
reads these files and needs no network. `.seen.json` (hidden, so `load_corpus` skips it)
remembers the links already looked at — kept, filtered out or duplicates — so a poll fetches
only what is new or changed.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, TypeAdapter, ValidationError

from corpus.loaders import ArticleParseError, article_from_record
from corpus.models import Article

logger = logging.getLogger(__name__)

SEEN_FILE = ".seen.json"
SEEN_MAX_ENTRIES = 20_000

SeenVerdict = Literal["stored", "unchanged", "filtered", "duplicate"]


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock (between threads and processes) on `.<name>.lock` beside `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class StoredArticle(BaseModel):
    article: Article
    fetched_at: datetime
    origin: str | None = None
    stamp: str | None = None


class SeenLink(BaseModel):
    stamp: str | None = None
    verdict: SeenVerdict
    at: datetime


_SEEN = TypeAdapter(dict[str, SeenLink])


class CorpusStore:
    """The folder of fetched articles. Writers hold `locked()` while they decide and write."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def locked(self) -> AbstractContextManager[None]:
        return file_lock(self.folder)

    def path_for(self, article_id: str) -> Path:
        return self.folder / f"{article_id}.json"

    def articles(self) -> dict[str, StoredArticle]:
        """Every stored article by id; a record that no longer loads is logged and left out."""
        stored: dict[str, StoredArticle] = {}
        if not self.folder.is_dir():
            return stored
        for path in sorted(self.folder.glob("[!.]*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                article = article_from_record(record, source_name=path.name)
                stored[article.id] = StoredArticle(
                    article=article,
                    fetched_at=record["fetched_at"],
                    origin=record.get("origin"),
                    stamp=record.get("stamp"),
                )
            except (OSError, KeyError, ValueError, ArticleParseError, ValidationError) as exc:
                logger.warning("skipped stored article %s: %s", path, exc)
        return stored

    def save(self, stored: StoredArticle) -> Path:
        """Write (or replace) the article's record."""
        article = stored.article
        record = {
            "title": article.title,
            "url": article.url,
            "date": article.published.isoformat() if article.published else None,
            "lang": article.lang,
            "source": article.source,
            "text": article.text,
            "fetched_at": stored.fetched_at.isoformat(),
            "content_hash": article.content_hash,
            "origin": stored.origin,
            "stamp": stored.stamp,
        }
        path = self.path_for(article.id)
        write_atomically(path, json.dumps(record, ensure_ascii=False, indent=1) + "\n")
        return path

    def seen(self) -> dict[str, SeenLink]:
        path = self.folder / SEEN_FILE
        if not path.exists():
            return {}
        try:
            return _SEEN.validate_json(path.read_bytes())
        except (OSError, ValidationError) as exc:
            logger.warning("ignoring unreadable %s (links will be looked at again): %s", path, exc)
            return {}

    def remember(self, links: dict[str, SeenLink]) -> None:
        """Add links to `.seen.json`, keeping the newest `SEEN_MAX_ENTRIES`."""
        if not links:
            return
        merged = self.seen() | links
        newest = sorted(merged.items(), key=lambda item: item[1].at, reverse=True)[:SEEN_MAX_ENTRIES]
        write_atomically(self.folder / SEEN_FILE, _SEEN.dump_json(dict(newest)).decode("utf-8"))
