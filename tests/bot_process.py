"""The real bot process (`talks bot`) pointed at the fake Telegram server, for end-to-end tests,
and the test's side of the conversation: users say things, the bot's replies are awaited."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from fake_telegram import FakeTelegram

TALKS = str(Path(sys.executable).with_name("talks"))
READY_TIMEOUT_S = 300  # model load + index build on a busy 2-core machine

JSON = dict[str, Any]


def bot_env(
    fake: FakeTelegram, data_dir: Path, corpus_dir: Path, model_dir: Path, **extra: str
) -> dict[str, str]:
    """The environment of a bot under test: nothing of the developer's TALKS_/TELEGRAM_ settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TALKS_", "TELEGRAM_"))
    }
    env.update(
        TELEGRAM_BOT_TOKEN=fake.token,
        TELEGRAM_API_BASE_URL=fake.base_url,
        TELEGRAM_FILE_BASE_URL=fake.base_file_url,
        TALKS_DATA_DIR=str(data_dir),
        TALKS_CORPUS_DIR=str(corpus_dir),
        TALKS_EMBEDDING_MODEL=str(model_dir),
        TRANSFORMERS_VERBOSITY="error",
        TOKENIZERS_PARALLELISM="false",
        PTB_TIMEDELTA="true",
        **extra,
    )
    return env


class BotProcess:
    """`talks bot` as a subprocess; its log goes to a file the test can read."""

    def __init__(
        self,
        fake: FakeTelegram,
        env: dict[str, str],
        workdir: Path,
        args: tuple[str, ...] = (),
    ) -> None:
        self.fake, self.env, self.workdir, self.args = fake, env, workdir, args
        self.log_path = workdir / "bot.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    def start(self, *, wait: bool = True) -> None:
        polls_before = len(self.fake.calls("getUpdates"))
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [TALKS, "bot", *self.args],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            self.fake.wait_for(
                lambda: (
                    self._running()
                    and len(self.fake.calls("getUpdates")) > polls_before
                ),
                READY_TIMEOUT_S,
            )
            self.startup_seconds = time.monotonic() - started

    def _running(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"the bot exited with {self.process.returncode}:\n{self.log()[-3000:]}"
            )
        return True

    def log(self, *, since_start: bool = False) -> str:
        text = (
            self.log_path.read_bytes().decode("utf-8", "replace")
            if self.log_path.exists()
            else ""
        )
        return text[self._log_offset :] if since_start else text

    def wait_for_log(self, fragment: str, timeout: float = 60) -> None:
        self.fake.wait_for(
            lambda: self._running() and fragment in self.log(since_start=True), timeout
        )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the bot (SIGKILL: as a crash would); returns its exit code."""
        if self.process is None:
            return 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)
        finally:
            self.process = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post_update(url: str, update: JSON, secret: str) -> int | None:
    """POST an update the way Telegram does; the HTTP status, or None while nothing listens."""
    request = urllib.request.Request(
        url,
        data=json.dumps(update).encode(),
        headers={
            "Content-Type": "application/json",
            "X-Telegram-Bot-Api-Secret-Token": secret,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (ConnectionError, urllib.error.URLError):
        return None


# --- the conversation -----------------------------------------------------------------


def say(
    fake: FakeTelegram, user: JSON, message: str, chat: JSON | None = None, **wait: Any
) -> JSON:
    """`user` writes `message`; returns the bot's first message after it."""
    update = fake.send_text(user, message, chat)
    return reply_to(fake, update, **wait)


def command(
    fake: FakeTelegram,
    user: JSON,
    name: str,
    args: str = "",
    chat: JSON | None = None,
    **wait: Any,
) -> JSON:
    update = fake.send_command(user, name, args, chat)
    return reply_to(fake, update, **wait)


def reply_to(
    fake: FakeTelegram, update: JSON, contains: str | None = None, timeout: float = 90
) -> JSON:
    message = update.get("message") or update["edited_message"]
    return fake.wait_for_message(
        message["chat"]["id"],
        after=message["message_id"],
        contains=contains,
        timeout=timeout,
    )


def buttons(message: JSON) -> list[str]:
    return [
        b["callback_data"]
        for row in message.get("reply_markup", {}).get("inline_keyboard", [])
        for b in row
    ]


def count_containing(fake: FakeTelegram, chat_id: int, fragment: str) -> int:
    return sum(fragment in (m.get("text") or "") for m in fake.sent(chat_id))


def first_text(fake: FakeTelegram, message: JSON) -> str:
    """What a bot message said when it was sent (before any edits)."""
    for call in fake.calls("sendMessage"):
        result = call["response"].get("result") or {}
        if (
            result.get("message_id") == message["message_id"]
            and result["chat"]["id"] == message["chat"]["id"]
        ):
            return result["text"]
    raise AssertionError(
        f"message {message['message_id']} was not sent with sendMessage"
    )


def digests_of(fake: FakeTelegram, user: JSON, title: str) -> int:
    """How many new-article digests carrying `title` the user received."""
    return sum(
        title in m.get("text", "") and "New articles" in m["text"]
        for m in fake.sent(user["id"])
    )
