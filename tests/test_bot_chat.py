"""`talks chat` (the terminal chat on the bot's pipeline), and `talks bot` / `talks run` without a token."""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_settings
from rich.console import Console

import bot.chat
from bot.chat import run_chat
from talks.cli import cmd_run

TALKS = str(Path(sys.executable).with_name("talks"))


def talks_env(**values: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TALKS_", "TELEGRAM_"))
    }
    return (
        env
        | {"TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}
        | values
    )


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_chat_answers_piped_questions_with_sources_and_follow_ups(
    service, corpus_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(
        service.settings.data_dir, data_dir
    )  # the session's index: no rebuild
    questions = "\n".join(
        [
            "What happened at the NATO–Russia Council in Brussels?",
            "And what did Stoltenberg say?",
            "   ",
            "Geneva " * 300,
            "ماذا قال ستولتنبرغ بعد اجتماع مجلس الناتو وروسيا؟",
        ]
    )
    result = subprocess.run(
        [TALKS, "chat"],
        check=False,
        input=questions,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=240,
        env=talks_env(
            TALKS_DATA_DIR=str(data_dir),
            TALKS_CORPUS_DIR=str(corpus_dir),
            TALKS_EMBEDDING_MODEL=service.settings.embedding_model,
        ),
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout
    assert (
        output.count("? ") >= 3
        and output.count("Sources:") == 2
        and "المصادر:" in output
    )
    follow_up = output.split("? And what did Stoltenberg say?")[1]
    assert "[1] " in follow_up and "Stoltenberg" in follow_up.split("Sources:")[0]
    assert "longer than 1000 characters" in output
    assert output.rstrip().endswith("bye")


class InterruptedStdin(io.StringIO):
    def readline(self, *args: object) -> str:  # type: ignore[override]
        raise KeyboardInterrupt


def test_chat_ends_politely_on_ctrl_c_and_quit(
    service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot.chat, "load_service", lambda settings: service)
    out = io.StringIO()
    assert run_chat(service.settings, InterruptedStdin(), Console(file=out)) == 0
    assert out.getvalue().rstrip().endswith("bye")
    out = io.StringIO()
    assert (
        run_chat(
            service.settings,
            io.StringIO("/quit\nWhat did Russia demand?\n"),
            Console(file=out),
        )
        == 0
    )
    assert "Sources" not in out.getvalue()


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "TELEGRAM_BOT_TOKEN is not set"),
        ("not-a-token", "TELEGRAM_BOT_TOKEN is malformed"),
    ],
    ids=["missing", "malformed"],
)
def test_bot_without_a_valid_token_says_so_in_one_line(
    tmp_path: Path, token: str, message: str
) -> None:
    result = subprocess.run(
        [TALKS, "bot"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=talks_env(TELEGRAM_BOT_TOKEN=token, TALKS_DATA_DIR=str(tmp_path)),
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert message in line and "@BotFather" in line
    assert "not-a-token" not in line  # a token is a secret, even a wrong one


def test_run_without_a_token_says_how_to_get_one_and_opens_the_chat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opened = []
    monkeypatch.setattr(
        bot.chat, "run_chat", lambda settings: opened.append(settings) or 0
    )
    settings = make_settings(tmp_path, [tmp_path])
    assert cmd_run(argparse.Namespace(), settings) == 0
    assert opened == [settings]
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "No TELEGRAM_BOT_TOKEN" in line and "@BotFather" in line
