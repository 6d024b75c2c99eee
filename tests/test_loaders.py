"""Tests for corpus.loaders: every file format, clutter removal and error reporting."""

from __future__ import annotations

import logging
import shutil
from datetime import date
from pathlib import Path

import pytest

from corpus.loaders import (
    ArticleParseError,
    article_from_html,
    article_from_record,
    is_page_clutter,
    load_corpus,
    load_file,
    parse_article_text,
    parse_date,
    parse_markdown,
)
from corpus.models import Article

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SEED = PROJECT_ROOT / "corpus" / "articles" / "000_a126dbe46f937833.txt"
CASES = Path(__file__).parent / "data" / "loader_cases"


def load_one(path: Path) -> Article:
    articles = load_file(path)
    assert len(articles) == 1
    return articles[0]


# --- scraped pages -------------------------------------------------------------------------


def test_seed_article_loads_clean() -> None:
    article = load_one(SEED)

    assert article.title == "انتهاء محادثات أمنية بين الولايات المتحدة وروسيا دون انفراجة دبلوماسية"
    assert article.published == date(2022, 1, 11)
    assert article.lang == "ar"
    assert article.source is None
    assert article.url is None
    assert article.source_name == SEED.name
    assert article.text.startswith("اختتمت جولة جديدة")
    assert article.text.endswith("الاتحاد الأوروبي.")
    for clutter in ("news-picture", "مشاركة", "00:00", "•", "1/11/2022"):
        assert clutter not in article.text
    assert all(not line.strip().isdigit() for line in article.text.split("\n"))


def test_seed_article_id_does_not_depend_on_its_folder(tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / SEED.name
    moved.parent.mkdir()
    shutil.copy(SEED, moved)
    assert load_one(moved).id == load_one(SEED).id


def test_scraped_english_page_loses_its_clutter() -> None:
    article = load_one(CASES / "scraped_english.txt")

    assert article.title == "Russia and US agree to keep talking after Geneva meeting"
    assert article.published == date(2022, 1, 10)
    assert article.lang == "en"
    paragraphs = article.text.split("\n\n")
    assert len(paragraphs) == 2
    assert paragraphs[0].startswith("GENEVA - Russian and American negotiators")
    assert paragraphs[1].endswith("would not expand further east.")
    for clutter in ("Views", "1234", "12:30", "Comments", "tags-list", "Share:", "print-button"):
        assert clutter not in article.text


@pytest.mark.parametrize(
    "line",
    [
        *("4", "• 0", "  • 00:00", "• 1/11/2022", "12:30", "---", "•"),
        *("news-picture", "tags_list", "Share:", "مشاركة :"),
        *("Views 1234", "Comments (3)", "مشاهدات 1,234"),
    ],
)
def test_page_clutter_lines(line: str) -> None:
    assert is_page_clutter(line)


@pytest.mark.parametrize(
    "line",
    [
        *("Moscow", "Geneva talks", "Home | World", "Reuters"),
        "اختتمت جولة جديدة من المحادثات الأمنية بين البلدين",
        "Ryabkov said the talks were difficult: long, and very professional",
    ],
)
def test_prose_lines_are_not_clutter(line: str) -> None:
    assert not is_page_clutter(line)


def test_clutter_between_paragraphs_is_kept() -> None:
    raw = "Title\n\n12:30\nFirst real paragraph about the talks.\n\n4\n\nSecond real paragraph here.\n0"
    article = parse_article_text(raw, source_name="page.txt")
    assert article.text == "First real paragraph about the talks.\n\n4\n\nSecond real paragraph here."


def test_scraped_page_without_body_is_an_error() -> None:
    with pytest.raises(ArticleParseError, match="no body text"):
        parse_article_text("Title\n\n• 1/11/2022\n• 00:00\nnews-picture\nShare:", source_name="p.txt")


def test_scraped_page_with_an_impossible_date_has_no_date() -> None:
    raw = "Title\n13/31/2022\nA paragraph long enough to be real text."
    article = parse_article_text(raw, source_name="p.txt")
    assert article.published is None


# --- front matter and markdown -----------------------------------------------------------------


def test_front_matter_txt_with_aliases() -> None:
    article = load_one(CASES / "front_matter.txt")

    assert article.title == "Sherman: Russian proposals on NATO are non-starters"
    assert article.url == "https://example.org/2022/01/10/sherman-briefing"
    assert article.published == date(2022, 1, 10)
    assert article.lang == "en"
    assert article.source == "Example Wire"
    assert article.source_name == "front_matter.txt"
    assert article.text.startswith("Deputy Secretary of State Wendy Sherman")
    assert article.text.endswith("open-door policy.")
    assert "---" not in article.text


def test_markdown_with_front_matter_is_stripped_lightly() -> None:
    article = load_one(CASES / "statement.md")

    assert article.title == "Ryabkov after the Geneva talks"
    assert article.published == date(2022, 1, 10)
    assert article.source == "Ministry briefing notes"
    assert article.text == (
        "What Ryabkov said\n\n"
        "Sergei Ryabkov described the talks as difficult, long, very professional and specific.\n"
        "He said Moscow had no intention of attacking Ukraine, as reported by TASS.\n"
        "The file name snake_case_name and 2*3*4 must stay as they are."
    )


def test_markdown_heading_is_the_title_without_front_matter() -> None:
    article = load_one(CASES / "nested" / "heading_title.md")

    assert article.title == "NATO–Russia Council meets in Brussels"
    assert article.text.startswith("The NATO-Russia Council met in Brussels")
    assert "#" not in article.text
    assert "**" not in article.text


def test_front_matter_title_wins_over_markdown_heading() -> None:
    raw = "---\ntitle: From front matter\n---\n# From heading\n\nA body paragraph that is long enough."
    article = parse_markdown(raw, source_name="x.md")
    assert article.title == "From front matter"
    assert article.text == "A body paragraph that is long enough."


@pytest.mark.parametrize(
    ("front_matter", "expected"),
    [
        ("date: 2022-01-10", date(2022, 1, 10)),
        ("date: 2022-01-10 18:30:00", date(2022, 1, 10)),
        ("published: '2022-01-10T18:30:00Z'", date(2022, 1, 10)),
        ("published: 2022-01-10 (stated in the text)", date(2022, 1, 10)),
        ("date: 1/11/2022", date(2022, 1, 11)),
        ("date:", None),
    ],
)
def test_front_matter_dates(front_matter: str, expected: date | None) -> None:
    raw = f"---\ntitle: T\n{front_matter}\n---\nA body paragraph that is long enough."
    assert parse_article_text(raw, source_name="x.txt").published == expected


def test_front_matter_language_is_validated_or_detected() -> None:
    arabic_body = "اختتمت جولة جديدة من المحادثات الأمنية بين الولايات المتحدة وروسيا"
    assert parse_article_text(f"---\nlang: ru\n---\n{arabic_body}", source_name="x.txt").lang == "ar"
    assert parse_article_text(f"---\nlanguage: AR\n---\n{arabic_body}", source_name="x.txt").lang == "ar"
    assert parse_article_text(f"---\nlang: en-US\n---\n{arabic_body}", source_name="x.txt").lang == "en"


def test_front_matter_without_title_takes_the_first_line() -> None:
    raw = "---\ndate: 2022-01-10\n---\nRussia and NATO meet in Brussels."
    article = parse_article_text(raw, source_name="x.txt")
    assert article.title == "Russia and NATO meet in Brussels."


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (
            "---\ntitle: ok\n  bad: indent: here\n---\nBody text long enough to be real.",
            r"^invalid YAML front matter: mapping values are not allowed here \(line 3, column 6\)$",
        ),
        ("---\ntitle: T\nBody text with no closing fence at all.", "no closing '---'"),
        ("---\n- a list\n---\nBody text long enough to be real.", "not a list of `key: value` lines"),
        ("---\ntitle: T\ndate: next Tuesday\n---\nBody text long enough to be real.", "unrecognised date"),
        ("---\ntitle: {a: 1}\n---\nBody text long enough to be real.", "'title' must be text"),
        ("---\ntitle: Only a title\n---\n", "no body text"),
    ],
)
def test_bad_front_matter(raw: str, reason: str) -> None:
    with pytest.raises(ArticleParseError, match=reason):
        parse_article_text(raw, source_name="x.txt")


# --- HTML ----------------------------------------------------------------------------------------


def test_html_page_body_and_metadata() -> None:
    article = load_one(CASES / "geneva.html")

    assert article.title == "US and Russia end Geneva talks without breakthrough"
    assert article.url == "https://worlddesk.example/2022/01/10/geneva-talks"
    assert article.published == date(2022, 1, 10)
    assert article.source == "World Desk"
    assert article.lang == "en"
    assert article.text.startswith("Senior American and Russian diplomats")
    assert article.text.endswith("very professional and specific.")
    assert len(article.text.split("\n\n")) == 3
    page_furniture = ["Home", "World Politics", "Subscribe", "Staff Reporter", "Share on", "Copy link"]
    page_furniture += ["Copyright", "Privacy"]
    assert [words for words in page_furniture if words in article.text] == []


def test_html_url_argument_wins_and_names_the_article() -> None:
    html = (CASES / "geneva.html").read_text(encoding="utf-8")
    fetched = "https://mirror.example/geneva"
    article = article_from_html(html, source_name=fetched, url=fetched)
    assert article.url == fetched
    assert article.id == article_from_record({"url": fetched, "text": article.text}, source_name="r").id


def test_html_title_falls_back_to_the_title_tag() -> None:
    html = (
        "<html><head><title>Talks in Geneva &amp; Brussels</title></head><body><article>"
        "<p>Russian and American diplomats met in Geneva on Monday for a long day of security talks.</p>"
        "<p>NATO and Russia met two days later in Brussels, and the OSCE in Vienna after that.</p>"
        "</article></body></html>"
    )
    assert article_from_html(html, source_name="p.html").title == "Talks in Geneva & Brussels"


def test_html_with_only_navigation_is_an_error() -> None:
    html = '<html><head><title>Nothing</title></head><body><nav><a href="/">Home</a></nav></body></html>'
    with pytest.raises(ArticleParseError):
        article_from_html(html, source_name="nav.html")


# --- JSON records ---------------------------------------------------------------------------------


def test_json_list_with_aliases() -> None:
    first, second = load_file(CASES / "records.json")

    assert first.source_name == "records.json#1"
    assert first.url == "https://example.org/2022/01/13/osce-vienna"
    assert first.published == date(2022, 1, 13)
    assert first.source == "Example Wire"
    assert first.text.startswith("The Organization for Security")
    assert second.source_name == "records.json#2"
    assert second.lang == "ar"
    assert second.title.startswith("لافروف")


def test_json_single_object(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text('{"title": "T", "body": "A single object record with enough text."}', encoding="utf-8")
    assert load_one(path).source_name == "one.json"


def test_jsonl_bad_lines_are_reported_and_the_rest_load() -> None:
    problems: list[str] = []
    articles = load_file(CASES / "records.jsonl", on_bad_record=problems.append)

    assert [article.source_name for article in articles] == [
        "records.jsonl#1",
        "records.jsonl#3",
    ]
    assert articles[0].published == date(2022, 1, 19)
    assert len(problems) == 2
    assert problems[0].startswith("line 4: invalid JSON")
    assert problems[1] == "line 5: no body text"


def test_jsonl_bad_line_raises_without_a_reporter() -> None:
    with pytest.raises(ArticleParseError, match="line 4: invalid JSON"):
        load_file(CASES / "records.jsonl")


def test_json_list_items_must_be_objects(tmp_path: Path) -> None:
    path = tmp_path / "mixed.json"
    records = '["not an object", {"title": "T", "text": "A record with enough text in it."}]'
    path.write_text(records, encoding="utf-8")
    problems: list[str] = []
    assert len(load_file(path, on_bad_record=problems.append)) == 1
    assert problems == ["record 1: expected a JSON object, got str"]


def test_record_must_have_title_or_text() -> None:
    with pytest.raises(ArticleParseError, match="no title and no text"):
        article_from_record({"url": "https://example.org/x"}, source_name="r.jsonl#1")


# --- encodings and unreadable files -----------------------------------------------------------------


def test_arabic_windows_1256_file_is_decoded() -> None:
    article = load_one(CASES / "arabic_cp1256.txt")
    assert article.title == "روسيا تطالب بضمانات أمنية ملزمة قانونيا"
    assert article.published == date(2022, 1, 12)
    assert article.lang == "ar"


def test_utf8_bom_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffTitle\n\nA paragraph long enough to be real text.".encode())
    assert load_one(path).title == "Title"


def test_latin1_text_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Café talks\n\nThe délégations met in Genève for many hours.".encode("latin-1"))
    with pytest.raises(ArticleParseError, match="not UTF-8 text"):
        load_file(path)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("bad_yaml.md", "invalid YAML front matter"),
        ("bad_json.json", "invalid JSON"),
        ("empty.txt", "empty file"),
        ("garbage.txt", "not UTF-8 text"),
        ("no_body.html", "no article text found|no body text"),
    ],
)
def test_malformed_files_raise_with_a_reason(name: str, reason: str) -> None:
    with pytest.raises(ArticleParseError, match=reason):
        load_file(CASES / name)


def test_valid_utf8_with_nul_bytes_is_binary(tmp_path: Path) -> None:
    path = tmp_path / "dump.txt"
    path.write_bytes(b"Title\n\nSome text\x00\x00\x01 that is really a binary dump.")
    with pytest.raises(ArticleParseError, match="binary data, not text"):
        load_file(path)


def test_whitespace_only_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "blank.txt"
    path.write_text(" \n\n\t\n", encoding="utf-8")
    with pytest.raises(ArticleParseError, match="empty file"):
        load_file(path)


def test_unreadable_path_is_a_parse_error(tmp_path: Path) -> None:
    folder_named_like_a_file = tmp_path / "folder.txt"
    folder_named_like_a_file.mkdir()
    with pytest.raises(ArticleParseError, match="cannot read file"):
        load_file(folder_named_like_a_file)


def test_unsupported_extension_is_a_parse_error() -> None:
    with pytest.raises(ArticleParseError, match=r"unsupported file type '\.csv'"):
        load_file(CASES / "notes.csv")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (date(2022, 1, 10), date(2022, 1, 10)),
        ("2022-01-10", date(2022, 1, 10)),
        ("2022-01-10T18:30:00+03:00", date(2022, 1, 10)),
        ("2022-01-10 (stated in the text)", date(2022, 1, 10)),
        ("1/11/2022", date(2022, 1, 11)),
        ("12/1/2022 evening", date(2022, 12, 1)),
    ],
)
def test_parse_date(value: object, expected: date | None) -> None:
    assert parse_date(value) == expected


@pytest.mark.parametrize("value", ["next Tuesday", "2022-02-30", 20220110, "11 January 2022"])
def test_parse_date_rejects_what_it_cannot_read(value: object) -> None:
    with pytest.raises(ArticleParseError, match="unrecognised date"):
        parse_date(value)


# --- the whole corpus ------------------------------------------------------------------------------------


def test_load_corpus_reports_bad_files_and_loads_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="corpus.loaders"):
        result = load_corpus([CASES])

    assert sorted(article.source_name for article in result.articles) == [
        "arabic_cp1256.txt",
        "front_matter.txt",
        "geneva.html",
        "heading_title.md",
        "records.json#1",
        "records.json#2",
        "records.jsonl#1",
        "scraped_english.txt",
        "statement.md",
    ]
    reported = [(Path(error.path).name, error.reason) for error in result.errors]
    expected = [
        ("bad_json.json", "invalid JSON: "),
        ("bad_yaml.md", "invalid YAML front matter: "),
        ("empty.txt", "empty file"),
        ("garbage.txt", "not UTF-8 text"),
        ("no_body.html", "no article text found in the HTML"),
        ("records.jsonl", "line 4: invalid JSON: "),
        ("records.jsonl", "line 5: no body text"),
        ("records.jsonl", f"records.jsonl#3: duplicate of {CASES / 'records.json'} (records.json#1)"),
    ]
    assert len(reported) == len(expected)
    for (name, reason), (expected_name, expected_start) in zip(reported, expected, strict=True):
        assert name == expected_name
        assert reason.startswith(expected_start)

    warnings = [record for record in caplog.records if record.name == "corpus.loaders"]
    assert [record.getMessage() for record in warnings] == [
        f"Skipped {error.path}: {error.reason}" for error in result.errors
    ]


def test_load_corpus_skips_hidden_files_readmes_and_unknown_types() -> None:
    result = load_corpus([CASES])
    seen = {Path(error.path).name for error in result.errors} | {a.source_name for a in result.articles}
    assert not seen & {".hidden.txt", "README.md", "notes.csv"}


def test_missing_folder_is_an_error_entry(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    result = load_corpus([missing, SEED.parent])

    assert [article.source_name for article in result.articles] == [SEED.name]
    assert [(error.path, error.reason) for error in result.errors] == [(str(missing), "folder not found")]


def test_duplicate_files_keep_the_first(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(SEED, tmp_path / folder / SEED.name)

    result = load_corpus([tmp_path / "a", tmp_path / "b"])

    assert len(result.articles) == 1
    assert [(error.path, error.reason) for error in result.errors] == [
        (str(tmp_path / "b" / SEED.name), f"duplicate of {tmp_path / 'a' / SEED.name}")
    ]


def test_files_load_in_sorted_order(tmp_path: Path) -> None:
    for name in ("b.txt", "a.txt", "sub/c.txt"):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"Title {name}\n\nA paragraph long enough to be real text.", encoding="utf-8")
    assert [a.source_name for a in load_corpus([tmp_path]).articles] == ["a.txt", "b.txt", "c.txt"]
