"""Hybrid retrieval: language-centred dense (e5 in Chroma) and lexical (BM25) rankings, fused by RRF.

e5 scores a question higher against passages in its own language, whatever they say, so an
English question over Arabic articles would see English passages first. Each passage's
cosine is therefore measured against its language's background: the question's similarity
to the mean passage of that language (scaled by `centering`).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import BaseModel, ConfigDict, PrivateAttr

from retrieval.chunking import Chunk
from retrieval.lexical import LexicalIndex, reciprocal_rank_fusion
from retrieval.store import IndexReplacedError, PassageStore

logger = logging.getLogger(__name__)

POOL_FACTOR = 4  # the unfiltered dense search looks this many times deeper than the candidates


class Passage(BaseModel):
    """A retrieved chunk: its rank, its cosine to the question, and its language's background."""

    model_config = ConfigDict(frozen=True)

    chunk: Chunk
    rank: int
    score: float
    background: float = 0.0

    @property
    def relevance(self) -> float:
        return self.score - self.background

    def to_document(self) -> Document:
        return Document(
            id=self.chunk.id,
            page_content=self.chunk.text,
            metadata={**self.chunk.metadata(), "rank": self.rank, "score": self.score, "background": self.background},
        )


class _Snapshot(BaseModel):
    """What one query reads: one collection and what was loaded from it; replaced whole after indexing."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    collection: PassageStore  # pinned to the collection the rest was loaded from
    chunks: dict[str, Chunk]
    lexical: LexicalIndex | None  # only when hybrid
    centroids: dict[str, np.ndarray]
    languages: dict[str, int]  # chunks per language


class HybridRetriever(BaseRetriever):
    """Top-k passages for a question; documents carry `rank`, `score` and `background` in metadata."""

    store: PassageStore
    k: int = 5
    hybrid: bool = False
    centering: float = 0.75
    candidates: int = 30
    model_config = ConfigDict(arbitrary_types_allowed=True)

    _snapshot: _Snapshot = PrivateAttr()
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _refreshing: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def model_post_init(self, context: object) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Follow the index pointer and reload the lexical index and language backgrounds (after indexing)."""
        with self._refreshing:
            self._load()

    def _load(self) -> None:
        self.store.reload()
        collection = self.store.current()
        chunks = {chunk.id: chunk for chunk in collection.all_chunks()}
        snapshot = _Snapshot(
            collection=collection,
            chunks=chunks,
            lexical=LexicalIndex(list(chunks), [chunk.text for chunk in chunks.values()]) if self.hybrid else None,
            centroids=collection.language_centroids(),
            languages=dict(Counter(chunk.lang for chunk in chunks.values())),
        )
        with self._lock:
            self._snapshot = snapshot

    def _replace(self, stale: _Snapshot) -> _Snapshot:
        """A snapshot of the collection that replaced `stale`'s: loaded once, by the first query to find it gone."""
        with self._refreshing:
            if self._snapshot is stale:
                self._load()
                logger.info("the index was switched: answering from %s", self._snapshot.collection.collection_name)
            return self._snapshot

    @property
    def collection_name(self) -> str:
        """The Chroma collection answers come from now."""
        return self._snapshot.collection.collection_name

    @property
    def chunk_count(self) -> int:
        return len(self._snapshot.chunks)

    @staticmethod
    def _dense(snapshot: _Snapshot, query: np.ndarray, n: int) -> dict[str, float]:
        """Cosine scores of at least the best `n` passages of each language.

        One unfiltered search over a wider pool usually holds `n` of every language; a search
        filtered by language (an order of magnitude slower on large collections) runs only for
        a language the pool came short of.
        """
        vector = query.tolist()
        scores = dict(snapshot.collection.search(vector, min(n * POOL_FACTOR, len(snapshot.chunks))))
        found = Counter(snapshot.chunks[chunk_id].lang for chunk_id in scores if chunk_id in snapshot.chunks)
        for lang, total in snapshot.languages.items():
            if found[lang] < min(n, total):
                scores.update(snapshot.collection.search(vector, n, lang))
        return scores

    def passages(self, question: str, k: int | None = None) -> list[Passage]:
        with self._lock:
            snapshot = self._snapshot
        try:
            return self._passages(snapshot, question, k or self.k)
        except IndexReplacedError:  # a reindex switched the index and dropped the collection read
            return self._passages(self._replace(snapshot), question, k or self.k)

    def _passages(self, snapshot: _Snapshot, question: str, k: int) -> list[Passage]:
        if not snapshot.chunks:
            return []
        query = np.asarray(self.store.embeddings.embed_query(question), dtype=np.float32)
        backgrounds = {lang: self.centering * float(query @ c) for lang, c in snapshot.centroids.items()}
        n = min(max(self.candidates, k), len(snapshot.chunks))
        scores = self._dense(snapshot, query, n)

        def relevance(chunk_id: str) -> float:
            return scores[chunk_id] - backgrounds[snapshot.chunks[chunk_id].lang]

        ranking = sorted((c for c in scores if c in snapshot.chunks), key=relevance, reverse=True)[:n]
        if snapshot.lexical is not None:
            lexical_ranking = [chunk_id for chunk_id, _ in snapshot.lexical.search(question, n)]
            ranking = reciprocal_rank_fusion([ranking, lexical_ranking])
        top = [chunk_id for chunk_id in ranking if chunk_id in snapshot.chunks][:k]
        missing = [chunk_id for chunk_id in top if chunk_id not in scores]
        if missing:  # lexical-only hits: score them by the same cosine as the dense ones
            for chunk_id, vector in snapshot.collection.vectors(missing).items():
                scores[chunk_id] = float(vector @ query)
        return [
            Passage(
                chunk=snapshot.chunks[chunk_id],
                rank=rank,
                score=round(scores[chunk_id], 4),
                background=round(backgrounds[snapshot.chunks[chunk_id].lang], 4),
            )
            for rank, chunk_id in enumerate(top, start=1)
        ]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [passage.to_document() for passage in self.passages(query)]
