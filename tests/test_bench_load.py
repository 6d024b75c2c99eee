"""The load benchmark still runs: a few users against the real bot, every one answered."""

from __future__ import annotations

import itertools
import json
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from fake_telegram import FakeTelegram

from talks.settings import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))

import bench_load


def post_send_message(fake: FakeTelegram, chat_id: int, text: str) -> None:
    """What a bot does to send a message: a real HTTP call to the fake's Bot API."""
    request = urllib.request.Request(
        f"{fake.base_url}{fake.token}/sendMessage",
        data=json.dumps({"chat_id": chat_id, "text": text}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.load(response)["ok"]


def test_wait_for_sent_returns_the_messages_after_the_ones_seen() -> None:
    with FakeTelegram() as fake:
        alice, bob = fake.user(1, "Alice"), fake.user(2, "Bob")
        post_send_message(fake, alice["id"], "first")
        assert [m["text"] for m in fake.wait_for_sent(0, timeout=5)] == ["first"]
        # The waiter blocks until the bot sends; the message comes from another thread.
        sender = threading.Thread(target=post_send_message, args=(fake, bob["id"], "second"))
        sender.start()
        later = fake.wait_for_sent(1, timeout=60)
        sender.join()
        assert [(m["chat"]["id"], m["text"]) for m in later] == [(bob["id"], "second")]
        assert fake.wait_for_sent(2, timeout=0.1) == []


def test_simulated_users_mix_arabic_and_english() -> None:
    pool = bench_load.questions_by_language()
    users = bench_load.simulated_users(4, 1, (2, 3), pool, bench_load.random.Random(1))
    assert [u.user_id for u in users] == [1, 2, 3, 4]
    assert {u.language for u in users} == {"ar", "en"}
    for user in users:
        assert 2 <= len(user.questions) <= 3
        languages = ["ar" if q in pool["ar"] else "en" for q in user.questions]
        assert languages[0] == user.language
        assert all(a != b for a, b in itertools.pairwise(languages))


def test_question_range_rejects_nonsense() -> None:
    assert bench_load.question_range("2-3") == (2, 3)
    assert bench_load.question_range("1") == (1, 1)
    for bad in ("0", "3-2", "two"):
        with pytest.raises(bench_load.argparse.ArgumentTypeError):
            bench_load.question_range(bad)


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_three_users_are_all_answered(tmp_path: Path, model_dir: Path) -> None:
    figures = tmp_path / "load.json"
    exit_code = bench_load.main(["--users", "3", "--questions", "1", "--json", str(figures)])
    report = json.loads(figures.read_text(encoding="utf-8"))
    (run,) = report["runs"]
    assert (run["users"], run["questions"]) == (3, 3)
    assert (run["answered"], run["users_answered"], run["dropped_users"], run["errors"]) == (3, 3, 0, 0)
    assert run["latency_p50_s"] is not None and run["rss_peak_under_load_mb"] > 0
    assert exit_code == 0
