"""Sources in the bot, end to end: the real `talks bot` process against the fake Telegram Bot API
and the fake web. Admins add, list and remove sources and ingest single articles from Telegram;
the bot's scheduled poll brings new articles into answers and subscribers' digests, without a
restart; `talks fetch` / `talks ingest` queue their new articles' digests for the bot too.

One bot process serves the module, so the tests run in file order and build on each other.
"""

from __future__ import annotations

import shutil
import sqlite3
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

import pytest
from bot_process import (
    JSON,
    BotProcess,
    bot_env,
    command,
    digests_of,
    first_text,
    say,
)
from conftest import make_settings
from fake_telegram import FakeTelegram
from fake_web import FakeWeb

from corpus.sources import Source, SourcesFile
from talks.cli import cmd_fetch, cmd_ingest
from talks.settings import BUNDLED_CORPUS_DIR

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ADMIN_ID = 42
FEED = "/feeds/rss.xml"
QUIET_FEED = "/feeds/quiet.xml"  # a feed with no items, that starts failing once added
GENEVA_TITLE = "Geneva talks end without breakthrough"
VIENNA_TITLE = "OSCE talks in Vienna close a week of diplomacy"
REFUSED = "Sorry, I can't do that."
POLL_MINUTES = "0.05"  # the scheduled poll every 3 s, and every source due again after 3 s
EMPTY_FEED = (
    '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Quiet Wire</title>'
    "<link>{base}/</link><description>Nothing yet</description></channel></rss>"
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture(scope="module")
def web() -> Iterator[FakeWeb]:
    with FakeWeb() as server:
        server.install_site()
        server.page(QUIET_FEED, EMPTY_FEED, content_type="application/rss+xml")
        yield server


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled corpus only (one Arabic article): everything the feed brings is new."""
    root = tmp_path_factory.mktemp("bot_sources")
    shutil.copytree(BUNDLED_CORPUS_DIR, root / "corpus")
    return root


@pytest.fixture(scope="module")
def bot(
    fake: FakeTelegram, web: FakeWeb, workdir: Path, model_dir: Path
) -> Iterator[BotProcess]:
    env = bot_env(
        fake,
        workdir / "data",
        workdir / "corpus",
        model_dir,
        TALKS_ADMIN_IDS=str(ADMIN_ID),
        TALKS_POLL_CHECK_MINUTES=POLL_MINUTES,
        TALKS_POLL_INTERVAL_MINUTES=POLL_MINUTES,
        TALKS_FETCH_TIMEOUT="2",
        TALKS_FETCH_RETRIES="1",
        TALKS_FETCH_RETRY_WAIT="0.01",
        TALKS_FETCH_RETRY_MAX_WAIT="0.05",
    )
    process = BotProcess(fake, env, workdir)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def users(fake: FakeTelegram) -> dict[str, JSON]:
    return {
        "alice": fake.user(1001, "Alice", language_code="en"),
        "bob": fake.user(1002, "Bob", language_code="en"),
        "admin": fake.user(ADMIN_ID, "Admin", language_code="en"),
    }


def finished(fake: FakeTelegram, started: JSON, contains: str) -> JSON:
    """The admin's "⏳ …" message once edited to its result (it must contain `contains`)."""
    done = fake.wait_for_message(
        ADMIN_ID, after=started["message_id"] - 1, contains=contains, timeout=120
    )
    assert done["message_id"] == started["message_id"]  # the same message, edited
    return done


def test_sources_commands_are_for_admins_only(
    bot: BotProcess, fake: FakeTelegram, web: FakeWeb, users: dict[str, JSON]
) -> None:
    alice, admin = users["alice"], users["admin"]
    for name, args in [
        ("addsource", web.url(FEED)),
        ("removesource", web.url(FEED)),
        ("listsources", ""),
        ("ingest", web.url("/pages/vienna-osce")),
        ("fetch", ""),
    ]:
        assert command(fake, alice, name, args)["text"] == REFUSED, name
    bot.wait_for_log("refused /addsource from non-admin user 1001")
    assert "Admin commands" not in command(fake, alice, "help")["text"]
    assert "/addsource URL [name]" in command(fake, admin, "help")["text"]
    assert "No sources yet" in command(fake, admin, "listsources")["text"]
    assert "Usage: /addsource URL [name]" in command(fake, admin, "addsource")["text"]
    assert "as soon as" in command(fake, alice, "subscribe")["text"]


def test_a_feed_added_in_telegram_is_polled_into_answers_and_digests(
    bot: BotProcess, fake: FakeTelegram, web: FakeWeb, users: dict[str, JSON]
) -> None:
    alice, bob = users["alice"], users["bob"]
    started = command(fake, users["admin"], "addsource", web.url(FEED))
    assert "Checking" in first_text(fake, started)
    added = finished(fake, started, "added feed source")
    assert "'Wire World News': feed with 4 entries" in added["text"]

    digest = fake.wait_for_message(alice["id"], contains=GENEVA_TITLE, timeout=120)
    assert "New articles" in digest["text"] and "Ryabkov warns" in digest["text"]
    bot.wait_for_log("scheduled poll: 1 sources polled, 4 new articles")
    answer = say(fake, bob, "What did Sherman tell reporters after the Geneva talks?")
    assert "[1]" in answer["text"] and "Sherman" in answer["text"]
    assert web.url("/news/geneva-talks-end") in {
        entity.get("url") for entity in answer["entities"]
    }
    assert "I know 5 articles" in command(fake, bob, "start")["text"]

    polls = web.hits(FEED)  # the feed is polled again (and answers 304): nothing is sent twice
    fake.wait_for(lambda: web.hits(FEED) >= polls + 2, 60)
    assert digests_of(fake, alice, GENEVA_TITLE) == 1


def test_listsources_shows_a_failing_source(
    bot: BotProcess, fake: FakeTelegram, web: FakeWeb, users: dict[str, JSON]
) -> None:
    admin = users["admin"]
    started = command(fake, admin, "addsource", f"{web.url(QUIET_FEED)} Quiet Wire")
    finished(fake, started, "added feed source 'Quiet Wire': feed with 0 entries")
    web.fail(QUIET_FEED, 503, times=10_000)
    bot.wait_for_log(f"source {web.url(QUIET_FEED)} failed: HTTP 503")
    listing = command(fake, admin, "listsources")["text"]
    assert listing.startswith("Sources (2)")
    assert "⚠️ Quiet Wire [feed]" in listing and "FAILING (" in listing
    assert "HTTP 503" in listing and "backing off until" in listing
    assert "• Wire World News [feed]" in listing and "4 articles" in listing


def test_ingest_one_article_now(
    bot: BotProcess, fake: FakeTelegram, web: FakeWeb, users: dict[str, JSON]
) -> None:
    admin, alice = users["admin"], users["alice"]
    page = web.url("/pages/vienna-osce")
    started = command(fake, admin, "ingest", page)
    assert "Fetching" in first_text(fake, started)
    done = finished(fake, started, f"added '{VIENNA_TITLE}")
    assert "1 new for subscribers" in done["text"]
    fake.wait_for_message(alice["id"], contains=VIENNA_TITLE)

    again = finished(fake, command(fake, admin, "ingest", page), "already in the corpus")
    assert "0 new for subscribers" in again["text"]
    feed = finished(fake, command(fake, admin, "ingest", web.url(FEED)), "❌")
    assert "is a feed, not an article page" in feed["text"]
    missing = finished(fake, command(fake, admin, "ingest", web.url("/nowhere")), "❌")
    assert "HTTP 404" in missing["text"]
    assert "not an http(s) URL" in command(fake, admin, "ingest", "ftp://example.org/x", contains="❌")["text"]
    assert digests_of(fake, alice, VIENNA_TITLE) == 1


def test_fetch_now_and_remove_a_source(
    bot: BotProcess, fake: FakeTelegram, web: FakeWeb, users: dict[str, JSON]
) -> None:
    admin = users["admin"]
    done = finished(fake, command(fake, admin, "fetch"), "sources polled")
    assert "Wire World News: not modified" in done["text"] and "0 new for subscribers" in done["text"]
    removed = command(fake, admin, "removesource", web.url(QUIET_FEED))["text"]
    assert "Removed Quiet Wire" in removed
    assert "is not a source" in command(fake, admin, "removesource", web.url(QUIET_FEED))["text"]
    listing = command(fake, admin, "listsources")["text"]
    assert listing.startswith("Sources (1)") and "Quiet Wire" not in listing


def test_nothing_crashed(bot: BotProcess) -> None:
    log = bot.log()
    assert "error while handling an update" not in log and "Traceback" not in log


def test_talks_fetch_and_ingest_queue_the_bots_digests(
    bot: BotProcess,
    web: FakeWeb,
    workdir: Path,
    users: dict[str, JSON],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A cron-run `talks fetch` or `talks ingest` (here with the bot stopped: one process writes
    the local index at a time) queues digests of its new articles in the bot's state."""
    assert bot.stop() == 0
    settings = make_settings(workdir / "data", [workdir / "corpus"], fetch_timeout_s=2.0)
    SourcesFile(settings.sources_path).add(Source(url=web.url("/ar/osce-vienna"), kind="page"))
    assert cmd_fetch(Namespace(due=False, force=False), settings) == 0
    assert "1 new articles queued for the bot's subscribers" in capsys.readouterr().out
    assert cmd_ingest(Namespace(url=web.url("/ar/nato-brussels")), settings) == 0
    assert "1 new articles queued for the bot's subscribers" in capsys.readouterr().out
    with sqlite3.connect(settings.state_db_path) as db:
        pending = db.execute(
            "SELECT COUNT(*) FROM deliveries WHERE chat_id = ? AND state = 'pending'",
            (users["alice"]["id"],),
        ).fetchone()[0]
    assert pending == 2
