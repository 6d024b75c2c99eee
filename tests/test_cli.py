"""The `talks` command as a user runs it: real processes, real model, real Chroma."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import QA_FILE

# What CI requires of answer quality on tests/data/qa.jsonl (README: "Quality").
QUALITY_FLOOR = {
    "hit@1": 0.65,
    "hit@5": 0.9,
    "mrr": 0.75,
    "fact_recall": 0.55,
    "citation_validity": 1.0,
    "decline_accuracy": 0.82,
}


def talks(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "talks.cli", *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=600,
    )


@pytest.fixture(scope="module")
def cli_env(model_dir: Path, corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("TALKS_", "TELEGRAM_", "CHROMA_"))
    }
    env |= {
        "TALKS_DATA_DIR": str(tmp_path_factory.mktemp("cli-data")),
        "TALKS_CORPUS_DIR": str(corpus_dir),
        "TALKS_EMBEDDING_MODEL": str(model_dir),
    }
    return env


def test_ask_before_index_is_a_clear_error(cli_env: dict[str, str]) -> None:
    result = talks("ask", "ماذا قال ريابكوف؟", env=cli_env)
    assert result.returncode == 2
    assert "no index yet: run `talks index` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_index_then_ask(cli_env: dict[str, str]) -> None:
    indexed = talks("index", env=cli_env)
    assert indexed.returncode == 0, indexed.stderr
    assert "8 articles (8 new" in indexed.stdout

    human = talks("ask", "ماذا قال ريابكوف عن أوكرانيا؟", env=cli_env)
    assert human.returncode == 0, human.stderr
    assert "المصادر:" in human.stdout and "[1]" in human.stdout

    result = talks("ask", "How long did the Sherman-Ryabkov talks in Geneva last?", "--json", env=cli_env)
    answer = json.loads(result.stdout)
    assert set(answer) >= {"question", "language", "answered", "answer", "citations", "timings_ms"}
    assert answer["answered"] and answer["language"] == "en"
    assert set(answer["citations"][0]) == {"n", "article_id", "title", "url", "date", "lang", "quote", "score"}


def test_batch_questions_from_stdin_in_order(cli_env: dict[str, str]) -> None:
    questions = ["Who chaired the OSCE in January 2022?", "", "من ترأس الوفد الأمريكي؟", "x" * 5000]
    result = talks("ask", "--json", "-", env=cli_env, stdin="\n".join(questions) + "\n")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["question"] for line in lines] == [questions[0], questions[2], questions[3]]
    assert "error" in lines[2] and "longer than" in lines[2]["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", "   "], "the question is empty"),
        (["eval", "--qa", "/nonexistent.jsonl"], "QA file not found"),
        (["eval", "--require", "hit@5"], "METRIC=NUMBER"),
    ],
)
def test_user_mistakes_get_one_line(cli_env: dict[str, str], args: list[str], message: str) -> None:
    result = talks(*args, env=cli_env)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_unknown_model_is_a_clear_error(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = talks("ask", "hello", env=cli_env | {"TALKS_EMBEDDING_MODEL": str(tmp_path / "missing-model")})
    assert result.returncode == 2
    assert "talks build-model" in result.stderr


def test_eval_meets_the_quality_floor(cli_env: dict[str, str]) -> None:
    requirements = [f"--require={name}={value}" for name, value in QUALITY_FLOOR.items()]
    result = talks("eval", "--qa", str(QA_FILE), "--json", *requirements, env=cli_env)
    *records, summary = [json.loads(line) for line in result.stdout.splitlines()]
    overall = json.loads(json.dumps(summary))["metrics"]["overall"]
    assert result.returncode == 0, f"{result.stderr}\n{overall}"
    assert len(records) >= 30 and {"id", "retrieved_article_ids", "retrieved_source_files", "answered"} <= set(records[0])
    assert {"same-language", "cross-language", "unanswerable"} <= set(summary["metrics"])


def test_eval_fails_when_quality_drops(cli_env: dict[str, str], tmp_path: Path) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text(QA_FILE.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    result = talks("eval", "--qa", str(qa), "--require", "hit@1=1.01", env=cli_env)
    assert result.returncode == 1
    assert "quality below requirement: hit@1" in result.stderr
