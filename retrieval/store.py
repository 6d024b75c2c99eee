"""The Chroma passage store: embedded by default, a Chroma server when CHROMA_HOST is set.

An index has a stable name (TALKS_COLLECTION) but its passages live in a collection of their
own, `<name>__<UTC timestamp>`; the metadata of a small pointer collection, `<name>__pointer`,
names the one that serves. A full reindex fills a new collection while the old one answers,
moves the pointer in one write, then drops the old one: readers see the old index or the new
one, never half of one. A run killed mid-build leaves the pointer, and so the old index, as
they were; the next full run resumes the unfinished build. The pointer lives in Chroma, so
every process using the same Chroma server follows it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Concatenate, ParamSpec, TypeVar

import chromadb
import httpx
import numpy as np
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import ChromaError, NotFoundError
from langchain_chroma import Chroma

from retrieval.chunking import Chunk
from retrieval.embeddings import SentenceTransformerEmbeddings
from talks.settings import Settings

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]  # (done, total)
READ_PAGE = 5000
WRITE_BATCH = 64  # chunks per write, rounded to whole articles
POINTER_KEY = "collection"
BUILD_STAMP = "%Y%m%dT%H%M%S%f"
TOKEN_AUTH_PROVIDER = "chromadb.auth.token_authn.TokenAuthClientProvider"

P = ParamSpec("P")
R = TypeVar("R")


class StoreError(RuntimeError):
    """The passage store cannot be used as it is."""


class NoIndexError(StoreError):
    """Nothing has been indexed yet."""


class ModelMismatchError(StoreError):
    """The index was built with another embedding model than the one loaded."""


class StoreUnavailableError(StoreError):
    """The Chroma server cannot be reached (down, restarting, or the network between): try again later."""


class IndexReplacedError(StoreError):
    """The collection being read was replaced by a reindex and dropped: follow the pointer again."""


class StoreWriteError(StoreError):
    """Chroma could not write: its disk is full or failing. Each write is all or nothing, and the
    pointer moves only after a full build is complete, so the index is left as it was."""


# How SQLite (under Chroma, embedded or server) and the OS name a write that found no room.
_WRITE_FAILURES = ("database or disk is full", "disk i/o error", "no space left on device", "file too large")


@contextlib.contextmanager
def _naming_write_failures(what: str) -> Iterator[None]:
    """Chroma's and the OS's errors for a write that found no room, as a StoreWriteError."""
    try:
        yield
    except (ChromaError, OSError) as error:
        if not any(failure in str(error).lower() for failure in _WRITE_FAILURES):
            raise
        raise StoreWriteError(f"{what}: the disk is full or failing ({error})") from error


def chroma_client(settings: Settings) -> chromadb.ClientAPI:
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if not settings.chroma_host:
        with _naming_write_failures(f"cannot open the index in {settings.chroma_path}"):  # SQLite's journal needs room
            settings.chroma_path.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)
    if settings.chroma_auth_token is not None:
        chroma_settings = ChromaSettings(
            anonymized_telemetry=False,
            chroma_client_auth_provider=TOKEN_AUTH_PROVIDER,
            chroma_client_auth_credentials=settings.chroma_auth_token.get_secret_value(),
            chroma_auth_token_transport_header=settings.chroma_auth_header,
        )
    where = f"{'https' if settings.chroma_ssl else 'http'}://{settings.chroma_host}:{settings.chroma_port}"
    try:
        return chromadb.HttpClient(
            host=settings.chroma_host, port=settings.chroma_port, ssl=settings.chroma_ssl, settings=chroma_settings
        )
    except ValueError as error:  # how chromadb reports a failed first contact
        cause = error.__context__
        if isinstance(cause, httpx.TransportError):
            raise StoreUnavailableError(f"the Chroma server at {where} cannot be reached: {cause}") from error
        raise StoreError(f"cannot use the Chroma server at {where}: {cause or error}") from error


def _chroma_call(method: Callable[Concatenate[PassageStore, P], R]) -> Callable[Concatenate[PassageStore, P], R]:
    """Name Chroma's failures: an unreachable server, a collection a reindex has dropped, a full disk.

    A store that follows the pointer looks it up again once when its collection is gone.
    """

    @functools.wraps(method)
    def call(store: PassageStore, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with _naming_write_failures("cannot write the index, which is left as it was"):
                try:
                    return method(store, *args, **kwargs)
                except NotFoundError:
                    if store.pinned:
                        raise
                    store.reload()
                    return method(store, *args, **kwargs)
        except httpx.TransportError as error:
            raise StoreUnavailableError(f"the Chroma server cannot be reached: {error}") from error
        except NotFoundError as error:
            raise IndexReplacedError(f"the index collection is gone, replaced by a reindex: {error}") from error

    return call


def _article_batches(chunks: Sequence[Chunk], size: int, limit: int) -> Iterator[list[Chunk]]:
    """Runs of whole articles of about `size` chunks; only an article longer than `limit` is split."""
    batch: list[Chunk] = []
    for _, group in itertools.groupby(chunks, key=attrgetter("article_id")):
        article = list(group)
        if batch and len(batch) + len(article) > size:
            yield batch
            batch = []
        batch.extend(article)
        while len(batch) > limit:
            yield batch[:limit]
            batch = batch[limit:]
    if batch:
        yield batch


class PassageStore:
    """An index of chunks under a stable name, stamped with the embedding model that filled it.

    By default the store follows the pointer to the collection that serves; `current()` and
    `begin_build()` give stores pinned to one collection.
    """

    def __init__(
        self,
        client: chromadb.ClientAPI,
        name: str,
        embeddings: SentenceTransformerEmbeddings,
        *,
        collection_name: str | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.embeddings = embeddings
        self.pinned = collection_name is not None
        self._collection_name = collection_name
        self._vectorstore: tuple[str, Chroma] | None = None
        self._build_name = re.compile(rf"{re.escape(name)}__(\d{{8}}T\d{{12}})")

    @property
    def pointer_name(self) -> str:
        return f"{self.name}__pointer"

    @property
    def _model_stamp(self) -> dict[str, str | int]:
        return {"embedding_model": self.embeddings.name, "embedding_dimension": self.embeddings.dimension}

    def _built_with_our_model(self, metadata: dict | None) -> bool:
        stamp = metadata or {}
        return (stamp.get("embedding_model"), stamp.get("embedding_dimension")) == (
            self.embeddings.name,
            self.embeddings.dimension,
        )

    # --- which collection ----------------------------------------------------

    @property
    def collection_name(self) -> str:
        """The collection this store reads and writes."""
        if self._collection_name is None:
            serving = self._serving()
            if serving is None:
                raise NoIndexError("no index yet: run `talks index` first")
            self._collection_name = serving
        return self._collection_name

    def _collection_names(self) -> set[str]:
        return {c if isinstance(c, str) else c.name for c in self.client.list_collections()}

    def _serving(self) -> str | None:
        """The collection the pointer names; before any pointer, one under the index's own name (an older layout)."""
        try:
            pointer = self.client.get_collection(self.pointer_name)
        except NotFoundError:
            return self.name if self.name in self._collection_names() else None
        return (pointer.metadata or {}).get(POINTER_KEY)

    def _build_stamp(self, name: str) -> str | None:
        """When a collection of this index was built ("" for the older layout); None for other collections."""
        if name == self.name:
            return ""
        match = self._build_name.fullmatch(name)
        return match.group(1) if match else None

    def reload(self) -> None:
        """Follow the pointer again on next use (after a reindex moved it)."""
        if not self.pinned:
            self._collection_name = None

    @_chroma_call
    def exists(self) -> bool:
        if self.pinned:
            return self.collection_name in self._collection_names()
        return self._serving() is not None

    @_chroma_call
    def current(self) -> PassageStore:
        """A store pinned to the collection that serves now: what one snapshot of a reader reads."""
        return PassageStore(self.client, self.name, self.embeddings, collection_name=self.collection_name)

    # --- full rebuilds -------------------------------------------------------

    @_chroma_call
    def begin_build(self) -> PassageStore:
        """A store pinned to a collection for a full rebuild.

        The newest build newer than the index that serves is one an interrupted run left:
        it is resumed if our model made it. Otherwise a new, empty collection.
        """
        floor = self._build_stamp(self._serving() or "") or ""
        pending = sorted(
            (name for name in self._collection_names() if (self._build_stamp(name) or "") > floor), reverse=True
        )
        if pending and self._built_with_our_model(self.client.get_collection(pending[0]).metadata):
            logger.info("resuming the unfinished index build %s", pending[0])
            return PassageStore(self.client, self.name, self.embeddings, collection_name=pending[0])
        name = f"{self.name}__{datetime.now(UTC).strftime(BUILD_STAMP)}"
        self.client.create_collection(
            name, metadata={"hnsw:space": "cosine", **self._model_stamp}, embedding_function=None
        )
        logger.info("building the index in %s", name)
        return PassageStore(self.client, self.name, self.embeddings, collection_name=name)

    @_chroma_call
    def switch_to(self, build: PassageStore) -> None:
        """Make `build` the index that serves, in one metadata write; then drop what it replaced."""
        pointer = self.client.get_or_create_collection(self.pointer_name, embedding_function=None)
        pointer.modify(metadata={POINTER_KEY: build.collection_name})
        self.reload()
        logger.info("index %s now served by %s", self.name, build.collection_name)
        self.drop_replaced()

    @_chroma_call
    def drop_replaced(self) -> None:
        """Drop this index's collections older than the one that serves: replaced indexes, abandoned builds."""
        serving = self._serving()
        if serving is None:
            return
        floor = self._build_stamp(serving) or ""
        for name in self._collection_names():
            stamp = self._build_stamp(name)
            if stamp is not None and name != serving and stamp < floor:
                try:
                    self.client.delete_collection(name)
                except NotFoundError:
                    continue  # another process dropped it first
                logger.info("dropped the replaced index collection %s", name)

    # --- reading -------------------------------------------------------------

    @_chroma_call
    def vectorstore(self) -> Chroma:
        """The LangChain view of the collection; checks that it was built with our model."""
        name = self.collection_name
        cached = self._vectorstore
        if cached is not None and cached[0] == name:
            return cached[1]
        stamp = self.client.get_collection(name).metadata or {}
        if stamp.get("embedding_model") and not self._built_with_our_model(stamp):
            raise ModelMismatchError(
                f"the index was built with {stamp['embedding_model']} ({stamp.get('embedding_dimension')} dims) "
                f"but the model loaded is {self.embeddings.name} ({self.embeddings.dimension} dims): "
                "run `talks index --full` to rebuild it"
            )
        store = Chroma(
            client=self.client,
            collection_name=name,
            embedding_function=self.embeddings,
            create_collection_if_not_exists=False,
        )
        self._vectorstore = (name, store)
        return store

    @_chroma_call
    def collection(self) -> chromadb.Collection:
        """The raw collection, for bookkeeping that LangChain's view does not offer."""
        return self.client.get_collection(self.collection_name)

    def _pages(self, include: list[str]) -> Iterator[dict]:
        """The whole collection, a page at a time: one `get` of everything overflows SQLite's variables."""
        collection = self.collection()
        for offset in range(0, collection.count(), READ_PAGE):
            yield collection.get(include=include, limit=READ_PAGE, offset=offset)

    @_chroma_call
    def all_chunks(self) -> list[Chunk]:
        return [
            Chunk.from_stored(chunk_id, text, metadata)
            for page in self._pages(["documents", "metadatas"])
            for chunk_id, text, metadata in zip(page["ids"], page["documents"], page["metadatas"])
        ]

    @_chroma_call
    def chunk_articles(self) -> dict[str, str]:
        """Chunk id → article id of everything stored: the record of what is indexed."""
        return {
            chunk_id: metadata["article_id"]
            for page in self._pages(["metadatas"])
            for chunk_id, metadata in zip(page["ids"], page["metadatas"])
        }

    @_chroma_call
    def search(self, vector: Sequence[float], k: int, lang: str | None = None) -> list[tuple[str, float]]:
        """The `k` passages (in `lang`, if given) nearest to `vector`, as (chunk id, cosine)."""
        hits = self.vectorstore().similarity_search_by_vector_with_relevance_scores(
            list(vector), k=k, filter={"lang": lang} if lang else None
        )
        # Despite its name, this returns Chroma's distances: cosine distance = 1 - cosine.
        return [(document.id or "", 1.0 - distance) for document, distance in hits]

    @_chroma_call
    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        stored = self.collection().get(ids=list(ids), include=["embeddings"])
        return {chunk_id: np.asarray(vector) for chunk_id, vector in zip(stored["ids"], stored["embeddings"])}

    @_chroma_call
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

    # --- writing -------------------------------------------------------------

    @_chroma_call
    def add(self, chunks: Sequence[Chunk], progress: ProgressCallback | None = None) -> None:
        """Embed and write `chunks`: an article's chunks go in one write, so it is indexed whole or not at all."""
        store = self.vectorstore()
        done = 0
        for batch in _article_batches(chunks, WRITE_BATCH, self.client.get_max_batch_size()):
            store.add_texts(
                texts=[c.text for c in batch], metadatas=[c.metadata() for c in batch], ids=[c.id for c in batch]
            )
            done += len(batch)
            logger.debug("wrote %d/%d chunks to %s", done, len(chunks), self.collection_name)
            if progress:
                progress(done, len(chunks))

    @_chroma_call
    def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        collection = self.collection()
        batch = self.client.get_max_batch_size()
        for begin in range(0, len(ids), batch):
            collection.delete(ids=list(ids[begin : begin + batch]))
