"""Reindexing never stops the answering: a full reindex builds aside and switches when complete,
and `kill -9` of an index run at any point loses nothing."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings

from conftest import make_settings
from corpus.loaders import load_corpus
from retrieval.answering import citation_problems
from retrieval.service import TalksService
from retrieval.store import PassageStore

T = TypeVar("T")
QUESTIONS = [
    "ماذا قال ريابكوف عن أوكرانيا؟",
    "Who was Russia's envoy at the OSCE Permanent Council?",
    "How long did the Sherman-Ryabkov talks in Geneva last?",
    "ماذا قال ستولتنبرغ بعد اجتماع مجلس الناتو وروسيا؟",
]
NOTE = """---
title: Vienna closes the week of talks
lang: en
published: 2022-01-14
---
The OSCE Permanent Council meeting in Vienna on 13 January ended without any agreement on security guarantees.
"""


@dataclass
class Asking:
    """What a thread asking questions in a loop saw."""

    answers: int = 0
    during: int = 0  # questions asked while the work ran
    failures: list[str] = field(default_factory=list)
    index_sizes: set[int] = field(default_factory=set)  # chunks of the index the pointer named, at each look
    latencies_ms: list[float] = field(default_factory=list)


def ask_during(service: TalksService, work: Callable[[], T]) -> tuple[T, Asking]:
    """Run `work` while another thread asks QUESTIONS in a loop; every answer must cite real passages.

    Each round also follows the pointer afresh, as a new process would, and counts that index.
    """
    texts = {a.id: a.text for a in load_corpus(service.settings.index_dirs).articles}
    asking = Asking()
    stop = threading.Event()

    def loop() -> None:
        for question in itertools.cycle(QUESTIONS):
            if stop.is_set():
                return
            started = time.perf_counter()
            try:
                answer = service.ask(question)
                asking.latencies_ms.append((time.perf_counter() - started) * 1000)
                fresh = PassageStore(service.store.client, service.store.name, service.embeddings)
                asking.index_sizes.add(fresh.count())
            except Exception as error:  # noqa: BLE001 - any failure is what the test counts
                asking.failures.append(f"{question}: {error!r}")
                continue
            problems = citation_problems(answer, texts) if answer.answered else ["declined"]
            if problems or not answer.cited_numbers():
                asking.failures.append(f"{question}: {problems or 'no citation'}")
            asking.answers += 1

    thread = threading.Thread(target=loop, name="asking")
    thread.start()
    try:
        result = work()
        asking.during = asked = asking.answers + len(asking.failures)
        deadline = time.monotonic() + 60
        while asking.answers + len(asking.failures) < asked + 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # two more questions after the switch
    finally:
        stop.set()
        thread.join(timeout=60)
    return result, asking


def collections(client: chromadb.ClientAPI) -> set[str]:
    return {c.name for c in client.list_collections()}


def test_questions_during_a_full_reindex_never_fail(model_dir: Path, corpus_dir: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(corpus_dir, corpus)
    service = TalksService(make_settings(tmp_path / "data", [corpus]))
    service.index()
    old = service.store.collection_name
    old_size = service.store.count()
    (corpus / "vienna_note.md").write_text(NOTE, encoding="utf-8")

    switch_s: list[float] = []
    switch_to = service.store.switch_to

    def timed_switch(build: PassageStore) -> None:
        started = time.perf_counter()
        switch_to(build)
        switch_s.append(time.perf_counter() - started)

    service.store.switch_to = timed_switch  # type: ignore[method-assign]
    report, asking = ask_during(service, lambda: service.index(full=True))

    assert asking.failures == [] and asking.during >= 1 and asking.answers >= asking.during + 2
    new = service.store.collection_name
    assert new != old and collections(service.store.client) == {new, service.store.pointer_name}
    assert service.retriever.collection_name == new
    # A reader that looked at any moment found the old index whole or the new one whole.
    assert asking.index_sizes <= {old_size, old_size + 1} and old_size + 1 == service.store.count()
    assert (report.articles_added, report.chunks_added, report.chunks_unchanged) == (1, old_size + 1, 0)
    assert report.new_article_ids and service.ask("Did the OSCE meeting in Vienna end with an agreement?").answered
    print(
        f"\nfull reindex of {old_size + 1} chunks in {report.seconds:.1f}s: {asking.answers} questions, "
        f"{len(asking.failures)} failed, p50 {statistics.median(asking.latencies_ms):.0f} ms; "
        f"pointer switch + drop {switch_s[0] * 1000:.0f} ms"
    )


# --- kill -9 ---------------------------------------------------------------

SYNTHETIC = 100  # one-chunk articles: more than one write of WRITE_BATCH chunks
REPORT = re.compile(
    r"(\d+) articles \((\d+) new, (\d+) updated, (\d+) removed\); chunks: (\d+) added, (\d+) removed, (\d+) unchanged"
)


def write_bulletins(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (folder / f"bulletin_{n:03d}.md").write_text(
            f"---\ntitle: Security talks bulletin {n}\nlang: en\npublished: 2022-01-{10 + n % 18:02d}\n---\n"
            f"Bulletin {n}. Deputy Secretary of State Wendy Sherman and Deputy Foreign Minister Sergei Ryabkov "
            f"met in Geneva for talks on security guarantees; item {n} of the daily digest notes that NATO "
            "and the OSCE were to meet later in the week.\n",
            encoding="utf-8",
        )


def talks_env(model_dir: Path, data_dir: Path, corpus: list[Path]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TALKS_", "TELEGRAM_", "CHROMA_"))}
    return env | {
        "TALKS_DATA_DIR": str(data_dir),
        "TALKS_CORPUS_DIR": ",".join(map(str, corpus)),
        "TALKS_EMBEDDING_MODEL": str(model_dir),
        "TRANSFORMERS_VERBOSITY": "error",
    }


def talks(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "talks.cli", *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )


def index_report(output: str) -> tuple[int, ...]:
    match = REPORT.search(output)
    assert match, output
    return tuple(map(int, match.groups()))


def kill_after_first_write(*args: str, env: dict[str, str]) -> str:
    """Start `talks -v index ...` and SIGKILL it as soon as it has written its first batch of chunks."""
    process = subprocess.Popen(
        [sys.executable, "-m", "talks.cli", "-v", "index", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    log = []
    assert process.stdout is not None
    for line in process.stdout:
        log.append(line)
        if re.search(r"wrote \d+/\d+ chunks", line):
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(log)
    return "".join(log)


def assert_answers_from_the_index(env: dict[str, str]) -> None:
    result = talks("ask", "--json", "ماذا قال ريابكوف عن أوكرانيا؟", env=env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["answered"] and answer["citations"], answer


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_kill_9_while_indexing_loses_nothing(model_dir: Path, corpus_dir: Path, tmp_path: Path) -> None:
    data, bulletins = tmp_path / "data", tmp_path / "bulletins"
    env = talks_env(model_dir, data, [corpus_dir, bulletins])
    bulletins.mkdir()
    first = talks("index", env=env)
    assert first.returncode == 0, first.stderr
    base_articles, *_, base_chunks, _, _ = index_report(first.stdout)
    total_articles, total_chunks = base_articles + SYNTHETIC, base_chunks + SYNTHETIC

    # An incremental run, then a full rebuild, each killed after its first write: the index still answers.
    write_bulletins(bulletins, SYNTHETIC)
    kill_after_first_write(env=env)
    kill_after_first_write("--full", env=env)
    assert_answers_from_the_index(env)

    # The next incremental run finishes the killed one's work.
    resumed = talks("index", env=env)
    assert resumed.returncode == 0, resumed.stderr
    articles, new, updated, removed, added, _, unchanged = index_report(resumed.stdout)
    assert articles == total_articles and added + unchanged == total_chunks
    assert 0 < added < SYNTHETIC, "killed mid-run: part written before, the rest now"
    assert (new, updated, removed) == (added, 0, 0), "an article is written whole or not at all"

    # The next full run resumes the killed build, switches to it and drops the rest.
    rebuilt = talks("index", "--full", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    articles, new, updated, removed, added, _, unchanged = index_report(rebuilt.stdout)
    assert (articles, new, updated, removed) == (total_articles, 0, 0, 0)
    assert added + unchanged == total_chunks and 0 < unchanged < total_chunks, "the killed build was resumed"
    client = chromadb.PersistentClient(path=str(data / "chroma"), settings=ChromaSettings(anonymized_telemetry=False))
    names = collections(client)
    assert len(names) == 2 and "talks__pointer" in names, "the old index and the killed build are dropped"
    assert client.get_collection(next(n for n in names if n != "talks__pointer")).count() == total_chunks
