"""Hybrid retrieval: dense (e5 in Chroma) and lexical (BM25) rankings fused by RRF."""

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
    """A retrieved chunk with its rank and cosine similarity to the question."""

    model_config = ConfigDict(frozen=True)

    chunk: Chunk
    rank: int
    score: float

    def to_document(self) -> Document:
        return Document(
            id=self.chunk.id,
            page_content=self.chunk.text,
            metadata={**self.chunk.metadata(), "rank": self.rank, "score": self.score},
        )

    @classmethod
    def from_document(cls, document: Document) -> Passage:
        metadata = dict(document.metadata)
        rank, score = metadata.pop("rank"), metadata.pop("score")
        return cls(chunk=Chunk.from_stored(document.id or "", document.page_content, metadata), rank=rank, score=score)


class HybridRetriever(BaseRetriever):
    """Top-k passages for a question; documents carry `rank` and cosine `score` in metadata."""

    store: PassageStore
    k: int = 5
    hybrid: bool = True
    candidates: int = 30
    model_config = ConfigDict(arbitrary_types_allowed=True)

    _lexical: LexicalIndex = PrivateAttr()
    _chunks: dict[str, Chunk] = PrivateAttr()
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def model_post_init(self, context: object) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Reload the lexical index from the store (after indexing)."""
        chunks = {chunk.id: chunk for chunk in self.store.all_chunks()}
        lexical = LexicalIndex(list(chunks), [chunk.text for chunk in chunks.values()])
        with self._lock:  # swap both at once: a query never sees one old and one new
            self._chunks, self._lexical = chunks, lexical

    @property
    def chunk_count(self) -> int:
        return len(self._chunks)

    def passages(self, question: str, k: int | None = None) -> list[Passage]:
        k = k or self.k
        with self._lock:
            chunks, lexical = self._chunks, self._lexical
        if not chunks:
            return []
        query_vector = np.asarray(self.store.embeddings.embed_query(question))
        n_candidates = min(max(self.candidates, k), len(chunks))
        dense = self.store.vectorstore().similarity_search_by_vector_with_relevance_scores(
            query_vector.tolist(), k=n_candidates
        )
        scores = {document.id: score for document, score in dense}
        ranking = [document.id for document, _ in dense]
        if self.hybrid:
            lexical_ranking = [chunk_id for chunk_id, _ in lexical.search(question, n_candidates)]
            ranking = reciprocal_rank_fusion([ranking, lexical_ranking])
        top = [chunk_id for chunk_id in ranking if chunk_id in chunks][:k]
        missing = [chunk_id for chunk_id in top if chunk_id not in scores]
        if missing:  # lexical-only hits: score them by the same cosine as the dense ones
            stored = self.store.collection().get(ids=missing, include=["embeddings"])
            for chunk_id, vector in zip(stored["ids"], stored["embeddings"]):
                scores[chunk_id] = float(np.dot(np.asarray(vector), query_vector))
        return [
            Passage(chunk=chunks[chunk_id], rank=rank, score=round(float(scores[chunk_id]), 4))
            for rank, chunk_id in enumerate(top, start=1)
        ]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [passage.to_document() for passage in self.passages(query)]
