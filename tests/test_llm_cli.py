"""`talks ask` and `talks eval` with TALKS_LLM=openai against the fake OpenAI-compatible server:
real processes, real model, a copy of the session's index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import QA_FILE
from fake_llm import FakeLLM
from talks import cli
from talks.settings import get_settings

QA_IDS = {"q01", "q50", "q51"}  # Arabic answerable; English and Arabic unanswerable (below the threshold)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture(scope="module")
def llm_env(service, model_dir: Path, corpus_dir: Path, fake: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data_dir = tmp_path_factory.mktemp("llm-cli") / "data"
    shutil.copytree(service.settings.data_dir, data_dir)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TALKS_", "TELEGRAM_", "CHROMA_"))}
    return env | {
        "TALKS_DATA_DIR": str(data_dir),
        "TALKS_CORPUS_DIR": str(corpus_dir),
        "TALKS_EMBEDDING_MODEL": str(model_dir),
        "TALKS_LLM": "openai",
        "TALKS_LLM_BASE_URL": fake.openai_base_url,
        "TALKS_LLM_MODEL": "fake-model",
        "TALKS_LLM_TIMEOUT": "5",
    }


def talks(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "talks.cli", *args], check=False, capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_ask_json_names_the_backend_and_prompts(
    llm_env: dict[str, str],
    fake: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # In this process (a second model load is cheaper than a second interpreter with torch).
    monkeypatch.chdir(tmp_path)  # no .env
    for key, value in llm_env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        assert cli.main(["ask", "--json", "ماذا قال ريابكوف عن أوكرانيا؟"]) == 0
    finally:
        get_settings.cache_clear()
    answer = json.loads(capsys.readouterr().out)
    assert answer["backend"] == "openai:fake-model" and answer["answered"]
    assert answer["prompts"] == {"answer_system": 1, "passages": 1}
    assert answer["answer"] == "تتناول المقاطع هذا السؤال [1]." and len(answer["citations"]) == 1
    assert "<question>ماذا قال ريابكوف عن أوكرانيا؟</question>" in fake.requests[-1].user


def test_eval_reports_the_llm_backend(llm_env: dict[str, str], fake: FakeLLM, tmp_path: Path) -> None:
    qa = tmp_path / "qa.jsonl"
    lines = [line for line in QA_FILE.read_text(encoding="utf-8").splitlines() if json.loads(line)["id"] in QA_IDS]
    qa.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = len(fake.requests)

    result = talks("eval", "--qa", str(qa), "--json", env=llm_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    *records, summary = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert summary["backend"] == "openai:fake-model"
    assert summary["metrics"]["overall"]["citation_validity"] == 1.0
    assert summary["metrics"]["overall"]["decline_accuracy"] == 1.0
    assert {r["id"]: r["answered"] for r in records} == {"q01": True, "q50": False, "q51": False}
    assert len(fake.requests) - before == 1  # the unanswerable questions never reached the model
