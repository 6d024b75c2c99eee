"""Two real bot workers (`talks bot --webhook`) sharing one PostgreSQL state through DATABASE_URL,
as behind a load balancer: digests reach every subscriber exactly once although both workers race
to send them, and the question rate limit counts a user's questions on both workers together."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bot_process import JSON, TALKS, BotProcess, bot_env, count_containing, free_port, post_update, reply_to
from conftest import fresh_postgres_database
from fake_telegram import FakeTelegram

from bot.state import BotState
from retrieval.service import ArticleInfo

pytestmark = pytest.mark.e2e

SECRET = "worker-secret"
RATE_LIMIT = 3
SUBSCRIBERS = range(2001, 2013)
NEW_TITLES = [f"Fresh report {n} from Geneva" for n in range(1, 4)]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def workers(
    fake: FakeTelegram, database: str, corpus_dir: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[tuple[BotProcess, str]]]:
    root = tmp_path_factory.mktemp("workers")
    env = bot_env(
        fake,
        root / "data",
        corpus_dir,
        model_dir,
        DATABASE_URL=database,
        TALKS_RATE_LIMIT_PER_MINUTE=str(RATE_LIMIT),
        TALKS_DIGEST_CHECK_SECONDS="0.5",  # both workers look for pending digests all the time
        TALKS_WEBHOOK_LISTEN="127.0.0.1",
        TALKS_WEBHOOK_SECRET=SECRET,
    )
    subprocess.run([TALKS, "index"], env=env, cwd=root, check=True, capture_output=True, timeout=600)
    started = []
    for name in ("a", "b"):
        port = free_port()
        url = f"http://127.0.0.1:{port}/hook"
        workdir = root / name
        workdir.mkdir()
        worker = BotProcess(fake, env | {"TALKS_WEBHOOK_PORT": str(port)}, workdir, ("--webhook", url))
        worker.start(wait=False)
        started.append((worker, url))
    for worker, _ in started:
        worker.wait_for_log("instant digests:", timeout=300)
    yield started
    for worker, _ in started:
        assert worker.stop() == 0, worker.log()[-3000:]


def post(fake: FakeTelegram, url: str, update: JSON) -> JSON:
    """Post `update` to a worker's webhook as Telegram would; the bot's reply."""
    assert post_update(url, update, SECRET) == 200
    return reply_to(fake, update)


def test_every_subscriber_gets_each_new_article_once(
    fake: FakeTelegram, database: str, workers: list[tuple[BotProcess, str]]
) -> None:
    for n, user_id in enumerate(SUBSCRIBERS):
        user = fake.user(user_id, f"Reader {user_id}", language_code="en")
        _, url = workers[n % 2]  # half subscribe through each worker
        assert "subscribed" in post(fake, url, fake.send_command(user, "subscribe"))["text"].lower()
    fetcher = BotState(database)  # what `talks fetch` does when it indexes new articles
    fetcher.announce(
        [
            ArticleInfo(
                id=f"fresh-{n}",
                title=title,
                url=None,
                date="2022-01-11",
                lang="en",
                source="Wire",
                source_name=f"fresh-{n}.md",
                chunks=1,
                lead="Lead.",
            )
            for n, title in enumerate(NEW_TITLES)
        ]
    )
    for user_id in SUBSCRIBERS:
        for title in NEW_TITLES:
            fake.wait_for(lambda user_id=user_id, title=title: count_containing(fake, user_id, title), 120)
    time.sleep(3)  # both workers keep checking: a duplicate would have arrived by now
    for user_id in SUBSCRIBERS:
        assert [count_containing(fake, user_id, title) for title in NEW_TITLES] == [1, 1, 1], user_id
    assert fetcher.chats_with_pending() == []
    fetcher.close()


def test_rate_limit_is_shared_by_the_workers(fake: FakeTelegram, workers: list[tuple[BotProcess, str]]) -> None:
    user = fake.user(2100, "Busy", language_code="en")
    for n in range(RATE_LIMIT + 2):  # at once, alternating between the workers
        update = fake.send_text(user, "How long did the Geneva talks last?")
        assert post_update(workers[n % 2][1], update, SECRET) == 200
    fake.wait_for(lambda: count_containing(fake, user["id"], "[1]") == RATE_LIMIT, 180)
    time.sleep(3)  # an answer beyond the limit would have arrived by now
    assert count_containing(fake, user["id"], "[1]") == RATE_LIMIT
    assert count_containing(fake, user["id"], "faster than I can answer") == 1


def test_state_is_in_postgresql(database: str, workers: list[tuple[BotProcess, str]]) -> None:
    state = BotState(database)
    assert state.backend == "postgresql"
    stats = state.usage_stats()
    assert stats.subscribers == len(SUBSCRIBERS) and stats.questions_today == RATE_LIMIT
    state.close()
    for worker, _ in workers:
        assert "Traceback" not in worker.log()
