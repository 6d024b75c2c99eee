"""Faults, end to end: the real `talks bot` and `talks` processes when things around them break.

- Telegram's flood control answers 429 to a burst of sends while several chats each get
  several messages: everything arrives, once, in order.
- The data dir's disk fills up: `talks index` fails with one clear line and the index that
  served still answers; the running bot keeps replying.
- SIGTERM while an answer is being written: the answer is delivered, then the bot exits 0.

The disk is made full for real. Preferably a tmpfs of its own (mounting needs root) is filled
with a file, so that every write needing room fails with ENOSPC, as on a full disk. Without a
mount, `talks index` runs under RLIMIT_FSIZE at the size of the largest file already there:
no file can grow, writes fail with EFBIG. The bot's full-disk test needs the tmpfs (a file size
limit would also cap the bot's log file).

One bot process (its data dir on the small disk, answers written by the fake LLM) serves the
bot tests; they run in file order and the last one stops it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bot_process import JSON, TALKS, BotProcess, bot_env, command, say
from conftest import TEST_ARTICLES
from fake_llm import FakeLLM, Reply
from fake_telegram import FakeTelegram

from talks.settings import BUNDLED_CORPUS_DIR

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]  # each `talks` run loads the model: minutes under load

ADMIN_ID = 42
STARTUP_TIMEOUT_S = 600  # model load and the first index on a 2-core machine shared with others
SMALL_DISK_MB = 64
FILLER = "filler.bin"
GENEVA_QUESTION = "What did Russia demand at the Geneva talks?"
DELEGATION_QUESTION = "Who led the US delegation in Geneva?"
LATER_ARTICLE = "written_replies_2022-01-26.jsonl"  # indexed only once the disk has room again
BRIEFINGS = 20  # new articles: a digest of several messages per subscriber
STORM_READERS = 4
# 429s per chat: as many as the bot's rate limiter retries a message (TALKS_TELEGRAM_MAX_RETRIES),
# so no message meets more than Telegram would send it in a flood that its retry_after describes.
FLOOD_RETRIES = 3
SLOW_ANSWER = "Russia demanded legally binding guarantees that NATO would not expand further east [1]."


# --- a disk that can be filled ----------------------------------------------------------------


class SmallDisk:
    """A tmpfs of its own at `path`. `fill()` takes all its free space, as a runaway log would,
    so that every write needing room fails with ENOSPC; `free()` gives the space back."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def mount(cls, path: Path, size_mb: int) -> SmallDisk | None:
        """The mounted disk, or None where this process may not mount (not root, no tmpfs)."""
        path.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        return cls(path) if mounted.returncode == 0 else None

    def fill(self) -> None:
        block = bytes(1 << 20)
        descriptor = os.open(self.path / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(descriptor, block)  # short writes near the end, then ENOSPC
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
        finally:
            os.close(descriptor)

    def free(self) -> None:
        (self.path / FILLER).unlink(missing_ok=True)

    def unmount(self) -> None:
        # Lazily: a process the test failed to stop may still hold files there.
        subprocess.run(["umount", "-l", str(self.path)], check=False)


def no_room_to_grow(data_dir: Path) -> Callable[[], None]:
    """A `preexec_fn`: the child's files cannot grow past the largest file in `data_dir` now."""
    limit = max(path.stat().st_size for path in data_dir.rglob("*") if path.is_file())

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, not kills
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


class FullDisk:
    """A data dir on a disk with no room left, until `free()`: on a filled tmpfs, or (without
    one) for processes run under a file size limit."""

    def __init__(self, data_dir: Path, small_disk: SmallDisk | None) -> None:
        self.data_dir, self.small_disk = data_dir, small_disk
        self._no_room = None if small_disk else no_room_to_grow(data_dir)
        if small_disk:
            small_disk.fill()

    def talks(self, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TALKS, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            preexec_fn=self._no_room,
            check=False,
        )

    def free(self) -> None:
        self._no_room = None
        if self.small_disk:
            self.small_disk.free()


@contextlib.contextmanager
def mounted_small_disk(path: Path) -> Iterator[SmallDisk | None]:
    disk = SmallDisk.mount(path, SMALL_DISK_MB)
    try:
        yield disk
    finally:
        if disk is not None:
            disk.unmount()


# --- test data ------------------------------------------------------------------------------


def copy_corpus(target: Path, *, leave_out: tuple[str, ...] = ()) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for source in (BUNDLED_CORPUS_DIR, TEST_ARTICLES):
        for path in source.iterdir():
            if path.name not in leave_out:
                shutil.copy(path, target / path.name)
    return target


def briefing_title(number: int) -> str:
    return f"Storm briefing {number:02d} on European security"


def write_briefings(corpus: Path, count: int) -> list[str]:
    """`count` new articles, one date, so subscribers get them ordered by title; their titles."""
    titles = [briefing_title(number) for number in range(1, count + 1)]
    for number, title in enumerate(titles, start=1):
        body = (
            f"GENEVA — Briefing number {number} of the week summarised the positions of the delegations "
            f"on arms control, military exercises and missile deployments in Europe, item {number} "
            f"of the agenda. Diplomats said topic {number} needed more work before the next round, "
            "and that written proposals would follow from both sides within days.\n\n"
            f"Officials added that point {number} would be discussed with allies at NATO and the OSCE."
        )
        (corpus / f"storm_briefing_{number:02d}.md").write_text(
            f'---\ntitle: "{title}"\nsource_url: https://example.org/briefings/{number}\n'
            f"published: 2022-01-20\nlang: en\nsource: Example Wire\n---\n\n{body}\n",
            encoding="utf-8",
        )
    return titles


def cli_env(data_dir: Path, corpus_dir: Path, model_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TALKS_", "TELEGRAM_", "CHROMA_"))}
    return env | {
        "TALKS_DATA_DIR": str(data_dir),
        "TALKS_CORPUS_DIR": str(corpus_dir),
        "TALKS_EMBEDDING_MODEL": str(model_dir),
        "TRANSFORMERS_VERBOSITY": "error",
        "TOKENIZERS_PARALLELISM": "false",
    }


def assert_one_line_error(result: subprocess.CompletedProcess[str], reason: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert reason in error, result.stderr


# --- `talks index` on a full disk -----------------------------------------------------------


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> tuple[Path, Path]:
    """A corpus (without LATER_ARTICLE) and a data dir with its index: (corpus, data)."""
    root = tmp_path_factory.mktemp("indexed")
    corpus = copy_corpus(root / "corpus", leave_out=(LATER_ARTICLE,))
    data = root / "data"
    built = subprocess.run(
        [TALKS, "index"],
        env=cli_env(data, corpus, model_dir),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return corpus, data


@pytest.mark.parametrize("mechanism", ["tmpfs", "rlimit"])
def test_index_on_a_full_disk_fails_in_one_line_and_the_old_index_serves(
    mechanism: str, indexed: tuple[Path, Path], model_dir: Path, tmp_path: Path
) -> None:
    indexed_corpus, indexed_data = indexed
    corpus = tmp_path / "corpus"
    shutil.copytree(indexed_corpus, corpus)
    shutil.copy(TEST_ARTICLES / LATER_ARTICLE, corpus)  # something new to write
    with mounted_small_disk(tmp_path / "disk") as small_disk:
        if mechanism == "tmpfs" and small_disk is None:
            pytest.skip("cannot mount a tmpfs here (needs root); the rlimit case covers the CLI")
        data = (small_disk.path if small_disk else tmp_path) / "data"
        shutil.copytree(indexed_data, data)
        disk = FullDisk(data, small_disk if mechanism == "tmpfs" else None)
        env = cli_env(data, corpus, model_dir)

        failed = disk.talks("index", "--full", env=env)
        assert failed.returncode != 0
        assert_one_line_error(failed, "the disk is full or failing")
        # Embedded Chroma cannot even open its SQLite without room for the journal: then `ask`
        # says so in one line too. Either way nothing half-written is ever served.
        still_full = disk.talks("ask", "--json", GENEVA_QUESTION, env=env)
        if still_full.returncode:
            assert_one_line_error(still_full, "the disk is full or failing")
        else:
            assert json.loads(still_full.stdout)["answered"]

        disk.free()
        old_index = disk.talks("ask", "--json", GENEVA_QUESTION, env=env)
        assert old_index.returncode == 0, old_index.stderr
        assert json.loads(old_index.stdout)["answered"]
        rebuilt = disk.talks("index", "--full", env=env)
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert "(1 new" in rebuilt.stdout  # compared with the index that served: the old one


# --- the bot --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults_bot")
    copy_corpus(root / "corpus")
    return root


@pytest.fixture(scope="module")
def small_disk(workdir: Path) -> Iterator[SmallDisk | None]:
    with mounted_small_disk(workdir / "disk") as disk:
        yield disk


@pytest.fixture(scope="module")
def bot(
    fake: FakeTelegram,
    llm: FakeLLM,
    workdir: Path,
    small_disk: SmallDisk | None,
    model_dir: Path,
) -> Iterator[BotProcess]:
    data = (small_disk.path if small_disk else workdir) / "data"
    env = bot_env(
        fake,
        data,
        workdir / "corpus",
        model_dir,
        TALKS_ADMIN_IDS=str(ADMIN_ID),
        TALKS_DIGEST_CHECK_SECONDS="2",  # digests a storm held back are sent again soon
        TALKS_TELEGRAM_MAX_RETRIES=str(FLOOD_RETRIES),
        TALKS_LLM="openai",
        TALKS_LLM_BASE_URL=llm.openai_base_url,
        TALKS_LLM_MODEL="fake-model",
        TALKS_LLM_TIMEOUT="60",
        TALKS_LLM_MAX_RETRIES="0",
    )
    process = BotProcess(fake, env, workdir)
    process.start(wait=False)
    process.wait_for_log("Application started", STARTUP_TIMEOUT_S)
    yield process
    process.stop()


def replies_to(fake: FakeTelegram, message: JSON) -> list[JSON]:
    return [
        sent
        for sent in fake.sent(message["chat"]["id"])
        if sent.get("reply_to_message", {}).get("message_id") == message["message_id"]
    ]


def digest_titles(fake: FakeTelegram, chat_id: int) -> list[str]:
    """The briefing titles in the chat's messages, in the order they were sent."""
    return [
        title
        for message in fake.sent(chat_id)
        for title in re.findall(r"Storm briefing \d+ on European security", message.get("text", ""))
    ]


def test_a_429_storm_over_several_chats_delays_but_loses_nothing(
    bot: BotProcess, fake: FakeTelegram, workdir: Path
) -> None:
    """An admin's reindex brings 20 new articles (several digest messages each) to four
    subscribers who are asking two questions each, while Telegram answers 429 to the first sends
    into each of the five chats. The rate limiter holds every send while one waits out its
    retry_after, so the storm ripples through all chats at once."""
    admin = fake.user(ADMIN_ID, "Admin")
    readers = [fake.user(2001 + n, f"Reader {n}") for n in range(STORM_READERS)]
    for reader in readers:
        command(fake, reader, "subscribe", contains="as soon as")
    titles = write_briefings(workdir / "corpus", BRIEFINGS)
    for chat in (admin, *readers):
        fake.arm_flood("sendMessage", FLOOD_RETRIES, retry_after=1, chat_id=chat["id"])
    refused_before = sum(c["status"] == 429 for c in fake.calls("sendMessage"))

    started = time.monotonic()
    reindex = fake.send_command(admin, "reindex")["message"]
    questions = [
        fake.send_text(reader, question)["message"]
        for reader in readers
        for question in (GENEVA_QUESTION, DELEGATION_QUESTION)
    ]
    for reader in readers:
        fake.wait_for(lambda chat=reader["id"]: len(digest_titles(fake, chat)) >= BRIEFINGS, 300)
    for question in questions:
        fake.wait_for(lambda asked=question: replies_to(fake, asked), 300)
    fake.wait_for_message(ADMIN_ID, after=reindex["message_id"], contains="done", timeout=300)
    drained = time.monotonic() - started
    refused = sum(c["status"] == 429 for c in fake.calls("sendMessage")) - refused_before
    print(f"\n429 storm: {refused} sends refused, everything delivered after {drained:.1f} s")

    assert refused == FLOOD_RETRIES * (STORM_READERS + 1)  # the whole storm was met
    for reader in readers:
        chat_id = reader["id"]
        assert digest_titles(fake, chat_id) == titles, chat_id  # in order, none twice
        digests = [m for m in fake.sent(chat_id) if "Storm briefing" in m.get("text", "")]
        assert len(digests) >= 2 and digests[0]["text"].startswith("📰 New articles")
        texts = Counter(m["text"] for m in fake.sent(chat_id))
        assert max(texts.values()) == 1 and not any("went wrong" in t for t in texts), texts
    for question in questions:
        [answer] = replies_to(fake, question)
        assert "[1]" in answer["text"]


def test_a_full_disk_under_the_bot_gets_replies_not_silence(
    bot: BotProcess, fake: FakeTelegram, small_disk: SmallDisk | None
) -> None:
    """Every question and command writes the bot's state (the user, the answer, the
    subscription); with no room left the user still hears back, and all works again once
    there is room."""
    if small_disk is None:
        pytest.skip("filling the bot's disk needs a tmpfs mount (root); none could be mounted")
    user = fake.user(2101, "Dana")
    assert "[1]" in say(fake, user, GENEVA_QUESTION)["text"]

    small_disk.fill()
    try:
        # What did get written (SQLite may still have room in its journal) is served as usual.
        for reply, served in (
            (say(fake, user, DELEGATION_QUESTION), "[1]"),
            (command(fake, user, "subscribe"), "as soon as"),
        ):
            assert served in reply["text"] or "temporarily unavailable" in reply["text"], reply
    finally:
        small_disk.free()

    assert "[1]" in say(fake, user, DELEGATION_QUESTION)["text"]
    assert "as soon as" in command(fake, user, "subscribe")["text"]
    bot.wait_for_log("the bot's state database failed")  # logged as such, and the bot lives on


def test_sigterm_delivers_the_answer_being_written_then_exits_0(
    bot: BotProcess, fake: FakeTelegram, llm: FakeLLM
) -> None:
    user = fake.user(2201, "Ezra")
    llm.script(Reply(SLOW_ANSWER, chunk_delay=0.4))  # ~6 s to write
    requests_before = len(llm.requests)
    question = fake.send_text(user, GENEVA_QUESTION)["message"]
    fake.wait_for(lambda: len(llm.requests) > requests_before, 120)  # the model is writing

    logged_before = len(bot.log())
    stopping = time.monotonic()
    exit_code = bot.stop(signal.SIGTERM)
    print(f"\nSIGTERM mid-answer: exited {exit_code} after {time.monotonic() - stopping:.1f} s")

    assert exit_code == 0, bot.log()[-3000:]
    [answer] = replies_to(fake, question)
    assert answer["text"].startswith(SLOW_ANSWER.removesuffix(" [1].")) and "[1]" in answer["text"]
    shutdown_log = bot.log()[logged_before:]
    assert "Application.stop() complete" in shutdown_log and "Traceback" not in shutdown_log
