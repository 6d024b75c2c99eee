"""Choose the answerer named by the settings (TALKS_LLM)."""

from __future__ import annotations

from retrieval.answering import Answerer, ExtractiveAnswerer
from retrieval.embeddings import SentenceTransformerEmbeddings
from talks.settings import Settings


class AnswererConfigError(ValueError):
    """TALKS_LLM names an answerer that does not exist or is not configured."""


def build_answerer(settings: Settings, embeddings: SentenceTransformerEmbeddings) -> Answerer:
    extractive = ExtractiveAnswerer(
        embeddings,
        threshold=settings.decline_threshold,
        cross_language_offset=settings.cross_language_offset,
        max_sentences=settings.answer_max_sentences,
    )
    if settings.llm == "extractive":
        return extractive
    raise AnswererConfigError(f"unknown TALKS_LLM={settings.llm!r}: use extractive")
