"""Unit tests for corpus.text: normalisation, language detection, article ids."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corpus.text import detect_language, normalize_text, stable_article_id

# --- normalize_text ---------------------------------------------------------------


@pytest.mark.parametrize(
    "mark",
    ["\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
     "\u2066", "\u2067", "\u2068", "\u2069", "\u061c", "\u200b", "\u200c", "\u200d", "\ufeff"],
)
def test_invisible_marks_are_removed(mark: str) -> None:
    assert normalize_text(f"{mark}قال{mark} Ryabkov{mark}") == "قال Ryabkov"


def test_rtl_marks_around_numbers_are_removed() -> None:
    assert normalize_text("عقدت المحادثات في \u200f10\u200f يناير \u2067(جنيف)\u2069") == (
        "عقدت المحادثات في 10 يناير (جنيف)"
    )


def test_tatweel_is_removed() -> None:
    assert normalize_text("مـــحـادثــات") == "محادثات"


@pytest.mark.parametrize("nbsp", ["\u00a0", "\u202f", "\u2007"])
def test_non_breaking_spaces_become_spaces(nbsp: str) -> None:
    assert normalize_text(f"Geneva{nbsp}talks{nbsp}{nbsp}ended") == "Geneva talks ended"


def test_spaces_and_tabs_collapse_inside_lines_and_lines_are_stripped() -> None:
    assert normalize_text("  Geneva \t  talks  \n\t ended   ") == "Geneva talks\nended"


def test_paragraphs_are_separated_by_exactly_one_blank_line() -> None:
    raw = "\n\nFirst paragraph.\n \n\t\n\n\nSecond paragraph.\nSame paragraph.\n\n\n"
    assert normalize_text(raw) == "First paragraph.\n\nSecond paragraph.\nSame paragraph."


def test_windows_line_endings_become_newlines() -> None:
    assert normalize_text("One.\r\n\r\nTwo.\r\n") == "One.\n\nTwo."


def test_text_is_composed_to_nfc() -> None:
    assert normalize_text("Re\u0301sume\u0301") == "Résumé"
    assert normalize_text("\u0627\u0654من") == "\u0623من"  # alef + hamza above -> أ


def test_letters_digits_and_punctuation_are_kept() -> None:
    text = 'قال ريابكوف: "لا نية لدينا لمهاجمة أوكرانيا" (2022)، وأضاف: NATO’s open door – “no”.'
    assert normalize_text(text) == text


def test_empty_and_blank_text_normalise_to_empty() -> None:
    assert normalize_text("") == ""
    assert normalize_text(" \u200f\n\u00a0\n\t") == ""


_REMOVED_OR_REPLACED = re.compile(
    "[\u200b-\u200f\u202a-\u202e\u2066-\u2069\u061c\ufeff\u0640\u00a0\u202f\u2007]"
)


@given(st.text())
def test_normalize_is_idempotent_and_leaves_no_marks(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert not _REMOVED_OR_REPLACED.search(once)
    assert "\n\n\n" not in once
    assert once == once.strip()


# --- detect_language -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("انتهاء محادثات أمنية بين الولايات المتحدة وروسيا", "ar"),
        ("US and Russia end Geneva talks without breakthrough", "en"),
        ("ماذا قال Ryabkov", "ar"),
        ("ماذا قال Ryabkov بعد محادثات Geneva؟", "ar"),
        ("What did Ryabkov say about NATO enlargement in Geneva, i.e. about الناتو?", "en"),
        ("", "en"),
        ("1/11/2022 00:00 — 4", "en"),
        ("١١ / ١ / ٢٠٢٢", "en"),  # Arabic-Indic digits are not letters
        ("\u200fمـحادثات\u200f", "ar"),
    ],
)
def test_detect_language(text: str, expected: str) -> None:
    assert detect_language(text) == expected


# --- stable_article_id ---------------------------------------------------------------------


def test_id_is_short_stable_hex() -> None:
    article_id = stable_article_id(None, "000_a126dbe46f937833.txt")
    assert re.fullmatch(r"[0-9a-f]{16}", article_id)
    assert article_id == stable_article_id(None, "000_a126dbe46f937833.txt")


def test_id_ignores_the_folder_of_the_source_file() -> None:
    assert stable_article_id(None, "corpus/articles/a.txt") == stable_article_id(None, "/elsewhere/a.txt")
    assert stable_article_id(None, "a.txt") != stable_article_id(None, "b.txt")


def test_id_comes_from_the_url_when_there_is_one() -> None:
    url = "https://example.org/2022/01/10/geneva"
    assert stable_article_id(url, "a.txt") == stable_article_id(url, "b.json#3")
    assert stable_article_id(url, "a.txt") != stable_article_id(None, "a.txt")
    assert stable_article_id("  ", "a.txt") == stable_article_id(None, "a.txt")


def test_id_uses_the_canonical_url() -> None:
    url = "https://example.org/2022/01/10/geneva"
    same = [" https://EXAMPLE.org/2022/01/10/geneva ", "HTTPS://example.org/2022/01/10/geneva#comments"]
    assert {stable_article_id(variant, "x") for variant in same} == {stable_article_id(url, "x")}
    assert stable_article_id(url + "?page=2", "x") != stable_article_id(url, "x")


def test_url_given_as_source_name_is_not_cut_to_its_last_segment() -> None:
    assert stable_article_id(None, "https://a.example/news/1") != stable_article_id(None, "https://b.example/news/1")
