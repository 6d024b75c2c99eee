"""Indexing: embed only new or changed chunks, remove the stale ones.

Chunk ids are content hashes (see `chunking`), so the ids already in Chroma are the record
of what is indexed: no second bookkeeping store can drift from the index, and a run killed
at any point is completed by the next one. New chunks are written before stale ones are
deleted, and an article's chunks in one write: a question asked mid-run finds every article,
and a killed run leaves none half-written. A full run builds a new collection and switches
the index to it when complete (see `store`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from pydantic import BaseModel

from corpus.models import Article, LoadError
from retrieval.chunking import Chunk, chunk_article
from retrieval.store import NoIndexError, PassageStore, ProgressCallback


class IndexReport(BaseModel):
    articles: int
    articles_added: int
    articles_updated: int
    articles_removed: int
    chunks_added: int
    chunks_removed: int
    chunks_unchanged: int
    seconds: float
    errors: list[LoadError] = []
    new_article_ids: list[str] = []


def chunk_corpus(articles: Sequence[Article], store: PassageStore, *, max_tokens: int, overlap_tokens: int) -> list[Chunk]:
    # Room for the passage prompt within the model's limit.
    max_tokens = min(max_tokens, store.embeddings.max_tokens - 16)
    return [
        chunk
        for article in articles
        for chunk in chunk_article(
            article, store.embeddings.count_tokens, max_tokens=max_tokens, overlap_tokens=overlap_tokens
        )
    ]


def index_articles(
    articles: Sequence[Article],
    store: PassageStore,
    *,
    max_tokens: int,
    overlap_tokens: int,
    full: bool = False,
    errors: Sequence[LoadError] = (),
    progress: ProgressCallback | None = None,
) -> IndexReport:
    """Bring the index in line with `articles`.

    An incremental run updates the collection that serves. A full run, or the first, fills a
    new collection (or the one an interrupted full run left) and then switches the index to it.
    Article counts compare with the index that served before; chunk counts with the collection written.
    """
    started = time.perf_counter()
    store.reload()  # another process may have switched the index since this store last looked
    try:
        serving: PassageStore | None = store.current()
    except NoIndexError:
        serving = None
    if serving is not None and not full:
        serving.vectorstore()  # a ModelMismatchError before any work
    served = serving.chunk_articles() if serving is not None else {}
    target = serving if serving is not None and not full else store.begin_build()
    stored = served if target is serving else target.chunk_articles()
    chunks = chunk_corpus(articles, store, max_tokens=max_tokens, overlap_tokens=overlap_tokens)
    wanted = {chunk.id for chunk in chunks}

    to_add = [chunk for chunk in chunks if chunk.id not in stored]
    to_remove = [chunk_id for chunk_id in stored if chunk_id not in wanted]
    target.add(to_add, progress=progress)
    target.delete(to_remove)
    if target is serving:
        store.drop_replaced()  # what an interrupted switch left
    else:
        store.switch_to(target)

    before = set(served.values())
    after = {article.id for article in articles}
    changed = {chunk.article_id for chunk in chunks if chunk.id not in served} | {
        article_id for chunk_id, article_id in served.items() if chunk_id not in wanted
    }
    added = after - before
    return IndexReport(
        articles=len(articles),
        articles_added=len(added),
        articles_updated=len((changed & after) - added),
        articles_removed=len(before - after),
        chunks_added=len(to_add),
        chunks_removed=len(to_remove),
        chunks_unchanged=len(wanted) - len(to_add),
        seconds=round(time.perf_counter() - started, 2),
        errors=list(errors),
        new_article_ids=sorted(added),
    )
