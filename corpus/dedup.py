"""Is a fetched article new, a new version of one we have, or a duplicate?

Three checks, in order: the same id (the canonical URL: an update when its text changed), the
same text (a hash of the folded text), and nearly the same text — the same wire story on two
sites — by MinHash over word 3-grams, with LSH to find the candidates (datasketch).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from datasketch import MinHash, MinHashLSH

from corpus.models import Article
from corpus.sources import fold_text

NUM_PERMUTATIONS = 128
SHINGLE_WORDS = 3
_WORD = re.compile(r"\w+")

VerdictKind = Literal["new", "updated", "unchanged", "duplicate"]


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    of: str | None = None  # the known article it updates or duplicates
    reason: str = ""


def text_key(text: str) -> str:
    """Hash of the folded text: equal for texts that differ only in spacing, case or Arabic spelling."""
    return hashlib.sha256(" ".join(_WORD.findall(fold_text(text))).encode("utf-8")).hexdigest()


@lru_cache(maxsize=4096)
def signature(text: str) -> MinHash:
    """The MinHash of the text's word 3-grams (read-only: it is cached)."""
    words = _WORD.findall(fold_text(text))
    shingles = [" ".join(words[i : i + SHINGLE_WORDS]) for i in range(max(1, len(words) - SHINGLE_WORDS + 1))]
    minhash = MinHash(num_perm=NUM_PERMUTATIONS)
    minhash.update_batch([shingle.encode("utf-8") for shingle in shingles])
    return minhash


class Deduplicator:
    """What is already in the corpus: the store's articles (replaceable) and the others (fixed)."""

    def __init__(self, stored: Iterable[Article], others: Iterable[Article] = (), *, threshold: float) -> None:
        self.threshold = threshold
        self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERMUTATIONS)
        self._signatures: dict[str, MinHash] = {}
        self._keys: dict[str, str] = {}  # article id -> text key
        self._by_key: dict[str, str] = {}  # text key -> article id
        self._titles: dict[str, str] = {}
        self._replaceable: set[str] = set()
        for article in others:
            self._add(article)
        for article in stored:
            self.add(article)

    def check(self, article: Article) -> Verdict:
        key = text_key(article.text)
        if article.id in self._keys:
            if article.id not in self._replaceable:
                return Verdict("duplicate", article.id, "already in the corpus folders")
            if self._keys[article.id] == key:
                return Verdict("unchanged", article.id, "already stored")
        other = self._by_key.get(key)
        if other is not None and other != article.id:
            return Verdict("duplicate", other, f"same text as {self._titles[other]!r}")
        near = self._nearest(article)
        if near is not None:
            other, similarity = near
            return Verdict("duplicate", other, f"near-duplicate ({similarity:.0%} alike) of {self._titles[other]!r}")
        if article.id in self._keys:
            return Verdict("updated", article.id, "text changed")
        return Verdict("new")

    def add(self, article: Article) -> None:
        """Remember a stored article (a new version replaces the old one)."""
        self._replaceable.add(article.id)
        self._add(article)

    def _add(self, article: Article) -> None:
        if article.id in self._keys:
            old_key = self._keys[article.id]
            if self._by_key.get(old_key) == article.id:
                del self._by_key[old_key]
            self._lsh.remove(article.id)
        key = text_key(article.text)
        self._keys[article.id] = key
        self._by_key.setdefault(key, article.id)
        self._titles[article.id] = article.title
        self._signatures[article.id] = signature(article.text)
        self._lsh.insert(article.id, self._signatures[article.id])

    def _nearest(self, article: Article) -> tuple[str, float] | None:
        """The most similar other article at or above the threshold, with its estimated Jaccard."""
        minhash = signature(article.text)
        scored = [
            (other, minhash.jaccard(self._signatures[other])) for other in self._lsh.query(minhash) if other != article.id
        ]
        above = [(other, score) for other, score in scored if score >= self.threshold]
        return max(above, key=lambda pair: pair[1]) if above else None
