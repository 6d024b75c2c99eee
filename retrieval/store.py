"""The Chroma passage store: embedded by default, a Chroma server when CHROMA_HOST is set."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import chromadb
import numpy as np
from chromadb.config import Settings as ChromaSettings
from langchain_chroma import Chroma

from retrieval.chunking import Chunk
from retrieval.embeddings import SentenceTransformerEmbeddings
from talks.settings import Settings

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]  # (done, total)
READ_PAGE = 5000


class StoreError(RuntimeError):
    """The passage store cannot be used as it is."""


class NoIndexError(StoreError):
    """Nothing has been indexed yet."""


class ModelMismatchError(StoreError):
    """The index was built with another embedding model than the one loaded."""


def chroma_client(settings: Settings) -> chromadb.ClientAPI:
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_host:
        return chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings)
    settings.chroma_path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)


class PassageStore:
    """One Chroma collection of chunks, stamped with the embedding model that filled it."""

    def __init__(self, client: chromadb.ClientAPI, name: str, embeddings: SentenceTransformerEmbeddings) -> None:
        self.client = client
        self.name = name
        self.embeddings = embeddings
        self._vectorstore: Chroma | None = None

    @property
    def _model_stamp(self) -> dict[str, str | int]:
        return {"embedding_model": self.embeddings.name, "embedding_dimension": self.embeddings.dimension}

    def exists(self) -> bool:
        return self.name in {c if isinstance(c, str) else c.name for c in self.client.list_collections()}

    def vectorstore(self, *, create: bool = False) -> Chroma:
        """The LangChain view of the collection; checks that it was built with our model."""
        if self._vectorstore is not None:
            return self._vectorstore
        if not create and not self.exists():
            raise NoIndexError("no index yet: run `talks index` first")
        store = Chroma(
            client=self.client,
            collection_name=self.name,
            embedding_function=self.embeddings,
            collection_metadata={"hnsw:space": "cosine", **self._model_stamp},
        )
        stamp = self.collection().metadata or {}
        built_with = stamp.get("embedding_model")
        if built_with and (built_with, stamp.get("embedding_dimension")) != (
            self.embeddings.name,
            self.embeddings.dimension,
        ):
            raise ModelMismatchError(
                f"the index was built with {built_with} ({stamp.get('embedding_dimension')} dims) "
                f"but the model loaded is {self.embeddings.name} ({self.embeddings.dimension} dims): "
                "run `talks index --full` to rebuild it"
            )
        self._vectorstore = store
        return store

    def collection(self) -> chromadb.Collection:
        """The raw collection, for bookkeeping that LangChain's view does not offer."""
        return self.client.get_collection(self.name)

    def drop(self) -> None:
        self._vectorstore = None
        if self.exists():
            self.client.delete_collection(self.name)

    def _pages(self, include: list[str]) -> Iterator[dict]:
        """The whole collection, a page at a time: one `get` of everything overflows SQLite's variables."""
        collection = self.collection()
        for offset in range(0, collection.count(), READ_PAGE):
            yield collection.get(include=include, limit=READ_PAGE, offset=offset)

    def all_chunks(self) -> list[Chunk]:
        return [
            Chunk.from_stored(chunk_id, text, metadata)
            for page in self._pages(["documents", "metadatas"])
            for chunk_id, text, metadata in zip(page["ids"], page["documents"], page["metadatas"])
        ]

    def add(self, chunks: Sequence[Chunk], progress: ProgressCallback | None = None) -> None:
        store = self.vectorstore(create=True)
        batch = min(self.client.get_max_batch_size(), 256)
        for begin in range(0, len(chunks), batch):
            part = chunks[begin : begin + batch]
            store.add_texts(
                texts=[c.text for c in part], metadatas=[c.metadata() for c in part], ids=[c.id for c in part]
            )
            if progress:
                progress(begin + len(part), len(chunks))

    def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        collection = self.collection()
        batch = self.client.get_max_batch_size()
        for begin in range(0, len(ids), batch):
            collection.delete(ids=list(ids[begin : begin + batch]))

    def language_centroids(self) -> dict[str, np.ndarray]:
        """Mean passage vector per language: a question's similarity to it is its background level."""
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        for page in self._pages(["embeddings", "metadatas"]):
            for vector, metadata in zip(page["embeddings"], page["metadatas"]):
                lang = metadata["lang"]
                sums[lang] = sums.get(lang, 0) + np.asarray(vector, dtype=np.float32)
                counts[lang] = counts.get(lang, 0) + 1
        return {lang: sums[lang] / counts[lang] for lang in sums}

    def count(self) -> int:
        return self.collection().count() if self.exists() else 0
