"""Pure parts of the source fetching: URLs, keyword filters, decoding, state, the sources file, dedup."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from corpus.dedup import Deduplicator
from corpus.feeds import FULL_TEXT_MIN_CHARS, FeedEntry, SourceFormatError, detect_kind, entry_article, parse_sitemap
from corpus.fetch import Fetched, decode_body, parse_retry_after
from corpus.models import Article
from corpus.sources import (
    Source,
    SourceExistsError,
    SourcesFile,
    SourcesFileError,
    SourceState,
    UnknownSourceError,
    failed,
    keyword_verdict,
    succeeded,
)
from corpus.text import canonical_url, stable_article_id

NOW = datetime(2022, 1, 14, 12, 0, tzinfo=UTC)
WEB_DATA = Path(__file__).parent / "data" / "web"

# --- canonical URLs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        "https://example.org/news/geneva",
        "HTTPS://Example.ORG/news/geneva",
        "https://example.org/news/geneva/",
        "https://example.org/news/geneva#comments",
        "https://example.org:443/news/geneva",
        "https://example.org/news/geneva?utm_source=rss&utm_medium=feed",
        "https://example.org/news/geneva?fbclid=abc&gclid=1",
        " https://example.org/news/geneva/?utm_campaign=x#top ",
    ],
)
def test_url_variants_of_one_page_are_one_canonical_url(variant: str) -> None:
    assert canonical_url(variant) == "https://example.org/news/geneva"


def test_canonical_url_keeps_what_identifies_the_page() -> None:
    assert canonical_url("https://example.org/news?id=3&utm_source=x&page=2") == "https://example.org/news?id=3&page=2"
    assert canonical_url("http://example.org:8080/a/") == "http://example.org:8080/a"
    assert canonical_url("https://example.org") == canonical_url("https://example.org/") == "https://example.org/"
    assert canonical_url("https://example.org/News/Geneva") != canonical_url("https://example.org/news/geneva")


def test_article_ids_follow_the_canonical_url() -> None:
    assert stable_article_id("https://example.org/a/?utm_source=feed", "x") == stable_article_id("https://example.org/a", "y")


# --- keyword filters ------------------------------------------------------------------------

INCLUDE = ["Geneva", "NATO", "Ryabkov", "جنيف", "الناتو"]


@pytest.mark.parametrize(
    "text",
    [
        "Talks in GENEVA ended on Monday.",
        "NATO's door stays open.",
        "Ryabkov said the talks were difficult.",
        "عقدت المحادثات في جنيف يوم الاثنين",
        "وقال الأمين العام لحلف الناتو",
        "اجتماع مجلس للناتو",  # ل + ل: the article folded into the preposition
        "وبجنيف انتهت المحادثات",  # و + ب before the name
        "قال الامين العام للناتّو",  # a diacritic does not hide the word
    ],
)
def test_include_keywords_match_whole_words_in_both_languages(text: str) -> None:
    assert keyword_verdict(text, include=INCLUDE, exclude=[]) is None


@pytest.mark.parametrize("text", ["The senator spoke about wheat.", "Genevan watches are expensive.", "أسعار القمح ترتفع"])
def test_articles_naming_no_include_keyword_are_filtered(text: str) -> None:
    assert keyword_verdict(text, include=INCLUDE, exclude=[]) == "mentions none of the include keywords"


def test_exclude_keywords_win_and_no_include_keeps_everything() -> None:
    assert keyword_verdict("Geneva football final", include=INCLUDE, exclude=["football"]) is not None
    assert keyword_verdict("Wheat prices", include=[], exclude=[]) is None


def test_blank_keywords_are_dropped_from_a_source() -> None:
    source = Source(url="https://example.org/feed", kind="feed", include=[" Geneva ", "", "  "])
    assert source.include == ["Geneva"]


# --- decoding ---------------------------------------------------------------------------------

ARABIC = "محادثات جنيف بين الولايات المتحدة وروسيا حول الضمانات الأمنية"


@pytest.mark.parametrize("encoding", ["cp1256", "iso-8859-6"])
def test_arabic_bodies_decode_from_the_header_charset(encoding: str) -> None:
    assert decode_body(ARABIC.encode(encoding), encoding) == ARABIC


def test_arabic_body_decodes_from_its_meta_charset() -> None:
    html = f'<html><head><meta charset="windows-1256"></head><body>{ARABIC}</body></html>'
    assert ARABIC in decode_body(html.encode("cp1256"))


def test_feed_decodes_from_its_xml_declaration() -> None:
    xml = f'<?xml version="1.0" encoding="ISO-8859-6"?><rss><channel><title>{ARABIC}</title></channel></rss>'
    assert ARABIC in decode_body(xml.encode("iso-8859-6"))


def test_undeclared_arabic_is_detected() -> None:
    body = ("<p>" + ARABIC + "، وقال المتحدث إن المحادثات كانت صعبة وطويلة ومهنية.</p>") * 5
    assert ARABIC in decode_body(body.encode("cp1256"))


def test_utf8_and_bom_win_and_a_wrong_charset_label_is_ignored() -> None:
    assert decode_body(ARABIC.encode("utf-8-sig"), "iso-8859-6") == ARABIC
    assert decode_body(ARABIC.encode("utf-8"), "no-such-charset") == ARABIC


# --- Retry-After ----------------------------------------------------------------------------------


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Fri, 14 Jan 2022 12:01:00 GMT", now=NOW) == 60.0
    assert parse_retry_after("Fri, 14 Jan 2022 11:00:00 GMT", now=NOW) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --- source state -----------------------------------------------------------------------------------


def test_failures_back_off_exponentially_up_to_the_cap() -> None:
    state = SourceState()
    delays = []
    for _ in range(6):
        state = failed(state, NOW, error="HTTP 500", interval=timedelta(minutes=60), max_backoff=timedelta(hours=8))
        delays.append(state.backoff_until - NOW)
    assert delays == [timedelta(hours=h) for h in (1, 2, 4, 8, 8, 8)]
    assert state.failures == 6 and state.last_status == "failed" and state.last_error == "HTTP 500"


def test_retry_after_lengthens_the_backoff_and_success_resets_it() -> None:
    state = failed(
        SourceState(etag='"a"'), NOW, error="HTTP 429", interval=timedelta(minutes=1),
        max_backoff=timedelta(hours=1), retry_after=600,
    )
    assert state.backoff_until == NOW + timedelta(minutes=10)
    state = succeeded(state, NOW, modified=True, new=3, last_modified="Fri, 14 Jan 2022 12:00:00 GMT")
    assert (state.failures, state.backoff_until, state.last_status, state.articles) == (0, None, "ok", 3)
    assert state.etag == '"a"'  # kept: the response sent no new ETag


def test_a_source_is_due_after_its_interval_unless_backing_off() -> None:
    source = Source(url="https://example.org/feed", kind="feed", interval_minutes=30)
    assert source.is_due(NOW, 60)
    source.state = succeeded(source.state, NOW, modified=True)
    assert not source.is_due(NOW + timedelta(minutes=29), 60)
    assert source.is_due(NOW + timedelta(minutes=30), 60)
    source.state = failed(source.state, NOW, error="x", interval=timedelta(minutes=30), max_backoff=timedelta(hours=1))
    assert not source.is_due(NOW + timedelta(minutes=29), 60)
    assert "FAILING (1×): x" in source.describe(NOW)
    assert "backing off until 2022-01-14 12:30 UTC" in source.describe(NOW)


# --- the sources file ---------------------------------------------------------------------------------


def test_sources_file_round_trips_and_keeps_arabic_readable(tmp_path: Path) -> None:
    file = SourcesFile(tmp_path / "sources.yaml")
    assert file.load() == []
    file.add(Source(url="https://example.org/feed", kind="feed", name="مثال", include=["جنيف"], lang="ar"))
    file.add(Source(url="https://example.org/page", kind="page"))
    assert [s.url for s in file.load()] == ["https://example.org/feed", "https://example.org/page"]
    assert "جنيف" in (tmp_path / "sources.yaml").read_text(encoding="utf-8")
    assert file.find("HTTPS://EXAMPLE.ORG/feed/").name == "مثال"


def test_adding_a_source_twice_or_removing_an_unknown_one_says_so(tmp_path: Path) -> None:
    file = SourcesFile(tmp_path / "sources.yaml")
    file.add(Source(url="https://example.org/feed", kind="feed"))
    with pytest.raises(SourceExistsError):
        file.add(Source(url="https://example.org/feed/?utm_source=x", kind="feed"))
    with pytest.raises(UnknownSourceError, match="no source with the URL"):
        file.remove("https://example.org/other")
    assert file.remove("https://example.org/feed/").url == "https://example.org/feed"
    assert file.load() == []


def test_state_updates_apply_to_the_file_as_it_is_now(tmp_path: Path) -> None:
    file = SourcesFile(tmp_path / "sources.yaml")
    file.add(Source(url="https://example.org/a", kind="feed"))
    file.add(Source(url="https://example.org/b", kind="feed"))  # added while a poll of /a runs
    file.update_state("https://example.org/a", lambda state: succeeded(state, NOW, modified=True, new=2))
    file.update_state("https://example.org/a", lambda state: succeeded(state, NOW, modified=True, new=1))
    file.update_state("https://example.org/gone", lambda state: succeeded(state, NOW, modified=True, new=5))
    sources = {s.url: s for s in file.load()}
    assert set(sources) == {"https://example.org/a", "https://example.org/b"}
    assert sources["https://example.org/a"].state.articles == 3


def test_a_broken_sources_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text("sources:\n  - url: https://example.org/feed\n    kind: podcast\n", encoding="utf-8")
    with pytest.raises(SourcesFileError, match="not a valid sources file"):
        SourcesFile(path).load()
    path.write_text("sources: [unclosed\n", encoding="utf-8")
    with pytest.raises(SourcesFileError, match="cannot read"):
        SourcesFile(path).load()


# --- dedup ----------------------------------------------------------------------------------------------

STORY = (
    "MOSCOW — Russia's deputy foreign minister Sergei Ryabkov said on Thursday that Moscow saw no reason to hold "
    "a new round of talks with the United States in the coming days if its demands for security guarantees were "
    "not taken seriously. He said the talks had shown a lack of readiness in Washington and among NATO allies to "
    "accept Russia's key proposals on the non-expansion of the alliance. He said Russia would not allow its "
    "security to be undermined and would take military and technical measures if necessary."
)


def article(url: str, text: str, title: str = "Ryabkov warns") -> Article:
    return Article(id=stable_article_id(url, url), source_name=url, title=title, url=url, lang="en", text=text)


def test_new_unchanged_and_updated_by_url() -> None:
    first = article("https://a.example/story", STORY)
    dedup = Deduplicator([first], threshold=0.8)
    assert dedup.check(article("https://a.example/story/?utm_source=x", STORY)).kind == "unchanged"
    rewritten = article("https://a.example/story", "Completely rewritten: the Geneva talks ended without agreement.")
    assert dedup.check(rewritten).kind == "updated"
    assert dedup.check(article("https://a.example/other", "Wheat prices climbed on Wednesday.")).kind == "new"


def test_same_text_elsewhere_is_a_duplicate_even_with_other_spacing() -> None:
    dedup = Deduplicator([article("https://a.example/story", STORY)], threshold=0.8)
    verdict = dedup.check(article("https://b.example/copy", "  " + STORY.replace(". ", ".\n\n"), title="Other title"))
    assert (verdict.kind, verdict.of) == ("duplicate", stable_article_id("https://a.example/story", ""))
    assert "same text" in verdict.reason


def test_the_same_wire_story_lightly_edited_is_a_near_duplicate() -> None:
    dedup = Deduplicator([article("https://a.example/story", STORY)], threshold=0.8)
    edited = STORY.replace("MOSCOW —", "MOSCOW (Wire) —").replace("if necessary", "if it had to")
    verdict = dedup.check(article("https://b.example/story", edited))
    assert verdict.kind == "duplicate" and "near-duplicate" in verdict.reason
    different = "The OSCE met in Vienna on Thursday to close a week of talks. " * 5
    assert dedup.check(article("https://b.example/vienna", different)).kind == "new"


def test_an_updated_article_replaces_its_old_version() -> None:
    old = article("https://a.example/story", STORY)
    dedup = Deduplicator([old], threshold=0.8)
    new_text = "Updated: " + STORY.replace("Thursday", "Friday")
    dedup.add(article("https://a.example/story", new_text))
    assert dedup.check(article("https://b.example/old-copy", "Entirely different text about wheat and corn prices.")).kind == "new"
    assert dedup.check(article("https://a.example/story", new_text)).kind == "unchanged"


def test_articles_of_the_corpus_folders_are_never_replaced() -> None:
    bundled = article("https://a.example/story", STORY)
    dedup = Deduplicator([], [bundled], threshold=0.8)
    verdict = dedup.check(article("https://a.example/story", STORY + " Updated."))
    assert verdict.kind == "duplicate" and "corpus folders" in verdict.reason


# --- reading feeds, sitemaps and pages -------------------------------------------------------------------


def fetched(content: bytes, content_type: str = "", url: str = "http://web.test/x") -> Fetched:
    return Fetched(url=url, status=200, content=content, content_type=content_type, charset=None, etag=None, last_modified=None)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("rss.xml", "feed"), ("atom.xml", "feed"), ("malformed.xml", "feed"), ("sitemap.xml", "sitemap"),
     ("sitemap_index.xml", "sitemap"), ("vienna_osce.html", "page"), ("osce_ar_cp1256.html", "page")],
)
def test_kind_is_detected_from_the_document(name: str, kind: str) -> None:
    assert detect_kind(fetched((WEB_DATA / name).read_bytes())) == kind


def test_something_else_is_refused() -> None:
    with pytest.raises(SourceFormatError, match="not an RSS/Atom feed"):
        detect_kind(fetched(b"%PDF-1.7 ...", "application/pdf"))


def test_sitemap_pages_come_newest_first() -> None:
    sitemap = parse_sitemap(fetched((WEB_DATA / "sitemap.xml").read_bytes()))
    assert [(p.url, p.lastmod) for p in sitemap.pages] == [
        ("{base}/pages/vienna-osce", "2022-01-13"), ("{base}/news/nato-council", "2022-01-12")
    ]
    with pytest.raises(SourceFormatError):
        parse_sitemap(fetched(b""))


def test_feed_entry_with_full_text_is_an_article_and_a_summary_is_not() -> None:
    paragraph = "<p>Sherman said the United States was open to talks on missile deployments in Europe.</p>"
    full = FeedEntry("http://web.test/a", "Geneva talks", date(2022, 1, 10), None, paragraph * 8)
    assert len(full.content_html) >= FULL_TEXT_MIN_CHARS
    found = entry_article(full)
    assert found is not None and found.published == date(2022, 1, 10) and "missile" in found.text
    assert entry_article(FeedEntry("http://web.test/b", "Geneva talks", None, None, "<p>Short summary.</p>")) is None
