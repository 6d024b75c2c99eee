"""Answers with citations, and the offline extractive answerer."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pydantic import BaseModel

from corpus.models import Language
from retrieval.chunking import Chunk
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

    @classmethod
    def quoting(cls, n: int, chunk: Chunk, span: Span, score: float) -> Citation:
        """Source `n`: `span` (article offsets) quoted from `chunk`."""
        return cls(
            n=n,
            article_id=chunk.article_id,
            chunk_id=chunk.id,
            title=chunk.title,
            url=chunk.url,
            date=chunk.published,
            lang=chunk.lang,
            source=chunk.source,
            source_name=chunk.source_name,
            quote=span.text,
            start=span.start,
            end=span.end,
            passage=chunk.text,
            score=round(score, 4),
        )


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
    evidence: float  # what the decline threshold is compared with (see ExtractiveAnswerer)
    evidence_by_language: dict[str, float] = {}  # closest sentence's cosine, per source language
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


def decline(question: str, language: Language, backend: str, **evidence: object) -> Answer:
    texts = load_prompt("extractive")
    return Answer(
        question=question,
        language=language,
        answered=False,
        answer=texts["decline"][language],
        citations=[],
        backend=backend,
        prompts={texts["name"]: texts["version"]},
        **evidence,
    )


def best_by_language(scored: Sequence[ScoredSentence]) -> dict[str, float]:
    best: dict[str, float] = {}
    for sentence in scored:
        lang = sentence.passage.chunk.lang
        best[lang] = round(max(best.get(lang, -1.0), sentence.score), 4)
    return best


def adjusted_evidence(best: dict[str, float], language: str, cross_language_offset: float) -> float:
    """The closest sentence's cosine, crediting other-language sentences for e5's lower
    cross-language cosines, so one threshold serves both."""
    return max(
        (score + (cross_language_offset if lang != language else 0.0) for lang, score in best.items()),
        default=0.0,
    )


def select_sentences(scored: Sequence[ScoredSentence], *, max_sentences: int, margin: float) -> list[ScoredSentence]:
    """The most relevant sentences, within `margin` of the best, in reading order."""
    ranked = sorted(scored, key=lambda s: s.relevance, reverse=True)
    if not ranked:
        return []
    chosen = [s for s in ranked if s.relevance >= ranked[0].relevance - margin][:max_sentences]
    article_order: dict[str, int] = {}
    for sentence in sorted(chosen, key=lambda s: s.passage.rank):
        article_order.setdefault(sentence.passage.chunk.article_id, len(article_order))
    return sorted(chosen, key=lambda s: (article_order[s.passage.chunk.article_id], s.span.start))


def cite(
    question: str, language: Language, chosen: Sequence[ScoredSentence], backend: str, **evidence: object
) -> Answer:
    """Compose the answer text with [n] markers, one citation per passage used."""
    texts = load_prompt("extractive")
    citations: dict[str, Citation] = {}
    parts = []
    for sentence in chosen:
        chunk = sentence.passage.chunk
        citation = citations.get(chunk.id)
        if citation is None:
            citation = citations[chunk.id] = Citation.quoting(len(citations) + 1, chunk, sentence.span, sentence.score)
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
        backend=backend,
        prompts={texts["name"]: texts["version"]},
        **evidence,
    )


class ExtractiveAnswerer:
    """Quotes the sentences of the passages that are closest to the question. No LLM.

    Declines when the closest sentence's cosine (see `adjusted_evidence`) is below `threshold`:
    raw cosine tells "is this about the question at all" best. Which sentences to quote is
    decided by relevance (cosine above the language background), which ranks both languages fairly.
    """

    name = "extractive"

    def __init__(
        self,
        embeddings: SentenceTransformerEmbeddings,
        *,
        threshold: float,
        cross_language_offset: float = 0.0,
        max_sentences: int = 3,
        margin: float = 0.03,
    ) -> None:
        self.embeddings = embeddings
        self.threshold = threshold
        self.cross_language_offset = cross_language_offset
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
        return self.answer_scored(question, language, self.score_sentences(question, passages))

    def answer_scored(self, question: str, language: Language, scored: Sequence[ScoredSentence]) -> Answer:
        """The answer from sentences already scored (an LLM answerer reuses the scores)."""
        best = best_by_language(scored)
        evidence = round(adjusted_evidence(best, language, self.cross_language_offset), 4)
        measured = {"evidence": evidence, "evidence_by_language": best}
        if evidence < self.threshold:
            return decline(question, language, self.name, **measured)
        chosen = select_sentences(scored, max_sentences=self.max_sentences, margin=self.margin)
        return cite(question, language, chosen, self.name, **measured)
