"""The HTTP client against the local fake web: redirects, conditional GET, retries, caps, encodings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_settings
from fake_web import FakeWeb, Route

from corpus.feeds import page_article, parse_feed
from corpus.fetch import (
    Fetcher,
    FetchTimeoutError,
    HTTPStatusFetchError,
    InvalidURLError,
    ResponseTooLargeError,
    TooManyRedirectsError,
)
from talks.settings import Settings


@pytest.fixture
def web() -> Iterator[FakeWeb]:
    with FakeWeb() as server:
        server.install_site()
        yield server


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path, [], fetch_timeout_s=0.5, fetch_retries=2, fetch_retry_wait_s=0.01,
        fetch_retry_max_wait_s=2.0, fetch_max_bytes=1_000_000, fetch_max_redirects=5,
    )


async def get(settings: Settings, url: str, **validators: str | None):
    async with Fetcher(settings) as fetcher:
        return await fetcher.get(url, **validators)


async def test_a_page_is_fetched_with_a_clear_user_agent(web: FakeWeb, settings: Settings) -> None:
    fetched = await get(settings, web.url("/pages/vienna-osce"))
    assert fetched.status == 200 and fetched.etag == '"vienna-1"'
    assert "OSCE talks in Vienna" in fetched.text()
    assert web.request_headers("/pages/vienna-osce")[0]["User-Agent"].startswith("talks-bot/")


async def test_a_redirect_chain_is_followed_to_the_final_url(web: FakeWeb, settings: Settings) -> None:
    fetched = await get(settings, web.url("/redirect/1"))
    assert fetched.url == web.url("/pages/vienna-osce")
    assert [web.hits(f"/redirect/{n}") for n in (1, 2, 3)] == [1, 1, 1]


async def test_too_many_redirects_and_a_redirect_loop_are_refused(web: FakeWeb, settings: Settings) -> None:
    with pytest.raises(TooManyRedirectsError, match="redirect loop"):
        await get(settings, web.url("/loop/a"))
    with pytest.raises(TooManyRedirectsError):
        await get(settings.model_copy(update={"fetch_max_redirects": 2}), web.url("/redirect/1"))
    assert web.hits("/loop/a") <= 4  # not retried


async def test_conditional_get_returns_304_on_the_second_poll(web: FakeWeb, settings: Settings) -> None:
    first = await get(settings, web.url("/feeds/rss.xml"))
    second = await get(settings, web.url("/feeds/rss.xml"), etag=first.etag)
    assert second.not_modified and second.content == b""
    assert web.request_headers("/feeds/rss.xml")[1]["If-None-Match"] == '"rss-1"'
    atom = await get(settings, web.url("/feeds/atom.xml"))
    assert (await get(settings, web.url("/feeds/atom.xml"), last_modified=atom.last_modified)).not_modified


async def test_500_then_200_is_retried(web: FakeWeb, settings: Settings) -> None:
    web.fail("/pages/vienna-osce", 500)
    fetched = await get(settings, web.url("/pages/vienna-osce"))
    assert fetched.status == 200 and web.hits("/pages/vienna-osce") == 2


async def test_a_server_that_keeps_failing_fails_after_the_retries(web: FakeWeb, settings: Settings) -> None:
    web.fail("/pages/vienna-osce", 503, times=10)
    with pytest.raises(HTTPStatusFetchError, match="HTTP 503") as caught:
        await get(settings, web.url("/pages/vienna-osce"))
    assert caught.value.status == 503
    assert web.hits("/pages/vienna-osce") == settings.fetch_retries + 1


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_4xx_is_not_retried(web: FakeWeb, settings: Settings, status: int) -> None:
    web.fail("/pages/vienna-osce", status, times=5)
    with pytest.raises(HTTPStatusFetchError, match=f"HTTP {status}"):
        await get(settings, web.url("/pages/vienna-osce"))
    assert web.hits("/pages/vienna-osce") == 1


async def test_429_waits_as_long_as_retry_after_says(web: FakeWeb, settings: Settings) -> None:
    web.fail("/pages/vienna-osce", 429, retry_after="1")
    started = time.monotonic()
    fetched = await get(settings, web.url("/pages/vienna-osce"))
    assert fetched.status == 200 and web.hits("/pages/vienna-osce") == 2
    assert time.monotonic() - started >= 0.95


async def test_a_429_that_outlasts_the_retries_carries_its_retry_after(web: FakeWeb, settings: Settings) -> None:
    web.fail("/pages/vienna-osce", 429, times=5, retry_after="3600")
    quick = settings.model_copy(update={"fetch_retry_max_wait_s": 0.01})
    with pytest.raises(HTTPStatusFetchError) as caught:
        await get(quick, web.url("/pages/vienna-osce"))
    assert caught.value.retry_after == 3600  # the source backs off this long


async def test_a_slow_response_times_out_after_the_retries(web: FakeWeb, settings: Settings) -> None:
    started = time.monotonic()
    with pytest.raises(FetchTimeoutError, match="timed out after 0.5s"):
        await get(settings, web.url("/slow"))
    assert web.hits("/slow") == settings.fetch_retries + 1
    assert time.monotonic() - started < 3.0  # not the 3 s the server would take


@pytest.mark.parametrize("path", ["/huge", "/huge-chunked"])
async def test_an_oversized_response_is_refused_without_reading_it(web: FakeWeb, settings: Settings, path: str) -> None:
    with pytest.raises(ResponseTooLargeError, match="1,000,000"):
        await get(settings, web.url(path))
    assert web.hits(path) == 1
    assert web.bytes_sent(path) < 50_000_000  # of the 500 MB the server would send


async def test_a_url_that_is_not_http_is_refused(settings: Settings) -> None:
    with pytest.raises(InvalidURLError):
        await get(settings, "ftp://example.org/feed.xml")


async def test_connections_per_host_are_bounded(web: FakeWeb, settings: Settings) -> None:
    web.route("/slowish", Route(body=b"<html><body>ok</body></html>", delay=1.0))
    # Each response takes 1 s of a 1.6 s timeout: waiting for a free slot (1 s more for the
    # second pair) must not count. The margins leave room for a busy machine.
    bounded = settings.model_copy(update={"fetch_connections_per_host": 2, "fetch_timeout_s": 1.6, "fetch_retries": 0})
    started = time.monotonic()
    async with Fetcher(bounded) as fetcher:
        await asyncio.gather(*(fetcher.get(web.url("/slowish")) for _ in range(4)))
    assert time.monotonic() - started >= 1.9  # two at a time: two rounds of 1 s


async def test_windows_1256_page_named_in_its_meta_tag_decodes(web: FakeWeb, settings: Settings) -> None:
    article = page_article(await get(settings, web.url("/ar/osce-vienna")))
    assert article.lang == "ar"
    assert article.title == "فيينا: منظمة الأمن والتعاون تختتم أسبوع المحادثات"
    assert "منظمة الأمن والتعاون في أوروبا" in article.text


async def test_iso_8859_6_page_named_in_the_header_decodes(web: FakeWeb, settings: Settings) -> None:
    article = page_article(await get(settings, web.url("/ar/nato-brussels")))
    assert article.title == "الناتو وروسيا في بروكسل: خلافات كبيرة"
    assert "ينس ستولتنبرغ" in article.text


async def test_page_clutter_is_removed(web: FakeWeb, settings: Settings) -> None:
    article = page_article(await get(settings, web.url("/news/nato-council")))
    assert article.title == "NATO-Russia Council meets for the first time since 2019"
    assert article.text.startswith("BRUSSELS — Representatives of the 30 NATO allies")
    assert "chooses its own alliances" in article.text
    for clutter in ("cookies", "Subscribe", "ADVERTISEMENT", "Share on", "Most read", "All rights reserved", "Sport"):
        assert clutter not in article.text


async def test_a_malformed_feed_yields_what_parses(web: FakeWeb, settings: Settings, caplog) -> None:
    feed = parse_feed(await get(settings, web.url("/feeds/malformed.xml")))
    assert [entry.url for entry in feed.entries] == [web.url("/wire/site-b/story-ryabkov"), web.url("/ar/nato-brussels")]
    assert feed.problem and "not well-formed" in feed.problem
    assert "malformed feed" in caplog.text
