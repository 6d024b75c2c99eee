"""Sources end to end: the local fake web -> corpus store -> real e5 model and Chroma index.

One `TalksService` (the model loads once) serves the module; each test has its own data dir,
and every `index()` call brings the shared index in line with that test's corpus.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import make_settings
from fake_web import FakeWeb

from corpus.feeds import SourceFormatError
from corpus.ingest import add_source, fetch_all, ingest_url, list_sources, remove_source
from corpus.loaders import load_corpus
from corpus.sources import SourceExistsError, SourcesFile
from corpus.text import stable_article_id
from retrieval.service import TalksService
from talks.settings import PROJECT_ROOT, Settings

INCLUDE = ["Geneva", "NATO", "Ryabkov", "جنيف", "الناتو"]


@pytest.fixture(scope="module")
def service(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TalksService:
    data = tmp_path_factory.mktemp("sources-index")
    (data / "no-corpus").mkdir()
    return TalksService(make_settings(data, [data / "no-corpus"]))


@pytest.fixture
def web() -> Iterator[FakeWeb]:
    with FakeWeb() as server:
        server.install_site()
        yield server


@pytest.fixture
def settings(tmp_path: Path, model_dir: Path) -> Settings:
    """The test's own data dir (sources file, corpus store), an empty corpus folder, quick retries."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    return make_settings(
        tmp_path, [corpus], fetch_timeout_s=0.5, fetch_retries=1, fetch_retry_wait_s=0.01, fetch_retry_max_wait_s=0.05
    )


def article_id(web: FakeWeb, path: str) -> str:
    url = web.url(path)
    return stable_article_id(url, url)


async def add_site_sources(settings: Settings, web: FakeWeb) -> None:
    await add_source(settings, web.url("/feeds/rss.xml"), include=INCLUDE)
    await add_source(settings, web.url("/feeds/atom.xml"), lang="ar")
    await add_source(settings, web.url("/feeds/malformed.xml"), name="Broken")
    await add_source(settings, web.url("/sitemap_index.xml"), include=[*INCLUDE, "OSCE"])
    await add_source(settings, web.url("/ar/osce-vienna"))


async def test_a_poll_stores_filters_dedupes_and_indexes(settings: Settings, web: FakeWeb, service: TalksService) -> None:
    await add_site_sources(settings, web)
    report = await fetch_all(settings, service=service)

    expected = {
        "/news/geneva-talks-end",  # full text in the feed; the link's utm_* and trailing slash dropped
        "/news/nato-council",  # summary only: the page was fetched, its clutter removed
        "/wire/site-a/ryabkov-warning",
        "/ar/geneva-talks",
        "/ar/osce-vienna",  # Windows-1256
        "/ar/nato-brussels",  # ISO-8859-6, from the malformed feed
        "/pages/vienna-osce",  # from the sitemap index
    }
    assert set(report.new_article_ids) == {article_id(web, path) for path in expected}
    assert report.updated_article_ids == [] and report.failed == []
    by_url = {source.url: source for source in report.sources}
    rss = by_url[web.url("/feeds/rss.xml")]
    assert (len(rss.new_article_ids), rss.filtered) == (3, 1)  # the wheat prices
    broken = by_url[web.url("/feeds/malformed.xml")]
    assert broken.duplicates == 1 and "malformed feed" in broken.problems[0]  # site B's copy of the wire story
    assert report.summary == "5 sources polled, 7 new articles, 0 updated"

    stored = load_corpus([settings.fetched_dir])
    assert stored.errors == [] and {a.id for a in stored.articles} == set(report.new_article_ids)
    record = json.loads((settings.fetched_dir / f"{article_id(web, '/news/nato-council')}.json").read_text("utf-8"))
    assert record["url"] == web.url("/news/nato-council") and record["date"] == "2022-01-12"
    assert record["origin"] == web.url("/feeds/rss.xml") and len(record["content_hash"]) == 64
    assert datetime.fromisoformat(record["fetched_at"]).tzinfo is not None
    arabic = next(a for a in stored.articles if a.url == web.url("/ar/osce-vienna"))
    assert arabic.lang == "ar" and "منظمة الأمن والتعاون في أوروبا" in arabic.text

    indexed = {info.id: info for info in service.articles()}
    assert set(report.new_article_ids) <= set(indexed)
    assert report.index is not None and set(report.index.new_article_ids) == set(report.new_article_ids)
    answer = service.ask("What did Stoltenberg say after the NATO-Russia Council meeting in Brussels?")
    assert answer.answered
    assert web.url("/news/nato-council") in {citation.url for citation in answer.citations}

    counts = {source.url: source.state.articles for source in list_sources(settings)}
    assert counts[web.url("/feeds/rss.xml")] == 3 and counts[web.url("/feeds/atom.xml")] == 2


async def test_polling_again_adds_nothing_and_fetches_only_the_feeds(
    settings: Settings, web: FakeWeb, service: TalksService
) -> None:
    await add_site_sources(settings, web)
    first = await fetch_all(settings, service=service)
    page_hits = web.hits("/news/nato-council")

    second = await fetch_all(settings, service=service)
    assert second.new_article_ids == [] and second.updated_article_ids == [] and second.index is None
    statuses = {source.url: source.status for source in second.sources}
    assert statuses[web.url("/feeds/rss.xml")] == "not_modified"  # ETag
    assert statuses[web.url("/feeds/atom.xml")] == "not_modified"  # Last-Modified
    assert web.request_headers("/feeds/rss.xml")[-1]["If-None-Match"] == '"rss-1"'
    assert web.hits("/news/nato-council") == page_hits  # a seen link is not fetched again
    assert len(first.new_article_ids) == len(list(settings.fetched_dir.glob("[!.]*.json")))


async def test_a_failing_source_backs_off_without_stopping_the_others(
    settings: Settings, web: FakeWeb, service: TalksService
) -> None:
    await add_source(settings, web.url("/feeds/rss.xml"), include=INCLUDE)
    await add_source(settings, web.url("/pages/vienna-osce"))
    web.fail("/pages/vienna-osce", 500, times=100)

    report = await fetch_all(settings, service=service)
    assert len(report.new_article_ids) == 3
    [failure] = report.failed
    assert failure.url == web.url("/pages/vienna-osce") and "HTTP 500" in failure.error
    assert web.hits("/pages/vienna-osce") == settings.fetch_retries + 2  # the add, then 1 + retries

    now = datetime.now(UTC)
    source = SourcesFile(settings.sources_path).find(web.url("/pages/vienna-osce"))
    assert source.state.failures == 1 and source.backing_off(now)
    assert "FAILING (1×): HTTP 500" in source.describe(now)

    hits = web.hits("/pages/vienna-osce")
    skipped = await fetch_all(settings, service=service)
    assert {s.url: s.status for s in skipped.sources}[web.url("/pages/vienna-osce")] == "skipped"
    assert web.hits("/pages/vienna-osce") == hits

    forced = await fetch_all(settings, service=service, force=True)
    assert len(forced.failed) == 1
    source = SourcesFile(settings.sources_path).find(web.url("/pages/vienna-osce"))
    assert source.state.failures == 2 and (source.state.backoff_until - source.state.last_fetch).total_seconds() == 2 * 3600


async def test_due_only_polls_sources_whose_interval_has_passed(
    settings: Settings, web: FakeWeb, service: TalksService
) -> None:
    await add_source(settings, web.url("/feeds/atom.xml"), interval_minutes=30)
    assert len((await fetch_all(settings, service=service, due_only=True)).new_article_ids) == 2
    report = await fetch_all(settings, service=service, due_only=True)
    assert [(s.status, s.error) for s in report.sources] == [("skipped", "not due yet")]
    assert web.hits("/feeds/atom.xml") == 2  # the add and the first poll


async def test_an_updated_article_replaces_its_old_version_and_chunks(
    settings: Settings, web: FakeWeb, service: TalksService
) -> None:
    await add_source(settings, web.url("/pages/vienna-osce"))
    first = await fetch_all(settings, service=service)
    [vienna] = first.new_article_ids

    html = (web.url("/pages/vienna-osce"), (Path(__file__).parent / "data/web/vienna_osce.html").read_text("utf-8"))
    web.page(
        "/pages/vienna-osce",
        html[1].replace("</article>", "<p>UPDATE: Lavrov said on Friday that Moscow would wait for written answers.</p></article>"),
        etag='"vienna-2"',
    )
    second = await fetch_all(settings, service=service)
    assert second.new_article_ids == [] and second.updated_article_ids == [vienna]
    assert second.index is not None and second.index.articles_updated == 1
    [stored] = load_corpus([settings.fetched_dir]).articles
    assert "UPDATE: Lavrov" in stored.text
    chunks = [chunk.text for chunk in service.store.all_chunks() if chunk.article_id == vienna]
    assert any("UPDATE: Lavrov" in text for text in chunks)
    assert len(list(settings.fetched_dir.glob("[!.]*.json"))) == 1


async def test_ingest_one_url_now(settings: Settings, web: FakeWeb, service: TalksService) -> None:
    report = await ingest_url(settings, web.url("/redirect/1"), service=service)
    assert report.status == "new" and report.url == web.url("/pages/vienna-osce")
    assert report.new_article_ids == [article_id(web, "/pages/vienna-osce")]
    assert report.new_article_ids[0] in {info.id for info in service.articles()}

    again = await ingest_url(settings, web.url("/pages/vienna-osce?utm_source=share"), service=service)
    assert again.status == "unchanged" and again.index is None and "already in the corpus" in again.summary

    await ingest_url(settings, web.url("/wire/site-a/ryabkov-warning"), service=service)
    copy = await ingest_url(settings, web.url("/wire/site-b/story-ryabkov"), service=service)
    assert copy.status == "duplicate" and "near-duplicate" in copy.reason and copy.new_article_ids == []

    with pytest.raises(SourceFormatError, match="is a feed"):
        await ingest_url(settings, web.url("/feeds/rss.xml"), service=service)


async def test_adding_and_removing_sources(settings: Settings, web: FakeWeb) -> None:
    added = await add_source(settings, web.url("/feeds/rss.xml"), include=["Geneva, NATO"])
    assert added.summary == "added feed source 'Wire World News': feed with 4 entries"
    with pytest.raises(SourceExistsError):
        await add_source(settings, web.url("/feeds/rss.xml/"))
    page = await add_source(settings, web.url("/news/nato-council"))
    assert page.source.kind == "page" and page.source.name == "Wire World News"
    assert remove_source(settings, web.url("/feeds/rss.xml")).name == "Wire World News"
    assert [source.url for source in list_sources(settings)] == [web.url("/news/nato-council")]


@pytest.mark.e2e
def test_talks_fetch_and_sources_commands(tmp_path: Path, web: FakeWeb, model_dir: Path) -> None:
    env = os.environ | {
        "TALKS_DATA_DIR": str(tmp_path),
        "TALKS_CORPUS_DIR": str(PROJECT_ROOT / "corpus" / "articles"),
        "TALKS_EMBEDDING_MODEL": str(model_dir),
        "TALKS_FETCH_TIMEOUT": "0.5",
        "TALKS_FETCH_RETRIES": "1",
        "TALKS_FETCH_RETRY_WAIT": "0.01",
        "TRANSFORMERS_VERBOSITY": "error",
    }

    def talks(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "talks.cli", *args], check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
        )

    added = talks("sources", "add", web.url("/feeds/rss.xml"), "--include", "Geneva,NATO", "--include", "Ryabkov")
    assert added.returncode == 0, added.stderr
    assert "added feed source 'Wire World News'" in added.stdout
    assert talks("sources", "add", web.url("/feeds/atom.xml"), "--name", "Arabic feed").returncode == 0
    assert talks("sources", "add", web.url("/feeds/atom.xml")).returncode == 2  # already a source
    failing = talks("sources", "add", web.url("/nothing-here"))
    assert failing.returncode == 2 and "HTTP 404" in failing.stderr
    web.page("/feeds/down.xml", (Path(__file__).parent / "data/web/rss.xml").read_text("utf-8"))
    assert talks("sources", "add", web.url("/feeds/down.xml"), "--name", "Down").returncode == 0
    web.fail("/feeds/down.xml", 503, times=100)

    fetched = talks("fetch")
    assert fetched.returncode == 1, fetched.stderr  # one source failed; the others went in
    assert "Wire World News: 3 new" in fetched.stdout and "Arabic feed: 2 new" in fetched.stdout
    assert "Down: failed (HTTP 503" in fetched.stdout
    assert "3 sources polled, 1 failed, 5 new articles, 0 updated" in fetched.stdout

    listed = talks("sources", "list").stdout
    assert "Down [feed]" in listed and "FAILING (1×): HTTP 503" in listed and "backing off until" in listed
    assert "Wire World News [feed]" in listed and "ok, 3 new — 3 articles — include: Geneva, NATO, Ryabkov" in listed

    again = talks("fetch")
    assert "Down: skipped (backing off" in again.stdout and "0 new articles" in again.stdout
    assert talks("sources", "remove", web.url("/feeds/down.xml")).returncode == 0
    assert "Down" not in talks("sources", "list").stdout
    stored = load_corpus([tmp_path / "fetched"])
    assert len(stored.articles) == 5 and stored.errors == []
    copy = talks("ingest", web.url("/wire/site-b/story-ryabkov"))  # site A's story came with the feed
    assert copy.returncode == 0 and copy.stdout.startswith("not added, near-duplicate"), copy.stderr
