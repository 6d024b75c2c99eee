"""Lexical retrieval: BM25 over Arabic-normalised tokens, and reciprocal-rank fusion."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rank_bm25 import BM25Okapi

_DIACRITICS = re.compile(r"[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed]")
_LETTER_FORMS = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه", "ؤ": "و", "ئ": "ي"})
_TOKEN = re.compile(r"\w+")
# Conjunction/preposition + article prefixes: والناتو -> ناتو, بالمحادثات -> محادثات.
_ARTICLE_PREFIX = re.compile(r"^(?:و|ف|ب|ك|ل)?(?:ال|لل)(?=\w{2,})")
_STOPWORDS = frozenset(
    """
    the a an of to in on at for and or is are was were be been by with from as that this it its
    what who whom which when where why how did do does about after before than then there their
    في من على الى عن مع ما ماذا من هل كم كيف متى اين لماذا التي الذي هذا هذه ذلك تلك و او ان
    """.split()
)


def normalize_arabic(text: str) -> str:
    """Fold the spelling variants that Arabic news text mixes freely."""
    text = _DIACRITICS.sub("", text.replace("\u0640", ""))
    return text.translate(_LETTER_FORMS)


def lexical_tokens(text: str) -> list[str]:
    tokens = []
    for token in _TOKEN.findall(normalize_arabic(text.lower())):
        if token in _STOPWORDS:
            continue
        token = _ARTICLE_PREFIX.sub("", token)
        if token and token not in _STOPWORDS:
            tokens.append(token)
    return tokens


class LexicalIndex:
    """BM25 over a fixed list of passages, identified by id."""

    def __init__(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        self.ids = list(ids)
        self._bm25 = BM25Okapi([lexical_tokens(t) for t in texts]) if self.ids else None

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        tokens = lexical_tokens(query)
        if self._bm25 is None or not tokens:
            return []
        scores = self._bm25.get_scores(tokens)
        ranked = sorted(range(len(self.ids)), key=lambda i: scores[i], reverse=True)[:k]
        return [(self.ids[i], float(scores[i])) for i in ranked if scores[i] > 0]


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = 60) -> list[str]:
    """Merge ranked id lists: each id scores sum(1 / (k + rank)). Ties keep first-seen order."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda item: scores[item], reverse=True)
