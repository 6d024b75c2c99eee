"""The one interface the CLI and the bot use: index the corpus, ask questions, describe the index."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Sequence
from datetime import date
from pathlib import Path

from pydantic import BaseModel

from corpus.loaders import load_corpus
from corpus.text import detect_language
from retrieval.answerers import astream_answer, build_answerer, condense_question
from retrieval.answering import Answer
from retrieval.chain import build_answer_chain, complete_answer
from retrieval.embeddings import SentenceTransformerEmbeddings
from retrieval.indexing import IndexReport, index_articles
from retrieval.retriever import HybridRetriever
from retrieval.sentences import split_sentences
from retrieval.store import NoIndexError, PassageStore, ProgressCallback, chroma_client
from talks.settings import Settings

logger = logging.getLogger(__name__)

# Follow-ups lean on the previous question: "and what did NATO say?", "وماذا عن الناتو؟".
_FOLLOW_UP_START = re.compile(r"^(?:and|but|what about|how about|so|also|و|ف|ماذا عن|وماذا|وما|وهل|ثم)\b|^و", re.IGNORECASE)
_FOLLOW_UP_PRONOUN = re.compile(r"\b(?:he|she|they|them|him|her|it|that|this|those|his|their)\b|(?:\bهو\b|\bهي\b|\bهم\b|ه\b)", re.IGNORECASE)
FOLLOW_UP_MAX_WORDS = 8
LEAD_SENTENCES = 2


class QuestionError(ValueError):
    """The question cannot be asked as it is (empty, too long)."""


class Exchange(BaseModel):
    """A previous question and its answer in the same conversation."""

    question: str
    answer: str = ""


class ArticleInfo(BaseModel):
    id: str
    title: str
    url: str | None
    date: str | None
    lang: str
    source: str | None
    source_name: str
    chunks: int
    lead: str = ""  # the article's first sentences, for digests


class IndexStats(BaseModel):
    articles: int
    chunks: int
    first_date: date | None
    last_date: date | None
    embedding_model: str


def standalone_query(question: str, history: Sequence[Exchange]) -> str:
    """The retrieval query for a question that may be a follow-up of the last exchange."""
    if not history:
        return question
    short = len(question.split()) <= FOLLOW_UP_MAX_WORDS
    if short and (_FOLLOW_UP_START.search(question) or _FOLLOW_UP_PRONOUN.search(question)):
        return f"{history[-1].question} {question}"
    return question


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


class TalksService:
    """Loads the model once; safe to share between threads (indexing is serialised)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embeddings = SentenceTransformerEmbeddings(
            settings.embedding_model,
            query_prompt=settings.query_prompt,
            passage_prompt=settings.passage_prompt,
            batch_size=settings.embed_batch_size,
        )
        self.store = PassageStore(chroma_client(settings), settings.collection_name, self.embeddings)
        self.answerer = build_answerer(settings, self.embeddings)
        self._retriever: HybridRetriever | None = None
        self._index_lock = threading.Lock()

    @property
    def retriever(self) -> HybridRetriever:
        if self._retriever is None:
            self.store.vectorstore()  # raises NoIndexError / ModelMismatchError
            self._retriever = HybridRetriever(
                store=self.store,
                k=self.settings.top_k,
                hybrid=self.settings.hybrid,
                centering=self.settings.language_centering,
            )
        return self._retriever

    def has_index(self) -> bool:
        return self.store.exists()

    def _checked(self, question: str) -> str:
        question = question.strip()
        if not question:
            raise QuestionError("the question is empty")
        if len(question) > self.settings.max_question_chars:
            raise QuestionError(f"the question is longer than {self.settings.max_question_chars} characters")
        return question

    def _query(self, question: str, history: Sequence[Exchange]) -> str:
        """The retrieval query: the follow-up rewritten by the LLM, else by `standalone_query`."""
        return condense_question(self.answerer, history, question) or standalone_query(question, history)

    def ask(self, question: str, *, history: Sequence[Exchange] = (), k: int | None = None) -> Answer:
        question = self._checked(question)
        query = self._query(question, history)
        chain = build_answer_chain(self.retriever, self.answerer)
        return chain.invoke({"question": question, "query": query, "k": k})

    def index(
        self, dirs: Sequence[Path] | None = None, *, full: bool = False, progress: ProgressCallback | None = None
    ) -> IndexReport:
        with self._index_lock:
            loaded = load_corpus(list(dirs or self.settings.index_dirs))
            report = index_articles(
                loaded.articles,
                self.store,
                max_tokens=self.settings.chunk_max_tokens,
                overlap_tokens=self.settings.chunk_overlap_tokens,
                full=full,
                errors=loaded.errors,
                progress=progress,
            )
            if self._retriever is not None:
                self._retriever.refresh()
        logger.info(
            "indexed %d articles: %d chunks added, %d removed, %d unchanged in %.1fs",
            report.articles,
            report.chunks_added,
            report.chunks_removed,
            report.chunks_unchanged,
            report.seconds,
        )
        return report

    def articles(self) -> list[ArticleInfo]:
        if not self.has_index():
            return []
        by_article: dict[str, ArticleInfo] = {}
        for chunk in self.store.all_chunks():
            info = by_article.get(chunk.article_id)
            if info is None:
                info = by_article[chunk.article_id] = ArticleInfo(
                    id=chunk.article_id,
                    title=chunk.title,
                    url=chunk.url,
                    date=chunk.published,
                    lang=chunk.lang,
                    source=chunk.source,
                    source_name=chunk.source_name,
                    chunks=0,
                )
            info.chunks += 1
            if chunk.position == 0:
                info.lead = " ".join(span.text for span in split_sentences(chunk.text)[:LEAD_SENTENCES])
        return sorted(by_article.values(), key=lambda a: (a.date or "", a.title))

    def stats(self) -> IndexStats:
        articles = self.articles()
        dates = sorted(date.fromisoformat(a.date) for a in articles if a.date)
        return IndexStats(
            articles=len(articles),
            chunks=sum(a.chunks for a in articles),
            first_date=dates[0] if dates else None,
            last_date=dates[-1] if dates else None,
            embedding_model=self.embeddings.name,
        )

    async def astream(
        self, question: str, *, history: Sequence[Exchange] = (), k: int | None = None
    ) -> AsyncIterator[str | Answer]:
        """`ask`, streamed: drafts of the answer while an LLM writes it (each the whole text so
        far; none from the extractive answerer), then the final `Answer`, once, last.

        Raises `QuestionError` (and the store's errors) before anything is yielded. The blocking
        steps (follow-up rewriting, retrieval) run in worker threads.
        """
        question = self._checked(question)
        query = await asyncio.to_thread(self._query, question, history)
        started = time.perf_counter()
        language = detect_language(question)
        timings = {"language": _ms_since(started)}
        started = time.perf_counter()
        passages = await asyncio.to_thread(self.retriever.passages, query, k)
        timings["passages"] = _ms_since(started)
        started = time.perf_counter()
        async for update in astream_answer(self.answerer, query, language, passages):
            if isinstance(update, Answer):
                timings["answer"] = _ms_since(started)
                update = complete_answer(update, question=question, passages=passages, timings=timings)
            yield update


__all__ = ["Answer", "ArticleInfo", "Exchange", "IndexReport", "IndexStats", "NoIndexError", "QuestionError", "TalksService"]
