"""Sentence and clause splitting for Arabic and English, with character offsets."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A sentence ends at . ! ? ؟ … ؛ ; (with any closing quotes or brackets after it) followed
# by white space, or at a line break.
_SENTENCE_END = re.compile(r"[.!?؟…؛;]+[\"'»”’)\]]*(?=\s)|\n+")
# Places a too-long sentence may be cut: commas (Arabic and Latin), colons, dashes.
_CLAUSE_END = re.compile(r"[,،:]+[\"'»”’)\]]*(?=\s)|\s[-–—]\s")
# "U.S. officials", "Mr. Blinken", "J. Sullivan": a period that does not end the sentence.
_ABBREVIATION = re.compile(
    r"(?:\b[A-Z]|\b(?:Mr|Mrs|Ms|Dr|Gen|Lt|Col|Sgt|Gov|Sen|Rep|St|Jr|Sr|No|vs|etc|approx|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec))\.$"
)


@dataclass(frozen=True)
class Span:
    """A piece of a text: `text == source[start:end]`."""

    start: int
    end: int
    text: str


def _spans_between(text: str, cuts: list[int], offset: int) -> list[Span]:
    spans = []
    previous = 0
    for cut in [*cuts, len(text)]:
        piece = text[previous:cut]
        stripped = piece.strip()
        if stripped:
            lead = len(piece) - len(piece.lstrip())
            start = offset + previous + lead
            spans.append(Span(start, start + len(stripped), stripped))
        previous = cut
    return spans


# Longer than any abbreviation above plus the character before it (for its \b).
_ABBREVIATION_WINDOW = 10


def _ends_with_abbreviation(text: str, match: re.Match[str]) -> bool:
    # Only the end of the text before the match: searching all of it made splitting quadratic.
    before = text[max(0, match.start() - _ABBREVIATION_WINDOW) : match.end()]
    return _ABBREVIATION.search(before.rstrip("\"'»”’)]")) is not None


def split_sentences(text: str, offset: int = 0) -> list[Span]:
    """Split into sentences; offsets are relative to `text` plus `offset`."""
    cuts = []
    for match in _SENTENCE_END.finditer(text):
        if match.group().startswith("\n") or not _ends_with_abbreviation(text, match):
            cuts.append(match.end())
    return _spans_between(text, cuts, offset)


def split_clauses(sentence: Span) -> list[Span]:
    """Split one sentence at commas, colons and dashes."""
    cuts = [match.end() for match in _CLAUSE_END.finditer(sentence.text)]
    return _spans_between(sentence.text, cuts, sentence.start)
