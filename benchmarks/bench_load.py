"""Load on the real bot: N simulated Telegram users asking questions at the same time.

    .venv/bin/python benchmarks/bench_load.py                          # N = 10, 50, 200
    .venv/bin/python benchmarks/bench_load.py --users 50 --questions 2-3 --json load.json

The real `talks bot` process (extractive answers, SQLite state) long-polls the fake Telegram
Bot API of tests/fake_telegram.py on 127.0.0.1. Each simulated user asks 2-3 questions from
tests/data/qa.jsonl, alternating Arabic and English, one at a time like a person: the next
question only after the answer to the previous one arrived. All N users start together.

- The test corpus (tests/data/articles + corpus/articles) is indexed once, by `talks index`,
  into one data dir that every run reuses; the bot is restarted for every N, so each run
  starts from a cold process and its memory figures are its own; one warm-up question, not
  counted, precedes the users.
- Latency: from the question's update being queued in the fake to the arrival of the bot's
  answer message (the one carrying the 👍/👎 buttons). Throughput: answers per second from
  the start to the last answer.
- The per-user rate limit (TALKS_RATE_LIMIT_PER_MINUTE, default 10 a minute) stays at its
  default unless a user asks more questions than that, in which case it is raised to match:
  the benchmark measures load, not the limiter.
- Errors: questions the bot answered with an error text (rate limited, index unavailable,
  "something went wrong"). Dropped: users not fully answered (an error, no answer within
  --timeout, or the bot exited). Any dropped user makes the exit status 1.
- Memory: the bot's RSS when ready, the highest RSS sampled (every 0.1 s) under load, and
  VmHWM, the peak over the process's life (model load included), from /proc/<pid>/status.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Self

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from bot_process import JSON, TALKS, BotProcess, bot_env, buttons, say
from fake_telegram import FakeTelegram, parse_html
from rich.console import Console
from rich.table import Table

from bot.texts import LANGUAGES, Lang, text
from talks.settings import BUNDLED_CORPUS_DIR, BUNDLED_MODEL_DIR, Settings

logger = logging.getLogger("bench_load")

QA_FILE = ROOT / "tests" / "data" / "qa.jsonl"
TEST_ARTICLES = ROOT / "tests" / "data" / "articles"
USER_ID_BLOCK = 100_000  # run k's users are k * USER_ID_BLOCK + 1, 2, …: no history shared between runs
RSS_SAMPLE_INTERVAL_S = 0.1
INBOX_WAKE_S = 0.5  # how often the inbox checks that the bot still runs when it sends nothing
# What the bot says instead of an answer when it cannot answer (bot/handlers).
ERROR_REPLY_KEYS = ("empty_question", "rate_limited", "no_index", "store_unavailable", "error")
FEEDBACK_BUTTON_PREFIX = "fb:"  # only a finished answer carries the 👍/👎 buttons
WARM_UP_QUESTION = "What did the United States and Russia discuss in Geneva?"

Outcome = Literal["answered", "error", "timeout", "bot exited"]
BOT_EXITED = None  # put in every inbox when the bot process ends


# --- questions and users ----------------------------------------------------------------


def questions_by_language(path: Path = QA_FILE) -> dict[Lang, list[str]]:
    by_language: dict[Lang, list[str]] = {lang: [] for lang in LANGUAGES}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            by_language[row["lang"]].append(row["question"])
    return by_language


@dataclass(frozen=True)
class SimulatedUser:
    user_id: int
    language: Lang  # their Telegram language_code: the language of their first question
    questions: tuple[str, ...]


def simulated_users(
    count: int, first_id: int, per_user: tuple[int, int], pool: dict[Lang, list[str]], rng: random.Random
) -> list[SimulatedUser]:
    """`count` users, each asking between per_user[0] and per_user[1] questions, alternating
    Arabic and English (half the users start with each)."""
    users = []
    for number in range(count):
        asked = rng.randint(*per_user)
        languages = [LANGUAGES[(number + k) % len(LANGUAGES)] for k in range(asked)]
        users.append(
            SimulatedUser(
                user_id=first_id + number,
                language=languages[0],
                questions=tuple(rng.choice(pool[lang]) for lang in languages),
            )
        )
    return users


def error_replies() -> frozenset[str]:
    """The visible texts of the bot's error replies, in both languages."""
    return frozenset(parse_html(text(key, lang))[0] for key in ERROR_REPLY_KEYS for lang in LANGUAGES)


# --- following the bot's messages ---------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    message: JSON
    at: float  # time.monotonic() when the benchmark saw it


class BackgroundThread:
    """Runs `_run` in a daemon thread while the `with` block lasts; `_run` returns once
    `_stopping` is set."""

    def __init__(self, name: str) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        raise NotImplementedError


class Inboxes(BackgroundThread):
    """One thread follows every message the bot sends and hands it, stamped with its arrival
    time, to the inbox of the user whose chat it went to."""

    def __init__(self, fake: FakeTelegram, bot: BotProcess, user_ids: Sequence[int]) -> None:
        self.fake, self.bot = fake, bot
        self._inboxes: dict[int, queue.Queue[Arrival | None]] = {uid: queue.Queue() for uid in user_ids}
        self._seen = len(fake.sent(include_deleted=True))  # messages of earlier runs
        super().__init__("bench-inboxes")

    def of(self, user_id: int) -> queue.Queue[Arrival | None]:
        return self._inboxes[user_id]

    def _run(self) -> None:  # follow the bot's messages
        while not self._stopping.is_set():
            messages = self.fake.wait_for_sent(self._seen, timeout=INBOX_WAKE_S)
            arrived = time.monotonic()
            self._seen += len(messages)
            for message in messages:
                inbox = self._inboxes.get(message["chat"]["id"])
                if inbox is not None:
                    inbox.put(Arrival(message, arrived))
            if self.bot.process is None or self.bot.process.poll() is not None:
                for inbox in self._inboxes.values():
                    inbox.put(BOT_EXITED)
                return


# --- one user's conversation ----------------------------------------------------------------


@dataclass
class QuestionResult:
    user_id: int
    question: str
    outcome: Outcome
    latency_s: float | None = None
    answered_at: float | None = None  # time.monotonic() of the answer's arrival
    reply: str = ""  # the error text, for errors


def await_answer(
    inbox: queue.Queue[Arrival | None], question_id: int, deadline: float, errors: frozenset[str]
) -> tuple[Outcome, float | None, str]:
    """Wait for the answer to the question with message id `question_id`: the outcome, the
    arrival time of the answer (answered only) and the bot's error text (errors only)."""
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            arrival = inbox.get(timeout=remaining)
        except queue.Empty:
            break
        if arrival is BOT_EXITED:
            return "bot exited", None, ""
        message = arrival.message
        if message["message_id"] <= question_id:
            continue  # sent before the question
        if any(data.startswith(FEEDBACK_BUTTON_PREFIX) for data in buttons(message)):
            return "answered", arrival.at, ""
        if message.get("text") in errors:
            return "error", None, message["text"]
        # else: the first part of an answer too long for one message; its last part follows
    return "timeout", None, ""


def converse(
    fake: FakeTelegram,
    user: SimulatedUser,
    inbox: queue.Queue[Arrival | None],
    start: threading.Barrier,
    timeout: float,
    errors: frozenset[str],
) -> list[QuestionResult]:
    """The user's questions, each asked after the previous answer; stops when the bot stays silent."""
    telegram_user = fake.user(user.user_id, f"User {user.user_id}", language_code=user.language)
    start.wait()
    results = []
    for question in user.questions:
        update = fake.send_text(telegram_user, question)
        queued = time.monotonic()
        outcome, arrived, reply = await_answer(inbox, update["message"]["message_id"], queued + timeout, errors)
        latency = arrived - queued if arrived is not None else None
        results.append(QuestionResult(user.user_id, question, outcome, latency, arrived, reply))
        if outcome in ("timeout", "bot exited"):
            break
    return results


# --- the bot's memory -----------------------------------------------------------------------


def proc_status_mb(pid: int, field_name: str) -> float:
    """A VmRSS / VmHWM line of /proc/<pid>/status, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024
    raise KeyError(f"{field_name} is not in /proc/{pid}/status")


class RssSampler(BackgroundThread):
    """The highest VmRSS of a process, sampled in a background thread while in use."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_mb = pid, 0.0
        super().__init__("bench-rss")

    def _run(self) -> None:  # sample
        while True:
            try:
                self.peak_mb = max(self.peak_mb, proc_status_mb(self.pid, "VmRSS"))
            except (FileNotFoundError, ProcessLookupError):
                return  # the process ended
            if self._stopping.wait(RSS_SAMPLE_INTERVAL_S):
                return


# --- one run with N users ------------------------------------------------------------------------


@dataclass
class RunReport:
    users: int
    questions: int
    answered: int
    errors: int
    timeouts: int
    users_answered: int
    dropped_users: int
    seconds: float  # the whole run, waits for answers that never came included
    answering_seconds: float  # from the start to the last answer: what the throughput is over
    throughput_per_s: float
    latency_p50_s: float | None
    latency_p95_s: float | None
    latency_p99_s: float | None
    latency_max_s: float | None
    bot_startup_s: float
    warm_up_answer_s: float
    rss_ready_mb: float
    rss_peak_under_load_mb: float
    rss_hwm_mb: float
    loadavg_before: tuple[float, float, float]
    loadavg_after: tuple[float, float, float]
    error_replies: dict[str, int] = field(default_factory=dict)
    api_calls: dict[str, int] = field(default_factory=dict)  # the bot's Bot API calls during the run, by method


def percentile(sorted_samples: Sequence[float], fraction: float) -> float | None:
    """The `fraction` quantile (linear interpolation between the closest ranks)."""
    if not sorted_samples:
        return None
    if len(sorted_samples) == 1:
        return sorted_samples[0]
    cuts = statistics.quantiles(sorted_samples, n=100, method="inclusive")
    return cuts[round(fraction * 100) - 1]


def summarize(
    users: Sequence[SimulatedUser], results: Sequence[QuestionResult], started: float, finished: float
) -> dict[str, object]:
    """The figures of a run that started and finished at these time.monotonic() values."""
    seconds = finished - started
    answering = max((r.answered_at - started for r in results if r.answered_at is not None), default=0.0)
    latencies = sorted(r.latency_s for r in results if r.outcome == "answered" and r.latency_s is not None)
    answers_per_user = Counter(r.user_id for r in results if r.outcome == "answered")
    fully_answered = sum(answers_per_user[user.user_id] == len(user.questions) for user in users)
    return {
        "users": len(users),
        "questions": sum(len(user.questions) for user in users),
        "answered": len(latencies),
        "errors": sum(r.outcome == "error" for r in results),
        "timeouts": sum(r.outcome == "timeout" for r in results),
        "users_answered": fully_answered,
        "dropped_users": len(users) - fully_answered,
        "seconds": seconds,
        "answering_seconds": answering,
        "throughput_per_s": len(latencies) / answering if answering > 0 else 0.0,
        "latency_p50_s": percentile(latencies, 0.50),
        "latency_p95_s": percentile(latencies, 0.95),
        "latency_p99_s": percentile(latencies, 0.99),
        "latency_max_s": latencies[-1] if latencies else None,
        "error_replies": dict(Counter(r.reply for r in results if r.outcome == "error")),
    }


def run_users(
    fake: FakeTelegram, bot: BotProcess, users: Sequence[SimulatedUser], timeout: float
) -> tuple[list[QuestionResult], float, float]:
    """Every user's conversation at once: their results, and the time.monotonic() of the start
    and of the end."""
    errors = error_replies()
    start = threading.Barrier(len(users) + 1)
    results: list[QuestionResult] = []
    results_lock = threading.Lock()

    with Inboxes(fake, bot, [user.user_id for user in users]) as inboxes:

        def play(user: SimulatedUser) -> None:
            conversation = converse(fake, user, inboxes.of(user.user_id), start, timeout, errors)
            with results_lock:
                results.extend(conversation)

        threads = [threading.Thread(target=play, args=(user,), name=f"user-{user.user_id}") for user in users]
        for thread in threads:
            thread.start()
        start.wait()
        started = time.monotonic()
        for thread in threads:
            thread.join()
        finished = time.monotonic()
    return results, started, finished


def warm_up(fake: FakeTelegram, user_id: int, timeout: float) -> float:
    """One question before the run, so that the figures are not the first answer's one-off costs;
    returns the seconds it took."""
    user = fake.user(user_id, "Warm-up user")
    started = time.monotonic()
    say(fake, user, WARM_UP_QUESTION, timeout=timeout)
    return time.monotonic() - started


def start_bot(fake: FakeTelegram, env: dict[str, str], workdir: Path, timeout: float) -> tuple[BotProcess, float]:
    """A fresh `talks bot`, once it says it is ready; and the seconds that took. (Not
    BotProcess.start's own wait: loading the model takes minutes on a machine this busy.)"""
    bot = BotProcess(fake, env, workdir)
    started = time.monotonic()
    bot.start(wait=False)
    try:
        bot.wait_for_log(f"bot @{fake.bot_user['username']} ready", timeout)
    except BaseException:
        bot.stop()
        raise
    return bot, time.monotonic() - started


def measure(
    fake: FakeTelegram, env: dict[str, str], workdir: Path, users: Sequence[SimulatedUser], args: argparse.Namespace
) -> RunReport:
    """Start a fresh bot, warm it up with one question, let `users` loose on it, stop it."""
    logger.info("starting the bot for %d users", len(users))
    bot, startup_s = start_bot(fake, env, workdir, args.startup_timeout)
    pid = bot.process.pid
    timeout = args.timeout
    try:
        rss_ready = proc_status_mb(pid, "VmRSS")
        warm_up_s = warm_up(fake, users[0].user_id - 1, timeout)
        loadavg_before = os.getloadavg()
        calls_before = len(fake.calls())
        with RssSampler(pid) as rss:
            results, started, finished = run_users(fake, bot, users, timeout)
        api_calls = Counter(call["method"] for call in fake.calls()[calls_before:])
        hwm = proc_status_mb(pid, "VmHWM") if bot.process.poll() is None else 0.0
        report = RunReport(
            **summarize(users, results, started, finished),
            api_calls=dict(api_calls.most_common()),
            bot_startup_s=startup_s,
            warm_up_answer_s=warm_up_s,
            rss_ready_mb=rss_ready,
            rss_peak_under_load_mb=rss.peak_mb,
            rss_hwm_mb=hwm,
            loadavg_before=loadavg_before,
            loadavg_after=os.getloadavg(),
        )
    finally:
        exit_code = bot.stop()
    if report.dropped_users:
        logger.warning(
            "%d of %d users not fully answered (bot exit code %s); end of the bot's log:\n%s",
            report.dropped_users, report.users, exit_code, bot.log()[-3000:],
        )
    return report


# --- setup, output, command line ------------------------------------------------------------------


def prepare_corpus(workdir: Path) -> Path:
    corpus = workdir / "corpus"
    corpus.mkdir()
    for source in (BUNDLED_CORPUS_DIR, TEST_ARTICLES):
        for path in source.iterdir():
            shutil.copy(path, corpus / path.name)
    return corpus


def index_corpus(env: dict[str, str], workdir: Path) -> float:
    """`talks index` into the data dir every run shares; returns the seconds it took."""
    started = time.monotonic()
    done = subprocess.run([TALKS, "index"], cwd=workdir, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`talks index` failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    logger.info("indexed: %s", done.stdout.strip())
    return time.monotonic() - started


def rate_limit_env(max_questions: int) -> dict[str, str]:
    """Raise the per-user rate limit only where a user would otherwise hit it."""
    default = Settings.model_fields["rate_limit_per_minute"].default
    return {"TALKS_RATE_LIMIT_PER_MINUTE": str(max_questions)} if max_questions > default else {}


def seconds_text(*values: float | None) -> str:
    return " / ".join("–" if value is None else f"{value:.1f}" for value in values)


def print_table(reports: Sequence[RunReport], console: Console) -> None:
    table = Table(title="Load on `talks bot`: fake Telegram on 127.0.0.1, extractive answers")
    for column in (
        "users", "questions", "answered", "errors", "dropped users", "answers/s",
        "latency p50 / p95 / p99 s", "bot RSS MB: ready / load peak / HWM", "load avg",
    ):
        table.add_column(column, justify="right")
    for r in reports:
        table.add_row(
            str(r.users), str(r.questions), str(r.answered), str(r.errors), str(r.dropped_users),
            f"{r.throughput_per_s:.2f}", seconds_text(r.latency_p50_s, r.latency_p95_s, r.latency_p99_s),
            f"{r.rss_ready_mb:.0f} / {r.rss_peak_under_load_mb:.0f} / {r.rss_hwm_mb:.0f}",
            f"{r.loadavg_before[0]:.1f} → {r.loadavg_after[0]:.1f}",
        )
    console.print(table)


def question_range(value: str) -> tuple[int, int]:
    """"2-3" (between 2 and 3 questions per user) or "1"."""
    low, _, high = value.partition("-")
    try:
        bounds = int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or a range like 2-3, got {value!r}") from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"expected 1 <= low <= high, got {value!r}")
    return bounds


def user_counts(value: str) -> list[int]:
    try:
        counts = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected user counts like 10,50,200, got {value!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive user counts, got {value!r}")
    return counts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=user_counts, default=[10, 50, 200], help="user counts, one run each")
    parser.add_argument("--questions", type=question_range, default=(2, 3), help="questions per user, e.g. 2-3")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a user waits for each answer")
    parser.add_argument(
        "--startup-timeout", type=float, default=900.0, help="seconds the bot may take to load and get ready"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the question picks")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def write_json(path: Path, argv: Sequence[str], index_seconds: float | None, reports: Sequence[RunReport]) -> None:
    figures = {
        "command": [Path(sys.argv[0]).name, *argv],
        "cpus": os.cpu_count(),
        "index_seconds": index_seconds,
        "runs": [asdict(report) for report in reports],
    }
    path.write_text(json.dumps(figures, indent=2, ensure_ascii=False), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when every user of every run was fully answered, else 1. The runs
    done are reported even when a later one fails."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    pool = questions_by_language()
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="talks-load-"))
    reports: list[RunReport] = []
    index_seconds: float | None = None
    try:
        with FakeTelegram() as fake:
            env = bot_env(
                fake, workdir / "data", prepare_corpus(workdir), BUNDLED_MODEL_DIR, **rate_limit_env(args.questions[1])
            )
            index_seconds = index_corpus(env, workdir)
            for run, count in enumerate(args.users, start=1):
                users = simulated_users(count, run * USER_ID_BLOCK + 1, args.questions, pool, rng)
                reports.append(measure(fake, env, workdir, users, args))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if reports:
            print_table(reports, Console())
        if args.json:
            write_json(args.json, argv, index_seconds, reports)
    dropped = sum(report.dropped_users for report in reports)
    if dropped:
        logger.error("%d users were not fully answered", dropped)
        return 1
    logger.info("every user of every run was answered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
