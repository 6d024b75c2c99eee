"""The embedding model: sentence-transformers behind LangChain's `Embeddings` interface."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from retrieval.model_build import BUILD_INFO_FILE

logger = logging.getLogger(__name__)


class EmbeddingModelError(RuntimeError):
    """The embedding model cannot be found or loaded."""


def model_identity(name_or_path: str) -> str:
    """A name for the model that survives moving the project folder.

    Our own build records which model it is; anything else is known by the name given.
    """
    info = Path(name_or_path) / BUILD_INFO_FILE
    if info.is_file():
        return json.loads(info.read_text())["model"]
    return name_or_path


class SentenceTransformerEmbeddings(Embeddings):
    """Normalised sentence-transformers embeddings with asymmetric query/passage prompts."""

    def __init__(
        self,
        name_or_path: str,
        *,
        query_prompt: str = "query: ",
        passage_prompt: str = "passage: ",
        batch_size: int = 16,
    ) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a bar on every load is noise in logs and the CLI

        if _looks_like_path(name_or_path) and not Path(name_or_path).exists():
            raise EmbeddingModelError(
                f"embedding model not found at {name_or_path}: run `talks build-model` "
                "(or set TALKS_EMBEDDING_MODEL to a sentence-transformers model name)"
            )
        try:
            # float32 on the CPU: fp16 matmuls are slow there and the index must be reproducible.
            self.model = SentenceTransformer(name_or_path, device="cpu", model_kwargs={"dtype": "float32"})
        except (OSError, ValueError) as exc:
            raise EmbeddingModelError(f"cannot load embedding model {name_or_path!r}: {exc}") from exc
        self.name = model_identity(name_or_path)
        self.query_prompt = query_prompt
        self.passage_prompt = passage_prompt
        self.batch_size = batch_size
        self.tokenizer = self.model.tokenizer
        self.max_tokens = int(self.model.max_seq_length)
        # The retriever and the answerer both need the question's vector.
        self._query_vector = lru_cache(maxsize=512)(self._encode_query)

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode_passages(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        return self.model.encode(
            texts,
            prompt=self.passage_prompt,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts,
            prompt=self.query_prompt,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )

    def count_tokens(self, text: str) -> int:
        """Model tokens of a passage, without the special tokens and the prompt."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # LangChain's Embeddings interface
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode_passages(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._query_vector(text).tolist()

    def _encode_query(self, text: str) -> np.ndarray:
        return self.encode_queries([text])[0]


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).is_absolute() or name.count("/") > 1
