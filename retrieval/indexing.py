"""Incremental indexing: embed only new or changed chunks, remove the stale ones.

Chunk ids are content hashes (see `chunking`), so the ids already in Chroma are the record
of what is indexed: no second bookkeeping store can drift from the index. New chunks are
written before stale ones are deleted, so a question asked mid-run still finds an article.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from pydantic import BaseModel

from corpus.models import Article, LoadError
from retrieval.chunking import Chunk, chunk_article
from retrieval.store import PassageStore, ProgressCallback


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
    """Bring the store in line with `articles`; `full` drops and rebuilds it."""
    started = time.perf_counter()
    if full:
        store.drop()
    stored = {chunk.id: chunk.article_id for chunk in store.all_chunks()} if store.exists() else {}
    chunks = chunk_corpus(articles, store, max_tokens=max_tokens, overlap_tokens=overlap_tokens)
    wanted = {chunk.id for chunk in chunks}

    to_add = [chunk for chunk in chunks if chunk.id not in stored]
    to_remove = [chunk_id for chunk_id in stored if chunk_id not in wanted]
    store.add(to_add, progress=progress)
    store.delete(to_remove)
    if not store.exists():
        store.vectorstore(create=True)  # an empty corpus still leaves a valid, empty index

    before = set(stored.values())
    after = {article.id for article in articles}
    changed = {chunk.article_id for chunk in to_add} | {stored[chunk_id] for chunk_id in to_remove}
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
