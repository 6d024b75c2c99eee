"""Answers with citations, and the offline extractive answerer."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pydantic import BaseModel

from corpus.models import Language
from retrieval.embeddings import SentenceTransformerEmbeddings
from retrieval.prompts import load_prompt
from retrieval.retriever import Passage
from retrieval.sentences import Span, split_sentences

MIN_SENTENCE_WORDS = 4  # shorter "sentences" (datelines, captions) score high on little meaning


class Citation(BaseModel):
    """Source `n` of an answer: `quote == article.text[start:end]`, inside `passage`."""

    n: int
    article_id: str
    chunk_id: str
    title: str
    url: str | None
    date: str | None
    lang: str
    source: str | None
    source_name: str
    quote: str
    start: int
    end: int
    passage: str
    score: float


class RetrievedRef(BaseModel):
    """What retrieval returned for the question, best first (for evaluation and admins)."""

    rank: int
    chunk_id: str
    article_id: str
    source_name: str
    score: float


class Answer(BaseModel):
    question: str
    language: Language
    answered: bool
    answer: str
    citations: list[Citation]
    evidence: float  # the best sentence's relevance: cosine above its language's background
    backend: str
    note: str | None = None
    prompts: dict[str, int] = {}
    timings_ms: dict[str, float] = {}
    retrieved: list[RetrievedRef] = []

    def cited_numbers(self) -> list[int]:
        return [int(n) for n in re.findall(r"\[(\d+)\]", self.answer)]


def citation_problems(answer: Answer, article_texts: dict[str, str]) -> list[str]:
    """Why the answer's citations cannot be trusted; empty when every [n] checks out."""
    problems = []
    by_number = {c.n: c for c in answer.citations}
    retrieved = {ref.chunk_id for ref in answer.retrieved}
    for n in answer.cited_numbers():
        if n not in by_number:
            problems.append(f"[{n}] has no citation")
    for citation in answer.citations:
        text = article_texts.get(citation.article_id)
        if text is None:
            problems.append(f"[{citation.n}] cites unknown article {citation.article_id}")
        elif text[citation.start : citation.end] != citation.quote:
            problems.append(f"[{citation.n}] quote is not at {citation.start}:{citation.end} of its article")
        if citation.quote not in citation.passage:
            problems.append(f"[{citation.n}] quote is not inside its passage")
        if retrieved and citation.chunk_id not in retrieved:
            problems.append(f"[{citation.n}] cites a passage that was not retrieved")
    if answer.answered and not answer.citations:
        problems.append("answered without citations")
    return problems


class Answerer(Protocol):
    """Turns retrieved passages into a cited answer (extractive here; an LLM plugs in too)."""

    name: str

    def answer(self, question: str, language: Language, passages: Sequence[Passage]) -> Answer: ...


@dataclass(frozen=True)
class ScoredSentence:
    passage: Passage
    span: Span  # offsets in the article
    score: float  # cosine to the question

    @property
    def relevance(self) -> float:
        """The cosine above its language's background (see `retriever`)."""
        return self.score - self.passage.background


def decline(question: str, language: Language, evidence: float, backend: str) -> Answer:
    texts = load_prompt("extractive")
    return Answer(
        question=question,
        language=language,
        answered=False,
        answer=texts["decline"][language],
        citations=[],
        evidence=evidence,
        backend=backend,
        prompts={texts["name"]: texts["version"]},
    )


def select_sentences(
    scored: Sequence[ScoredSentence], *, threshold: float, max_sentences: int, margin: float
) -> list[ScoredSentence]:
    """The most relevant sentences above `threshold` and within `margin` of the best, in reading order."""
    ranked = sorted(scored, key=lambda s: s.relevance, reverse=True)
    if not ranked or ranked[0].relevance < threshold:
        return []
    floor = max(threshold, ranked[0].relevance - margin)
    chosen = [s for s in ranked if s.relevance >= floor][:max_sentences]
    article_order = {}
    for sentence in sorted(chosen, key=lambda s: s.passage.rank):
        article_order.setdefault(sentence.passage.chunk.article_id, len(article_order))
    return sorted(chosen, key=lambda s: (article_order[s.passage.chunk.article_id], s.span.start))


def cite(question: str, language: Language, chosen: Sequence[ScoredSentence], backend: str) -> Answer:
    """Compose the answer text with [n] markers, one citation per passage used."""
    texts = load_prompt("extractive")
    citations: dict[str, Citation] = {}
    parts = []
    for sentence in chosen:
        chunk = sentence.passage.chunk
        citation = citations.get(chunk.id)
        if citation is None:
            citation = citations[chunk.id] = Citation(
                n=len(citations) + 1,
                article_id=chunk.article_id,
                chunk_id=chunk.id,
                title=chunk.title,
                url=chunk.url,
                date=chunk.published,
                lang=chunk.lang,
                source=chunk.source,
                source_name=chunk.source_name,
                quote=sentence.span.text,
                start=sentence.span.start,
                end=sentence.span.end,
                passage=chunk.text,
                score=round(sentence.score, 4),
            )
        elif sentence.span.start >= citation.end:
            # A second sentence from the same passage: widen the quote to cover both, verbatim.
            offset = chunk.start
            citations[chunk.id] = citation.model_copy(
                update={
                    "quote": chunk.text[citation.start - offset : sentence.span.end - offset],
                    "end": sentence.span.end,
                    "score": max(citation.score, round(sentence.score, 4)),
                }
            )
        parts.append(f"{sentence.span.text} [{citation.n}]")
    source_languages = {sentence.passage.chunk.lang for sentence in chosen}
    preface = [texts["quoted_from"][language][lang] for lang in sorted(source_languages - {language})]
    return Answer(
        question=question,
        language=language,
        answered=True,
        answer="\n".join([*preface, " ".join(parts)]) if preface else " ".join(parts),
        citations=list(citations.values()),
        evidence=round(max(s.relevance for s in chosen), 4),
        backend=backend,
        prompts={texts["name"]: texts["version"]},
    )


class ExtractiveAnswerer:
    """Quotes the sentences of the passages that are closest to the question. No LLM."""

    name = "extractive"

    def __init__(
        self,
        embeddings: SentenceTransformerEmbeddings,
        *,
        threshold: float,
        max_sentences: int = 3,
        margin: float = 0.03,
    ) -> None:
        self.embeddings = embeddings
        self.threshold = threshold
        self.max_sentences = max_sentences
        self.margin = margin

    def score_sentences(self, question: str, passages: Sequence[Passage]) -> list[ScoredSentence]:
        seen: set[tuple[str, int]] = set()
        candidates: list[tuple[Passage, Span]] = []
        for passage in sorted(passages, key=lambda p: p.rank):
            chunk = passage.chunk
            for span in split_sentences(chunk.text, offset=chunk.start):
                key = (chunk.article_id, span.start)
                if key in seen or len(span.text.split()) < MIN_SENTENCE_WORDS:
                    continue
                seen.add(key)
                candidates.append((passage, span))
        if not candidates:
            return []
        query = np.asarray(self.embeddings.embed_query(question))
        vectors = self.embeddings.encode_passages([span.text for _, span in candidates])
        scores = vectors @ query
        return [ScoredSentence(p, span, float(score)) for (p, span), score in zip(candidates, scores)]

    def answer(self, question: str, language: Language, passages: Sequence[Passage]) -> Answer:
        scored = self.score_sentences(question, passages)
        evidence = max((s.relevance for s in scored), default=0.0)
        chosen = select_sentences(
            scored, threshold=self.threshold, max_sentences=self.max_sentences, margin=self.margin
        )
        if not chosen:
            return decline(question, language, round(evidence, 4), self.name)
        return cite(question, language, chosen, self.name)
