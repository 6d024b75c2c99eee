"""Operations: the health report (`talks health`, /health in the bot and over HTTP), the
Prometheus metrics, and logs that are JSON lines without secrets or question texts.

The end-to-end part runs the real `talks bot` (fake Telegram) with TALKS_LOG_FORMAT=json and
the metrics endpoint on; its tests run in file order on one bot process.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from bot_process import JSON, BotProcess, bot_env, command, say
from conftest import make_settings
from fake_telegram import FakeTelegram
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from bot.state import BotState
from corpus.ingest import FetchReport, SourceReport
from corpus.sources import Source, SourceState
from talks.cli import REDACTED, log_formatter, secret_values
from talks.health import check_state, summarize_sources
from talks.metrics import record_fetch

ADMIN_ID = 42
QUESTION = "What did Stoltenberg say after the NATO–Russia Council?"
TALKS = str(Path(sys.executable).with_name("talks"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the checks, one by one -----------------------------------------------------------------------


def test_sources_summary_warns_about_failing_sources() -> None:
    now = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    fine = Source(
        url="https://a.example/rss", kind="feed", name="A", state=SourceState(last_fetch=now, last_status="ok")
    )
    broken = Source(
        url="https://b.example/rss",
        kind="feed",
        state=SourceState(last_fetch=now, last_status="failed", failures=3, last_error="HTTP 503"),
    )
    never = Source(url="https://c.example/page", kind="page")

    assert summarize_sources([]).status == "ok"
    healthy = summarize_sources([fine, never])
    assert healthy.status == "ok" and "last fetch 2026-01-02 03:04 UTC" in healthy.detail
    assert healthy.data["never_fetched"] == 1
    failing = summarize_sources([fine, broken])
    assert failing.status == "warning"
    assert "1 of 2 failing: https://b.example/rss (3×: HTTP 503)" in failing.detail
    assert failing.data["failing"] == ["https://b.example/rss"]


def test_state_check_does_not_create_the_sqlite_database(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, [])
    before = check_state(settings)
    assert before.status == "warning" and "the bot creates it" in before.detail
    assert not settings.state_db_path.exists()

    BotState.from_settings(settings).close()
    after = check_state(settings)
    assert after.status == "ok" and after.data["tables"] > 0


def test_state_check_names_an_unreachable_database_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://talks:hunter2-secret@127.0.0.1:{free_port()}/talks"
    check = check_state(make_settings(tmp_path, [], database_url=url))
    assert check.status == "failed" and "unreachable" in check.detail
    assert "hunter2-secret" not in check.detail and "talks:***@127.0.0.1" in check.detail


def test_state_check_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    settings = make_settings(tmp_path, [], database_url=postgres_url)
    assert check_state(settings).status == "warning"  # no tables before the bot's first start
    BotState.from_settings(settings).close()
    assert check_state(settings).status == "ok"


def test_fetch_results_are_counted_by_outcome() -> None:
    def polls(outcome: str) -> float:
        return REGISTRY.get_sample_value("talks_source_polls_total", {"outcome": outcome}) or 0.0

    def articles(kind: str) -> float:
        return REGISTRY.get_sample_value("talks_fetched_articles_total", {"kind": kind}) or 0.0

    before = {outcome: polls(outcome) for outcome in ("ok", "failed", "skipped")}
    new_before = articles("new")
    report = FetchReport(
        sources=[
            SourceReport(url="https://a.example/rss", kind="feed", status="ok", new_article_ids=["x", "y"]),
            SourceReport(url="https://b.example/rss", kind="feed", status="failed", error="HTTP 503"),
            SourceReport(url="https://c.example/rss", kind="feed", status="failed", error="timeout"),
        ],
        new_article_ids=["x", "y"],
    )
    record_fetch(report)
    assert polls("ok") - before["ok"] == 1
    assert polls("failed") - before["failed"] == 2
    assert polls("skipped") == before["skipped"]
    assert articles("new") - new_before == 2


# --- logs ---------------------------------------------------------------------------------------------


def _record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("httpx", logging.WARNING, __file__, 1, message, args, exc_info)


def test_json_logs_blank_out_secrets_in_messages_and_tracebacks(tmp_path: Path) -> None:
    token = "123456:AAE-secret_token"
    settings = make_settings(
        tmp_path, [], telegram_bot_token=token, database_url='postgresql://talks:p%40ss"word@db/talks'
    )
    secrets = secret_values(settings)
    assert token in secrets and 'p@ss"word' in secrets  # the password as the driver sees it
    formatter = log_formatter("json", secrets)
    try:
        raise ConnectionError(f"POST https://api.telegram.org/bot{token}/getUpdates failed")
    except ConnectionError as error:
        line = formatter.format(_record("request to %s", f"/bot{token}/getMe", exc=error))
    logged = json.loads(line)
    assert logged["level"] == "WARNING" and logged["logger"] == "httpx"
    assert logged["message"] == f"request to /bot{REDACTED}/getMe"
    assert "ConnectionError" in logged["exc_info"] and token not in line
    # JSON escapes the quote in the password: the escaped form is blanked out too.
    escaped = formatter.format(_record('auth failed for password p@ss"word'))
    assert json.loads(escaped)["message"] == f"auth failed for password {REDACTED}"


def test_text_logs_blank_out_secrets_too(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, [], llm_api_key="sk-live-abcdef")
    line = log_formatter("text", secret_values(settings)).format(_record("key sk-live-abcdef rejected"))
    assert line.endswith(f"httpx: key {REDACTED} rejected")


# --- talks health ----------------------------------------------------------------------------------


def talks(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TALKS, *args], check=False, capture_output=True, text=True, env=env, timeout=600)


def test_talks_health_without_an_index_fails_clearly(model_dir: Path, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TALKS_", "TELEGRAM_", "CHROMA_"))}
    env |= {"TALKS_DATA_DIR": str(tmp_path / "data"), "TALKS_EMBEDDING_MODEL": str(model_dir)}
    result = talks("health", env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "UNHEALTHY"
    assert "❌ index: no index 'talks': run `talks index`" in lines
    assert any(line.startswith("✅ model: intfloat/multilingual-e5-small loadable") for line in lines)
    assert "Traceback" not in result.stderr


# --- the bot process -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def env(
    fake: FakeTelegram, tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path, model_dir: Path, metrics_port: int
) -> dict[str, str]:
    return bot_env(
        fake,
        tmp_path_factory.mktemp("ops") / "data",
        corpus_dir,
        model_dir,
        TALKS_ADMIN_IDS=str(ADMIN_ID),
        TALKS_LOG_FORMAT="json",
        TALKS_METRICS_PORT=str(metrics_port),
    )


@pytest.fixture(scope="module")
def bot(fake: FakeTelegram, env: dict[str, str]) -> Iterator[BotProcess]:
    process = BotProcess(fake, env, Path(env["TALKS_DATA_DIR"]).parent)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def alice(fake: FakeTelegram) -> JSON:
    return fake.user(1001, "Alice", language_code="en")


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def sample(metrics: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    for family in text_string_to_metric_families(metrics):
        for found in family.samples:
            if found.name == name and (labels is None or found.labels == labels):
                return found.value
    return None


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_a_question_is_counted_in_the_metrics(
    bot: BotProcess, fake: FakeTelegram, alice: JSON, metrics_port: int
) -> None:
    _, before = get(metrics_port, "/metrics")
    assert sample(before, "talks_questions_total", {"language": "en", "outcome": "answered"}) == 0
    assert sample(before, "talks_index_chunks") > 0

    reply = say(fake, alice, QUESTION)
    assert "[1]" in reply["text"]

    status, after = get(metrics_port, "/metrics")
    assert status == 200
    assert sample(after, "talks_questions_total", {"language": "en", "outcome": "answered"}) == 1
    assert sample(after, "talks_answer_seconds_count") == 1
    assert get(metrics_port, "/nothing")[0] == 404


@pytest.mark.e2e
def test_health_over_http(bot: BotProcess, metrics_port: int) -> None:
    status, body = get(metrics_port, "/health")
    report = json.loads(body)
    assert status == 200 and report["healthy"] is True
    checks = {check["name"]: check for check in report["checks"]}
    assert checks.keys() == {"index", "model", "chroma", "state", "sources"}
    assert all(check["status"] == "ok" for check in checks.values()), checks
    assert checks["index"]["data"]["chunks"] > 0
    assert "loaded" in checks["model"]["detail"]


@pytest.mark.e2e
def test_health_over_http_is_503_when_something_is_broken(
    bot: BotProcess, env: dict[str, str], metrics_port: int
) -> None:
    sources_file = Path(env["TALKS_DATA_DIR"]) / "sources.yaml"
    sources_file.write_text("sources: [this is not a source\n", encoding="utf-8")
    try:
        status, body = get(metrics_port, "/health")
    finally:
        sources_file.unlink()
    report = json.loads(body)
    assert status == 503 and report["healthy"] is False
    broken = [check for check in report["checks"] if check["status"] == "failed"]
    assert [check["name"] for check in broken] == ["sources"] and "sources.yaml" in broken[0]["detail"]
    assert get(metrics_port, "/health")[0] == 200


@pytest.mark.e2e
def test_admin_health_command(bot: BotProcess, fake: FakeTelegram, alice: JSON) -> None:
    admin = fake.user(ADMIN_ID, "Admin", language_code="en")
    reply = command(fake, admin, "health")
    lines = reply["text"].splitlines()
    assert lines[0] == "healthy"
    assert any(line.startswith("✅ index: talks") and "chunks" in line for line in lines)
    assert any(line.startswith("✅ model: intfloat/multilingual-e5-small loaded") for line in lines)
    assert "health" in {c["command"] for c in fake.commands({"type": "chat", "chat_id": ADMIN_ID})}
    assert command(fake, alice, "health")["text"] == "Sorry, I can't do that."


@pytest.mark.e2e
def test_logs_are_json_lines_without_the_token_or_the_question(bot: BotProcess, fake: FakeTelegram) -> None:
    bot.stop()  # everything flushed
    log = bot.log()
    records = [json.loads(line) for line in log.splitlines() if line.strip()]  # fails on a non-JSON line
    assert {"time", "level", "logger", "message"} <= records[0].keys()
    messages = [record["message"] for record in records]
    assert any(message.startswith("answer 1 to user 1001") for message in messages)
    assert any(message.startswith("metrics on http://127.0.0.1:") for message in messages)
    assert fake.token not in log
    assert fake.token.split(":")[1] not in log
    assert QUESTION not in log and json.dumps(QUESTION)[1:-1] not in log


@pytest.mark.e2e
def test_talks_health_on_the_bots_index(bot: BotProcess, env: dict[str, str]) -> None:
    """After the bot stopped (the embedded Chroma is not shared by two processes)."""
    result = talks("health", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    statuses = {check["name"]: check["status"] for check in report["checks"]}
    assert report["healthy"] is True and statuses == dict.fromkeys(statuses, "ok")
