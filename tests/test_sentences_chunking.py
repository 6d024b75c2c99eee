"""Sentence splitting and chunking on Arabic and English text."""

from __future__ import annotations

from datetime import date

import pytest

from corpus.models import Article
from retrieval.chunking import Chunk, chunk_article
from retrieval.sentences import split_clauses, split_sentences


def words(text: str) -> int:
    """A stand-in tokenizer for unit tests: one token per word."""
    return len(text.split())


def article(text: str, lang: str = "en") -> Article:
    return Article(id="a1", source_name="a.txt", title="T", lang=lang, text=text, published=date(2022, 1, 10))


def test_arabic_sentences_split_on_arabic_punctuation() -> None:
    text = "قال ريابكوف إن المحادثات صعبة. هل تثق روسيا؟ لا؛ لا نثق! وانتهى الاجتماع…\nسطر جديد"
    assert [s.text for s in split_sentences(text)] == [
        "قال ريابكوف إن المحادثات صعبة.",
        "هل تثق روسيا؟",
        "لا؛",
        "لا نثق!",
        "وانتهى الاجتماع…",
        "سطر جديد",
    ]


def test_offsets_point_into_the_text() -> None:
    text = 'He said "we do not trust them." Then he left.  U.S. officials and Mr. Blinken agreed. 2.5 percent.'
    spans = split_sentences(text, offset=100)
    assert [s.text for s in spans] == [
        'He said "we do not trust them."',
        "Then he left.",
        "U.S. officials and Mr. Blinken agreed.",
        "2.5 percent.",
    ]
    for span in spans:
        assert text[span.start - 100 : span.end - 100] == span.text


def test_clauses_split_on_arabic_and_latin_commas() -> None:
    sentence = split_sentences("أولا، ثانيا، ثالثا: رابعا, خامسا")[0]
    assert [c.text for c in split_clauses(sentence)] == ["أولا،", "ثانيا،", "ثالثا:", "رابعا,", "خامسا"]


def assert_chunks_are_article_slices(chunks: list[Chunk], source: Article) -> None:
    for chunk in chunks:
        assert source.text[chunk.start : chunk.end] == chunk.text


def test_chunks_pack_whole_sentences_with_overlap() -> None:
    sentences = [f"Sentence number {i} has exactly seven words." for i in range(20)]
    source = article(" ".join(sentences))
    chunks = chunk_article(source, words, max_tokens=30, overlap_tokens=8)
    assert len(chunks) > 1
    assert_chunks_are_article_slices(chunks, source)
    for chunk in chunks:
        assert words(chunk.text) <= 30
        assert chunk.text.startswith("Sentence") and chunk.text.endswith("words.")  # never cut mid-sentence
    for before, after in zip(chunks, chunks[1:]):
        assert after.start < before.end  # one sentence of overlap
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_a_too_long_sentence_is_cut_at_commas_then_words() -> None:
    long_clause = " ".join(["كلمة"] * 25)
    source = article(f"بداية الجملة، {long_clause}، نهاية الجملة. جملة أخرى قصيرة هنا.", lang="ar")
    chunks = chunk_article(source, words, max_tokens=10, overlap_tokens=0)
    assert_chunks_are_article_slices(chunks, source)
    assert all(words(c.text) <= 10 for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "") == source.text.replace(" ", "")


def test_chunk_metadata_and_ids() -> None:
    source = article("One sentence here. Another sentence there.")
    (chunk,) = chunk_article(source, words, max_tokens=50, overlap_tokens=5)
    assert chunk.metadata() == {
        "article_id": "a1",
        "position": 0,
        "start": 0,
        "end": len(source.text),
        "title": "T",
        "published": "2022-01-10",
        "lang": "en",
        "source_name": "a.txt",
    }
    assert Chunk.from_stored(chunk.id, chunk.text, chunk.metadata()) == chunk
    changed = chunk_article(source.model_copy(update={"title": "New title"}), words, max_tokens=50)[0]
    assert changed.id != chunk.id  # any change to what is stored is a new chunk
    assert chunk_article(source, words, max_tokens=50)[0].id == chunk.id  # and ids are stable


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_has_no_chunks(text: str) -> None:
    assert chunk_article(article(text), words) == []
