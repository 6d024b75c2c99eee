"""Hybrid retrieval: language-centred dense (e5 in Chroma) and lexical (BM25) rankings, fused by RRF.

e5 scores a question higher against passages in its own language, whatever they say, so an
English question over Arabic articles would see English passages first. Each passage's
cosine is therefore measured against its language's background: the question's similarity
to the mean passage of that language (scaled by `centering`).
"""

from __future__ import annotations

import threading

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import BaseModel, ConfigDict, PrivateAttr

from retrieval.chunking import Chunk
from retrieval.lexical import LexicalIndex, reciprocal_rank_fusion
from retrieval.store import PassageStore


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

    @classmethod
    def from_document(cls, document: Document) -> Passage:
        metadata = dict(document.metadata)
        scores = {key: metadata.pop(key) for key in ("rank", "score", "background")}
        return cls(chunk=Chunk.from_stored(document.id or "", document.page_content, metadata), **scores)


class _Snapshot(BaseModel):
    """What one query reads; replaced whole after indexing."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    chunks: dict[str, Chunk]
    lexical: LexicalIndex | None  # only when hybrid
    centroids: dict[str, np.ndarray]


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

    def model_post_init(self, context: object) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Reload the lexical index and language backgrounds from the store (after indexing)."""
        chunks = {chunk.id: chunk for chunk in self.store.all_chunks()}
        snapshot = _Snapshot(
            chunks=chunks,
            lexical=LexicalIndex(list(chunks), [chunk.text for chunk in chunks.values()]) if self.hybrid else None,
            centroids=self.store.language_centroids(),
        )
        with self._lock:
            self._snapshot = snapshot

    @property
    def chunk_count(self) -> int:
        return len(self._snapshot.chunks)

    def _dense(self, query: np.ndarray, backgrounds: dict[str, float], n: int) -> dict[str, float]:
        """Cosine scores of the best `n` passages of each language."""
        vectorstore = self.store.vectorstore()
        scores: dict[str, float] = {}
        for lang in backgrounds:
            # Despite its name, this returns Chroma's distances: cosine distance = 1 - cosine.
            hits = vectorstore.similarity_search_by_vector_with_relevance_scores(
                query.tolist(), k=n, filter={"lang": lang}
            )
            scores.update({document.id: 1.0 - distance for document, distance in hits})
        return scores

    def passages(self, question: str, k: int | None = None) -> list[Passage]:
        k = k or self.k
        with self._lock:
            snapshot = self._snapshot
        if not snapshot.chunks:
            return []
        query = np.asarray(self.store.embeddings.embed_query(question), dtype=np.float32)
        backgrounds = {lang: self.centering * float(query @ c) for lang, c in snapshot.centroids.items()}
        n = min(max(self.candidates, k), len(snapshot.chunks))
        scores = self._dense(query, backgrounds, n)

        def relevance(chunk_id: str) -> float:
            return scores[chunk_id] - backgrounds[snapshot.chunks[chunk_id].lang]

        ranking = sorted((c for c in scores if c in snapshot.chunks), key=relevance, reverse=True)[:n]
        if snapshot.lexical is not None:
            lexical_ranking = [chunk_id for chunk_id, _ in snapshot.lexical.search(question, n)]
            ranking = reciprocal_rank_fusion([ranking, lexical_ranking])
        top = [chunk_id for chunk_id in ranking if chunk_id in snapshot.chunks][:k]
        missing = [chunk_id for chunk_id in top if chunk_id not in scores]
        if missing:  # lexical-only hits: score them by the same cosine as the dense ones
            stored = self.store.collection().get(ids=missing, include=["embeddings"])
            for chunk_id, vector in zip(stored["ids"], stored["embeddings"]):
                scores[chunk_id] = float(np.asarray(vector) @ query)
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
