"""Fuzzing with hostile input: article files (any bytes, any Unicode, broken markup and JSON),
the chunker, Telegram rendering, the question path, and the real bot process.

Properties: nothing crashes (a bad file is an `ArticleParseError` with a reason, never another
exception), nothing is sent unescaped (every message parses with the port of Telegram's own HTML
parser and fits Telegram's length limit), and nothing is lost silently (every record of a file is
an article or a reported reason; rendered messages still show the whole input text).

CI runs a fixed, reproducible set of examples (`derandomize=True`, no example database). A longer
fuzz with fresh random examples: `FUZZ_SCALE=50 .venv/bin/python -m pytest -q tests/test_fuzz.py`
(each test's example count times FUZZ_SCALE).
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from bot_process import BotProcess, bot_env, say
from fake_telegram import FakeTelegram, parse_html, utf16_len
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from bot.render import (
    LRM,
    MESSAGE_LIMIT,
    RLM,
    SOURCE_PART_CHARS,
    escape,
    passage_pages,
    render_answer,
    shorten,
    split_html,
)
from corpus.loaders import ArticleParseError, load_corpus, load_file, parse_markdown
from corpus.models import Article
from corpus.text import normalize_text
from retrieval.answering import Answer, Citation
from retrieval.chunking import chunk_article
from retrieval.sentences import split_sentences
from retrieval.service import QuestionError

FUZZ_SCALE = int(os.environ.get("FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    """`examples` fixed examples in CI; FUZZ_SCALE times as many fresh random ones on demand."""
    return settings(
        max_examples=examples * FUZZ_SCALE,
        derandomize=FUZZ_SCALE == 1,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


# --- hostile text ----------------------------------------------------------------------------

HOSTILE_PIECES = [
    "<b>", "</b>", "</a>", "<a href=\"x\">", "<i>", "<script>alert(1)</script>", "<", ">", "</>", "<b",
    "&amp;", "&", "&lt", "&#0;", "&#x110000;", "&#xd800;", "&nbsp;", "&quot;", "\"", "'",
    "[1]", "[12]", "[n]", "［1］", "[١]", "[1](https://evil.example)", "](", "[", "]",
    "*", "**", "_", "__", "`", "```", "~", "||", "\\", "# ", "---", "- ", "> ",
    "@someone", "/start", "/ask", "https://t.me/x?a=1&b=2", "javascript:alert(1)",
    "\u200f", "\u200e", "\u202e", "\u2066", "\u2069", "\u061c", "\u200b", "\u200d", "\ufeff", "\u0640",
    "\u00a0", "\u2028", "\u2029", "\u0085", "\x00", "\x07", "\x1b[31m", "\x7f", "\x9b", "\r", "\r\n",
    "\t", "\n", "\n\n", " ", "\u0301", "\u0654", "😀", "👍🏽", "𝕏", "\U0010fffd",
    "مرحبا", "ماذا قال ريابكوف؟", "الناتو", "NATO", "Ryabkov said.", "U.S.", "Geneva talks, ",
    "١٢٣", "؟", "،", "…", "—", "«", "»",
]  # fmt: skip

hostile_piece = st.sampled_from(HOSTILE_PIECES)
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)
hostile_text = st.lists(st.one_of(hostile_piece, any_text), max_size=25).map("".join)
# Long lines: one piece repeated, or a long run of random text.
huge_line = st.one_of(
    st.tuples(st.one_of(hostile_piece, any_text.filter(bool)), st.integers(50, 600)).map(
        lambda pair: pair[0] * pair[1]
    ),
    st.text(st.characters(exclude_categories=["Cs"]), min_size=2000, max_size=6000),
)
fuzz_text = st.one_of(hostile_text, hostile_text, huge_line)

PROSE = "The delegations met in Geneva and discussed security guarantees for a long time."


def with_prose(text: str) -> str:
    """Hostile text around a real sentence, so that some examples do make articles."""
    return f"{text}\n{PROSE} {text}\n"


article_body = st.one_of(fuzz_text, fuzz_text.map(with_prose))

# Any JSON value, strings including lone surrogates (written as \\ud800 escapes by json.dumps).
json_string = st.one_of(hostile_text, st.text(max_size=20), st.text(max_size=20).map(lambda s: s + "\ud800"))
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | json_string,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_string, inner, max_size=3),
    max_leaves=8,
)
FIELD_NAMES = ["title", "url", "source_url", "date", "published", "lang", "language", "source", "text", "body"]
field_value = st.one_of(
    json_value, article_body, st.sampled_from(["2022-01-10", "1/11/2022", "2022-13-45", "ar", "en"])
)
# Mostly with a text, so that many records do become articles.
record = st.one_of(
    st.fixed_dictionaries(
        {"text": article_body.map(with_prose)}, optional={name: field_value for name in FIELD_NAMES if name != "text"}
    ),
    st.dictionaries(st.sampled_from(FIELD_NAMES), field_value, max_size=6),
)

# Control characters other than the line break: what normalised text must not contain.
_FORBIDDEN_IN_TEXT = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\u0640]")


# --- article files -----------------------------------------------------------------------------


def assert_valid_article(article: Article) -> None:
    """What every loaded article promises: clean, non-empty, encodable text and title."""
    assert article.text
    assert normalize_text(article.text) == article.text
    assert not _FORBIDDEN_IN_TEXT.search(article.text), ascii(article.text[:200])
    assert article.title
    assert "\n" not in article.title
    assert not _FORBIDDEN_IN_TEXT.search(article.title), ascii(article.title)
    assert re.fullmatch(r"[0-9a-f]{16}", article.id)
    for value in (article.title, article.text, article.url or "", article.source or "", article.source_name):
        value.encode("utf-8")  # no lone surrogates: they cannot be stored, hashed or sent
    assert article.content_hash


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def load_fuzzed(folder: Path, name: str, data: bytes) -> tuple[list[Article], list[str]] | ArticleParseError:
    """Load `data` written as `name`: its articles and reported bad records, or the parse error."""
    path = folder / name
    path.write_bytes(data)
    reported: list[str] = []
    try:
        articles = load_file(path, on_bad_record=reported.append)
    except ArticleParseError as error:
        assert str(error).strip(), "a parse error must say what is wrong"
        event(f"{path.suffix}: refused")
        return error
    event(f"{path.suffix}: {'articles' if articles else 'no articles'}")
    for article in articles:
        assert_valid_article(article)
    assert all(reason.strip() for reason in reported)
    return articles, reported


def encoded(text: str) -> bytes:
    return text.encode("utf-8")


# Invalid UTF-8: random bytes, or good text with random bytes spliced in; also Arabic in cp1256.
invalid_utf8 = st.one_of(
    st.binary(max_size=300),
    st.tuples(article_body.map(encoded), st.binary(min_size=1, max_size=8)).map(
        lambda pair: pair[1] + pair[0] + pair[1]
    ),
    st.just("ماذا قال ريابكوف بعد المحادثات في جنيف؟ قال إن الحوار كان صعبا.".encode("cp1256")),
)

front_matter_field = st.tuples(
    st.sampled_from(FIELD_NAMES),
    st.one_of(
        hostile_text,
        st.sampled_from(
            [
                "2022-13-45",
                "0000-01-01",
                "2022-01-01 25:00:00",
                "[a, b]",
                "{x: 1}",
                '"\\ud800"',
                "!!python/object:os.system x",
                "&a [*a]",
                "1e400",
                "|",
            ]
        ),
    ),
).map(lambda pair: f"{pair[0]}: {pair[1]}")
front_matter = st.lists(front_matter_field, max_size=5).map(lambda lines: "---\n" + "\n".join(lines) + "\n---\n")


@st.composite
def article_file(draw: st.DrawFn) -> tuple[str, bytes]:
    """(file name, content): a fuzzed file of each supported type."""
    suffix = draw(st.sampled_from([".txt", ".md", ".json", ".jsonl"]))
    if draw(st.integers(0, 9)) == 0:
        return f"fuzz{suffix}", draw(invalid_utf8)
    if suffix in (".txt", ".md"):
        head = draw(st.one_of(st.just(""), front_matter, hostile_text.map(lambda t: f"# {t}\n")))
        return f"fuzz{suffix}", encoded(head + draw(article_body))
    if suffix == ".json":
        data = draw(st.one_of(record, st.lists(st.one_of(record, json_value), max_size=4), json_value))
        broken = st.one_of(hostile_text, st.integers(1, 3000).map(lambda n: "[" * n))
        text = json.dumps(data) if draw(st.integers(0, 3)) else draw(broken)
        return "fuzz.json", encoded(text)
    lines = draw(st.lists(st.one_of(record.map(json.dumps), hostile_text.filter(lambda t: "\n" not in t)), max_size=5))
    return "fuzz.jsonl", encoded("\n".join(lines))


def records_in(name: str, data: bytes) -> int | None:
    """How many records a JSON Lines file or JSON list holds (None for other files)."""
    text = data.decode("utf-8", "replace")
    if name.endswith(".jsonl"):
        return sum(1 for line in text.split("\n") if line.strip())
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return len(value) if isinstance(value, list) else None


@fuzz_settings(300)
@given(article_file())
@example(("bad_date.md", b"---\ndate: 2022-13-45\n---\n" + PROSE.encode()))
@example(("bad_time.md", b"---\ndate: 2022-01-01 25:00:00\n---\n" + PROSE.encode()))
@example(("year_zero.md", b"---\ndate: 0000-01-01\n---\n" + PROSE.encode()))
@example(("deep.json", b"[" * 100_000))
@example(("surrogate_url.json", json.dumps({"url": "https://x.example/\ud800", "text": PROSE}).encode()))
@example(("surrogate_title.jsonl", json.dumps({"title": "\udfff", "text": PROSE}).encode()))
@example(("surrogate.md", b'---\ntitle: "\\ud800"\n---\n' + PROSE.encode()))
@example(("bell.txt", f"Title\n{PROSE}\x07\x1b[31m\x7f\x9b".encode()))
def test_a_fuzzed_file_gives_clean_articles_or_a_clear_error(scratch: Path, file: tuple[str, bytes]) -> None:
    name, data = file
    loaded = load_fuzzed(scratch, name, data)
    expected_records = records_in(name, data)
    if isinstance(loaded, tuple) and expected_records is not None:
        articles, reported = loaded
        assert len(articles) + len(reported) == expected_records, "a record vanished without a reason"


@fuzz_settings(25)
@given(title=hostile_text, body=article_body, junk=hostile_text)
def test_fuzzed_html_gives_a_clean_article_or_a_clear_error(scratch: Path, title: str, body: str, junk: str) -> None:
    # Raw (unescaped) hostile text inside the page as well as in properly escaped places.
    page = (
        f"<html><head><title>{title}</title></head><body>{junk}<article><h1>{title}</h1>"
        f"<p>{body}</p><p>{PROSE}</p></article></body></html>"
    )
    load_fuzzed(scratch, "fuzz.html", encoded(page))


def test_a_folder_of_fuzzed_files_reports_every_bad_one(tmp_path: Path) -> None:
    files = {
        "good.md": f"# Geneva\n\n{PROSE}",
        "bad_date.md": f"---\ndate: 2022-13-45\n---\n{PROSE}",
        "deep.json": "[" * 50_000,
        "binary.txt": "\x00\x01\x02",
        "surrogate.jsonl": json.dumps({"url": "https://x.example/\ud800", "text": PROSE}),
    }
    for name, content in files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    loaded = load_corpus([tmp_path])
    assert [article.source_name for article in loaded.articles] == ["good.md"]
    assert sorted(Path(error.path).name for error in loaded.errors) == sorted(set(files) - {"good.md"})
    reasons = {Path(error.path).name: error.reason for error in loaded.errors}
    assert "month must be in 1..12" in reasons["bad_date.md"]
    assert "nested too deeply" in reasons["deep.json"]
    assert "surrogate" in reasons["surrogate.jsonl"]


# Pathological lines that made the markdown and sentence regexes take quadratic time (hours
# for a few hundred kilobytes); guarded by the timeout, not by a timed assertion.
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "line",
    [
        "*a " * 100_000,
        "_a " * 100_000,
        "**a " * 80_000,
        "[" * 300_000,
        "# a" + " " * 300_000 + "b",
        "## a" + " " * 300_000 + "b",
        "[a](" * 80_000,
    ],
    ids=["emphasis", "underscores", "strong", "brackets", "title-spaces", "heading-spaces", "open-links"],
)
def test_huge_markdown_lines_load_in_linear_time(line: str) -> None:
    article = parse_markdown(f"{line}\n\n{PROSE}", source_name="huge.md")
    assert PROSE in article.text


@pytest.mark.timeout(120)
def test_many_short_sentences_split_in_linear_time() -> None:
    text = "Hi. " * 100_000
    assert len(split_sentences(text)) == 100_000


# --- the chunker -----------------------------------------------------------------------------------


def count_tokens(text: str) -> int:
    """Words and punctuation marks: punctuation-heavy text gets many tokens, so long sentences
    are cut at clauses and between words too."""
    return len(re.findall(r"\w+|[^\w\s]", text))


@fuzz_settings(200)
@given(body=article_body, max_tokens=st.integers(5, 120), overlap=st.integers(0, 40))
def test_chunks_cover_the_article_text_with_valid_offsets(body: str, max_tokens: int, overlap: int) -> None:
    text = normalize_text(body)
    if not text:
        return
    article = Article(id="0" * 16, source_name="fuzz.md", title="t", lang="en", text=text)
    chunks = chunk_article(article, count_tokens, max_tokens=max_tokens, overlap_tokens=overlap)
    covered = [False] * len(text)
    for position, chunk in enumerate(chunks):
        assert chunk.position == position
        assert 0 <= chunk.start < chunk.end <= len(text)
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text == chunk.text.strip()
        covered[chunk.start : chunk.end] = [True] * (chunk.end - chunk.start)
    starts = [chunk.start for chunk in chunks]
    assert starts == sorted(starts)
    missed = "".join(char for char, seen in zip(text, covered, strict=True) if not seen)
    assert not missed.strip(), f"text outside every chunk: {missed[:80]!r}"


# --- rendering for Telegram ----------------------------------------------------------------------


def without_line_marks(text: str) -> str:
    """The text without the direction marks `bidi` may put at line starts."""
    return "\n".join(line.lstrip(RLM + LRM) for line in text.split("\n"))


def squeezed(text: str) -> str:
    """The text without white space (splitting may drop it at the cuts) or line marks."""
    return re.sub(r"\s+", "", without_line_marks(text).replace(RLM, "").replace(LRM, ""))


def assert_sendable(markup: str) -> list[str]:
    """`markup` after splitting: each message parses as Telegram HTML and fits one message,
    and together they show everything the unsplit markup shows. Returns the shown texts."""
    whole, _ = parse_html(markup)
    messages = split_html(markup)
    shown = [parse_html(message)[0] for message in messages]
    for text in shown:
        assert 0 < utf16_len(text) <= MESSAGE_LIMIT
    assert squeezed("".join(shown)) == squeezed(whole)
    return shown


@st.composite
def citations(draw: st.DrawFn, n: int) -> Citation:
    passage = draw(st.one_of(hostile_text, huge_line, st.text(min_size=1000, max_size=5000)).filter(str.strip))
    start = draw(st.integers(0, len(passage) - 1))
    end = draw(st.integers(start + 1, len(passage)))
    lang = draw(st.sampled_from(["ar", "en"]))
    return Citation(
        n=n, article_id=f"a{n}", chunk_id=f"c{n}", title=draw(st.one_of(hostile_text, huge_line)),
        url=draw(st.one_of(st.none(), hostile_text, hostile_text.map(lambda t: "https://x.example/" + t))),
        date=draw(st.one_of(st.none(), hostile_text)), lang=lang, source=draw(st.one_of(st.none(), hostile_text)),
        source_name="fuzz.md", quote=passage[start:end], start=start, end=end, passage=passage, score=0.5,
    )  # fmt: skip


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    count = draw(st.integers(0, 4))
    return Answer(
        question=draw(hostile_text),
        language=draw(st.sampled_from(["ar", "en"])),
        answered=draw(st.booleans()),
        answer=draw(fuzz_text),
        citations=[draw(citations(n)) for n in range(1, count + 1)],
        evidence=0.5,
        backend="fuzz",
        note=draw(st.one_of(st.none(), hostile_text)),
    )


@fuzz_settings(200)
@given(answers())
def test_a_fuzzed_answer_renders_to_sendable_html_showing_all_its_text(answer: Answer) -> None:
    markup = render_answer(answer)
    shown = assert_sendable(markup)
    assert squeezed(answer.answer) in squeezed("".join(shown))
    for citation in answer.citations:
        assert squeezed(shorten(citation.title, SOURCE_PART_CHARS)) in squeezed("".join(shown))


def assert_pages_fit(answer: Answer) -> None:
    # Pages are turned by editing one message in place, so each page must fit it whole.
    pages = passage_pages(answer)
    for page in pages:
        shown, _ = parse_html(page)
        assert utf16_len(shown) <= MESSAGE_LIMIT
    assert len(pages) <= max(1, len(answer.citations))


@fuzz_settings(150)
@given(answers())
def test_fuzzed_passage_pages_each_fit_one_message(answer: Answer) -> None:
    assert_pages_fit(answer)


def test_a_passage_of_emoji_under_a_long_title_fits_one_page() -> None:
    # Found by the fuzzer: the passage was cut at 3000 characters, but an emoji is two UTF-16
    # units (Telegram's unit), and a long title came on top.
    passage = "😀" * 5000
    quote = "😀" * 10
    citation = Citation(
        n=1, article_id="a1", chunk_id="c1", title="T" * 2000, url=None, date="2022-01-10", lang="en",
        source="S" * 2000, source_name="x.md", quote=quote, start=0, end=len(quote), passage=passage, score=0.5,
    )  # fmt: skip
    answer = Answer(
        question="q", language="en", answered=True, answer="a [1]", citations=[citation], evidence=0.5, backend="t"
    )
    assert_pages_fit(answer)
    assert f"<b>{quote}</b>" in passage_pages(answer)[0]


@fuzz_settings(200)
@given(fuzz_text)
def test_split_html_keeps_escaped_text_whole(text: str) -> None:
    assert_sendable(escape(text))


# --- the question path ----------------------------------------------------------------------------

question_text = st.one_of(hostile_text, huge_line, st.text(max_size=200), st.sampled_from(["", " ", "\n\t", "\u200b"]))


@fuzz_settings(20)
@given(question_text)
@example("ماذا قال ريابكوف <b>بعد</b> محادثات جنيف؟ [1] &amp;")
@example("\x00\u202e" * 10)
def test_any_question_gets_an_answer_or_a_question_error(service: object, question: str) -> None:
    limit = service.settings.max_question_chars
    refused = not question.strip() or len(question.strip()) > limit
    try:
        answer = service.ask(question)
    except QuestionError:
        assert refused
        return
    assert not refused
    assert_sendable(render_answer(answer))
    for page in passage_pages(answer):
        assert utf16_len(parse_html(page)[0]) <= MESSAGE_LIMIT


# --- end to end: the real bot process ---------------------------------------------------------

E2E_MESSAGES = 20
E2E_SEED = 20220110


def hostile_messages(count: int, seed: int) -> list[str]:
    """Messages built from hostile pieces by a seeded generator: reproducible, different kinds."""
    rng = random.Random(seed)
    messages = []
    for number in range(count):
        pieces = rng.choices(HOSTILE_PIECES, k=rng.randint(1, 30))
        text = "".join(pieces) + " " + rng.choice(["ماذا قال ريابكوف؟", "What did NATO say?", ""])
        if number % 7 == 3:
            text *= 60  # over the question length limit
        # Telegram never delivers text that is empty after trimming, nor a NUL.
        text = text.replace("\x00", "")
        messages.append(text if text.strip() else "&amp;")
    return messages


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_the_bot_answers_every_hostile_message_and_stays_up(tmp_path: Path, corpus_dir: Path, model_dir: Path) -> None:
    with FakeTelegram() as fake:
        env = bot_env(fake, tmp_path / "data", corpus_dir, model_dir, TALKS_RATE_LIMIT_PER_MINUTE="1000")
        bot = BotProcess(fake, env, tmp_path)
        bot.start()
        try:
            user = fake.user(2001, "Mallory", language_code="en")
            for message in hostile_messages(E2E_MESSAGES, E2E_SEED):
                reply = say(fake, user, message, timeout=180)
                assert reply["text"].strip()
            sends = fake.calls("sendMessage")
            rejected = [call["response"] for call in sends if call["status"] != 200]
            assert not rejected, rejected
            assert all(call["params"].get("parse_mode") == "HTML" for call in sends), "fell back to plain text"
            assert bot.process is not None and bot.process.poll() is None
        finally:
            assert bot.stop() == 0
