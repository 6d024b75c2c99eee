"""Sentence-aware chunking that keeps where each chunk sits in its article."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator

from pydantic import BaseModel, ConfigDict

from corpus.models import Article
from retrieval.sentences import Span, split_clauses, split_sentences

# Bump when chunk boundaries or metadata change, so `talks index` re-embeds everything.
CHUNKER_VERSION = "1"

TokenCounter = Callable[[str], int]


class Chunk(BaseModel):
    """A passage of an article: `text == article.text[start:end]`."""

    model_config = ConfigDict(frozen=True)

    id: str
    article_id: str
    position: int
    start: int
    end: int
    text: str
    title: str
    url: str | None
    published: str | None  # ISO date
    lang: str
    source: str | None
    source_name: str

    def metadata(self) -> dict[str, str | int]:
        """Chroma metadata: scalars only, no None."""
        fields = self.model_dump(exclude={"id", "text"})
        return {key: value for key, value in fields.items() if value is not None}

    @classmethod
    def from_stored(cls, chunk_id: str, text: str, metadata: dict) -> Chunk:
        defaults = {"url": None, "published": None, "source": None}
        return cls(id=chunk_id, text=text, **(defaults | metadata))


def _pieces(sentence: Span, count_tokens: TokenCounter, max_tokens: int) -> Iterator[tuple[Span, int]]:
    """The sentence whole if it fits, else its clauses, else runs of words."""
    tokens = count_tokens(sentence.text)
    if tokens <= max_tokens:
        yield sentence, tokens
        return
    for clause in split_clauses(sentence):
        clause_tokens = count_tokens(clause.text)
        if clause_tokens <= max_tokens:
            yield clause, clause_tokens
        else:
            yield from _word_windows(clause, count_tokens, max_tokens)


def _word_windows(span: Span, count_tokens: TokenCounter, max_tokens: int) -> Iterator[tuple[Span, int]]:
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", span.text)]
    begin = 0
    while begin < len(words):
        end = begin + 1
        while end < len(words) and count_tokens(span.text[words[begin][0] : words[end][1]]) <= max_tokens:
            end += 1
        start_char, end_char = words[begin][0], words[end - 1][1]
        text = span.text[start_char:end_char]
        yield Span(span.start + start_char, span.start + end_char, text), count_tokens(text)
        begin = end


def _chunk_id(fields: dict[str, object]) -> str:
    """A hash of everything stored with the chunk: any change to it is a new chunk."""
    key = json.dumps([CHUNKER_VERSION, fields], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def chunk_article(
    article: Article, count_tokens: TokenCounter, *, max_tokens: int = 200, overlap_tokens: int = 40
) -> list[Chunk]:
    """Pack whole sentences into chunks of at most `max_tokens`, overlapping by whole sentences.

    A sentence is cut (at commas, then between words) only when it alone is too long.
    """
    units = [
        piece
        for sentence in split_sentences(article.text)
        for piece in _pieces(sentence, count_tokens, max_tokens)
    ]
    groups: list[list[tuple[Span, int]]] = []
    current: list[tuple[Span, int]] = []
    current_tokens = 0
    for unit, tokens in units:
        if current and current_tokens + tokens > max_tokens:
            groups.append(current)
            current = _overlap_tail(current, overlap_tokens, room=max_tokens - tokens)
            current_tokens = sum(t for _, t in current)
        current.append((unit, tokens))
        current_tokens += tokens
    if current:
        groups.append(current)

    chunks = []
    for position, group in enumerate(groups):
        start, end = group[0][0].start, group[-1][0].end
        fields: dict[str, object] = {
            "article_id": article.id,
            "position": position,
            "start": start,
            "end": end,
            "text": article.text[start:end],
            "title": article.title,
            "url": article.url,
            "published": article.published.isoformat() if article.published else None,
            "lang": article.lang,
            "source": article.source,
            "source_name": article.source_name,
        }
        chunks.append(Chunk(id=_chunk_id(fields), **fields))
    return chunks


def _overlap_tail(group: list[tuple[Span, int]], overlap_tokens: int, room: int) -> list[tuple[Span, int]]:
    """The last sentences of a chunk, within the overlap budget, to start the next one."""
    tail: list[tuple[Span, int]] = []
    budget = min(overlap_tokens, room)
    for unit, tokens in reversed(group):
        if tokens > budget:
            break
        tail.insert(0, (unit, tokens))
        budget -= tokens
    return tail
