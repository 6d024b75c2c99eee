"""Chroma in client/server mode: a real `chroma run` on 127.0.0.1 holds the index; the service
indexes into it, answers through it, follows a reindex made by another client, names an outage
and recovers when the server is back, without a restart."""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import chromadb
import httpx
import pytest
from chromadb.config import Settings as ChromaSettings
from pydantic import SecretStr

from bot_process import BotProcess, bot_env, say
from conftest import make_settings
from fake_telegram import FakeTelegram
from corpus.loaders import load_corpus
from retrieval.indexing import index_articles
from retrieval.service import TalksService
from retrieval.store import PassageStore, StoreError, StoreUnavailableError, chroma_client
from test_pipeline import assert_citations_check_out
from test_reindex_safety import ask_during

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CHROMA = Path(sys.executable).with_name("chroma")
TOKEN = "s3cret-t0ken"
ARABIC = "ماذا قال ريابكوف عن أوكرانيا؟"
ENGLISH = "Who was Russia's envoy at the OSCE Permanent Council?"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ChromaServer:
    """`chroma run` as a child process; stop() and start() again keep its data and port."""

    def __init__(self, path: Path, log: Path) -> None:
        self.path, self.log, self.port = path, log, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(CHROMA), "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text(errors="replace")[-2000:]
            try:
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise TimeoutError(f"no heartbeat from {self.url}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


class TokenProxy:
    """What usually stands in front of a Chroma server: refuses requests without the bearer token,
    forwards the rest. It records the Authorization header of every request."""

    def __init__(self, upstream: str, token: str) -> None:
        self.seen: list[str | None] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                authorization = self.headers.get("Authorization")
                proxy.seen.append(authorization)
                if authorization != f"Bearer {token}":
                    self._reply(401, b'{"error":"Unauthorized","message":"bad token"}', "application/json")
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = httpx.request(
                    self.command, upstream + self.path, content=body,
                    headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
                )
                self._reply(answer.status_code, answer.content, answer.headers.get("content-type", "application/json"))

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    folder = tmp_path_factory.mktemp("chroma-server")
    server = ChromaServer(folder / "db", folder / "chroma.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def remote(
    model_dir: Path, corpus_dir: Path, chroma_server: ChromaServer, tmp_path_factory: pytest.TempPathFactory
) -> TalksService:
    """A service whose index lives in the Chroma server: the test corpus, indexed into it."""
    settings = make_settings(
        tmp_path_factory.mktemp("remote-data"), [corpus_dir], chroma_host="127.0.0.1", chroma_port=chroma_server.port
    )
    talks = TalksService(settings)
    report = talks.index()
    assert report.articles == report.articles_added == 8 and report.chunks_added > 0
    return talks


def test_index_and_answer_through_the_server(remote: TalksService, chroma_server: ChromaServer) -> None:
    assert not remote.settings.chroma_path.exists(), "nothing is stored locally"
    direct = chromadb.HttpClient(
        host="127.0.0.1", port=chroma_server.port, settings=ChromaSettings(anonymized_telemetry=False)
    )
    assert {c.name for c in direct.list_collections()} == {"talks__pointer", remote.store.collection_name}
    assert direct.get_collection(remote.store.collection_name).count() == remote.stats().chunks > 0

    arabic = remote.ask(ARABIC)
    assert arabic.answered and arabic.language == "ar" and "خطط لمهاجمة أوكرانيا" in arabic.answer
    assert_citations_check_out(remote, arabic)
    english = remote.ask(ENGLISH)
    assert english.answered and english.language == "en" and "Lukashevich" in english.answer
    assert_citations_check_out(remote, english)


def test_the_auth_token_is_sent_with_every_request(remote: TalksService) -> None:
    proxy = TokenProxy(f"http://127.0.0.1:{remote.settings.chroma_port}", TOKEN)
    try:
        with_token = remote.settings.model_copy(
            update={"chroma_port": proxy.port, "chroma_auth_token": SecretStr(TOKEN)}
        )
        store = PassageStore(chroma_client(with_token), "talks", remote.embeddings)
        assert store.count() == remote.store.count() > 0
        assert proxy.seen and set(proxy.seen) == {f"Bearer {TOKEN}"}

        wrong = with_token.model_copy(update={"chroma_auth_token": SecretStr("wrong")})
        with pytest.raises(StoreError, match=f"cannot use the Chroma server at http://127.0.0.1:{proxy.port}"):
            chroma_client(wrong)
    finally:
        proxy.close()
    assert TOKEN not in repr(with_token) and TOKEN not in str(with_token.chroma_auth_token)


def test_a_reindex_by_another_client_is_followed_without_failures(remote: TalksService) -> None:
    """Like `talks index --full` run by an admin while the bot answers: the bot's service follows the pointer."""
    old = remote.retriever.collection_name
    other = PassageStore(chroma_client(remote.settings), remote.settings.collection_name, remote.embeddings)
    corpus = load_corpus(remote.settings.index_dirs)

    def full_reindex_elsewhere() -> object:
        return index_articles(corpus.articles, other, max_tokens=200, overlap_tokens=40, full=True)

    report, asking = ask_during(remote, full_reindex_elsewhere)
    assert asking.failures == [] and asking.during >= 1 and asking.answers >= asking.during + 2
    assert report.chunks_added == remote.store.count() and report.articles_added == 0
    remote.ask(ENGLISH)
    assert remote.retriever.collection_name == other.collection_name != old


def test_latency_server_vs_embedded(remote: TalksService, service: TalksService) -> None:
    """p50 of ~30 retrievals through the server and through embedded Chroma (printed, not asserted)."""
    questions = [ARABIC, ENGLISH, "How long did the Sherman-Ryabkov talks in Geneva last?"] * 10
    p50 = {}
    for name, talks in (("server", remote), ("embedded", service)):
        talks.retriever.passages(questions[0])  # warm
        timings = []
        for question in questions:
            started = time.perf_counter()
            talks.retriever.passages(question)
            timings.append((time.perf_counter() - started) * 1000)
        p50[name] = statistics.median(timings)
    print(f"\nretrieval p50 over {len(questions)}: server {p50['server']:.1f} ms, embedded {p50['embedded']:.1f} ms")


def test_server_down_is_a_named_error_and_answers_resume_when_it_is_back(
    remote: TalksService, chroma_server: ChromaServer
) -> None:
    chroma_server.stop()
    started = time.perf_counter()
    with pytest.raises(StoreUnavailableError, match="Chroma server cannot be reached"):
        remote.ask(ENGLISH)
    assert time.perf_counter() - started < 10, "an outage is reported at once, not after a long hang"
    assert isinstance(StoreUnavailableError("x"), StoreError), "callers that catch StoreError keep working"

    chroma_server.start()
    answer = remote.ask(ARABIC)
    assert answer.answered and answer.citations
    assert remote.ask(ENGLISH).answered


def test_the_bot_says_temporarily_unavailable_while_the_server_is_down(
    remote: TalksService, chroma_server: ChromaServer, model_dir: Path, corpus_dir: Path, tmp_path: Path
) -> None:
    """The real bot on the Chroma server: the server stops mid-run, a question gets the
    "temporarily unavailable" reply, and once the server is back the same question is answered."""
    with FakeTelegram() as fake:
        env = bot_env(
            fake, tmp_path / "data", corpus_dir, model_dir,
            CHROMA_HOST="127.0.0.1", CHROMA_PORT=str(chroma_server.port),
        )
        bot = BotProcess(fake, env, tmp_path)
        bot.start()
        try:
            user = fake.user(3001, "Nadia", language_code="en")
            assert "[1]" in say(fake, user, ENGLISH)["text"]
            chroma_server.stop()
            assert "temporarily unavailable" in say(fake, user, ENGLISH)["text"]
            chroma_server.start()
            assert "[1]" in say(fake, user, ENGLISH, timeout=120)["text"]
        finally:
            assert bot.stop() == 0
