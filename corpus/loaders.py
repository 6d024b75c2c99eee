"""Read article files (.txt, .md, .html, .json, .jsonl) into clean `Article`s.

Each format has a parser that works on a string, so the sources fetcher can reuse them;
`load_file` and `load_corpus` add file reading and error reporting on top.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from functools import partial
from html import unescape as unescape_html
from pathlib import Path
from typing import NoReturn

import yaml

from corpus.models import Article, CorpusLoad, Language, LoadError
from corpus.text import (
    detect_language,
    is_arabic_letter,
    normalize_text,
    stable_article_id,
)

logger = logging.getLogger(__name__)


class ArticleParseError(ValueError):
    """A file or record that cannot become an article; the message says why."""


# --- reading bytes ------------------------------------------------------------

# C0 control characters other than tab, newline, carriage return and form feed.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f]")


def read_text_file(path: Path) -> str:
    """The file's text: UTF-8 (BOM tolerated), or Arabic Windows-1256 when that is clearly what it is."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArticleParseError(f"cannot read file: {exc.strerror or exc}") from exc
    return decode_text(data)


def decode_text(data: bytes) -> str:
    """Decode file bytes as UTF-8, falling back to cp1256 only if that yields clean Arabic text."""
    if not data.strip():
        raise ArticleParseError("empty file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = _decode_arabic_windows(data)
    if not text.strip():
        raise ArticleParseError("empty file")
    if "\x00" in text:  # valid UTF-8 can still be binary; text files never hold NUL
        raise ArticleParseError("binary data, not text")
    return text


def _decode_arabic_windows(data: bytes) -> str:
    # cp1256 assigns a character to every byte, so decoding never fails by itself:
    # "clean" means no control characters and some Arabic letters.
    text = data.decode("cp1256")
    if _CONTROL_CHARS.search(text) or not any(is_arabic_letter(char) for char in text):
        raise ArticleParseError("not UTF-8 text")
    return text


# --- field values ---------------------------------------------------------------

_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)")
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?!\d)")

# Canonical field name -> accepted keys, in order of preference.
_FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "title": ("title",),
    "url": ("url", "source_url"),
    "published": ("date", "published"),
    "lang": ("lang", "language"),
    "source": ("source", "publisher"),
    "text": ("text", "body", "content"),
}


def parse_date(value: object) -> date | None:
    """A date from a date, datetime, ISO string (trailing words allowed) or US `M/D/YYYY` string."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        found = _find_date(value.strip(), at_start=True)
        if found is not None:
            return found
    raise ArticleParseError(f"unrecognised date {value!r}")


def _find_date(text: str, *, at_start: bool) -> date | None:
    """The first ISO (`YYYY-MM-DD`) or US (`M/D/YYYY`) date; None if absent or impossible."""
    if iso := (_ISO_DATE.match(text) if at_start else _ISO_DATE.search(text)):
        year, month, day = iso.groups()
    elif us := (_US_DATE.match(text) if at_start else _US_DATE.search(text)):
        month, day, year = us.groups()
    else:
        return None
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        return None


def _resolve_aliases(mapping: Mapping[str, object]) -> dict[str, object]:
    """Canonical field name -> the first non-empty value among its aliases (keys case-insensitive)."""
    lowered = {str(key).strip().lower(): value for key, value in mapping.items()}
    return {
        name: next((lowered[key] for key in keys if lowered.get(key) not in (None, "")), None)
        for name, keys in _FIELD_ALIASES.items()
    }


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _as_text(value: object, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ArticleParseError(f"{field!r} must be text, not {type(value).__name__}")
    text = str(value)
    if _LONE_SURROGATE.search(text):  # from a "\ud800" escape in JSON or YAML: not a character
        raise ArticleParseError(f"{field!r} contains a lone surrogate escape, not text")
    return text.strip() or None


_LANGUAGE_CODES: dict[str, Language] = {"ar": "ar", "en": "en"}


def _language(value: object, title: str, text: str) -> Language:
    """The given language if it is ar/en (`en-US` counts as en), else detected from the text."""
    if isinstance(value, str):
        code = value.strip().lower().replace("_", "-").split("-")[0]
        if code in _LANGUAGE_CODES:
            return _LANGUAGE_CODES[code]
    return detect_language(f"{title}\n{text}")


# --- building an article --------------------------------------------------------

_SHORT_LINE_MAX_CHARS = 25
_SHORT_LINE_MAX_WORDS = 3
_FALLBACK_TITLE_MAX_CHARS = 100


def _is_short_line(line: str) -> bool:
    return len(line) <= _SHORT_LINE_MAX_CHARS and len(line.split()) <= _SHORT_LINE_MAX_WORDS


def _has_real_text(text: str) -> bool:
    """At least one line longer than a label or counter, with letters in it."""
    return any(
        not _is_short_line(line) and any(char.isalpha() for char in line) for line in text.split("\n")
    )


def _one_line(text: str) -> str:
    return " ".join(normalize_text(text).split())


def _title_from_text(text: str) -> str:
    first_line = text.split("\n", 1)[0]
    if len(first_line) <= _FALLBACK_TITLE_MAX_CHARS:
        return first_line
    return first_line[:_FALLBACK_TITLE_MAX_CHARS].rsplit(" ", 1)[0] + "…"


def _build_article(
    *,
    title: str | None,
    text: str,
    source_name: str,
    url: str | None = None,
    published: date | None = None,
    lang: object = None,
    source: str | None = None,
) -> Article:
    """Normalise and validate the parts; a missing title falls back to the text's first line."""
    text = normalize_text(text)
    title = _one_line(title or "")
    if not title and not text:
        raise ArticleParseError("no title and no text")
    if not _has_real_text(text):
        raise ArticleParseError("no body text")
    title = title or _title_from_text(text)
    return Article(
        id=stable_article_id(url, source_name),
        source_name=source_name,
        title=title,
        url=url,
        published=published,
        lang=_language(lang, title, text),
        source=source,
        text=text,
    )


def _article_from_fields(fields: Mapping[str, object], *, text: str, source_name: str) -> Article:
    """An article from canonical fields (see `_resolve_aliases`) and a body."""
    return _build_article(
        title=_as_text(fields["title"], "title"),
        text=text,
        source_name=source_name,
        url=_as_text(fields["url"], "url"),
        published=parse_date(fields["published"]),
        lang=fields["lang"],
        source=_as_text(fields["source"], "source"),
    )


# --- scraped pages (.txt) --------------------------------------------------------

_BULLET_CHARS = "•·●▪◦‣*|-–—"
_SLUG = re.compile(r"[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)+")


def is_page_clutter(line: str) -> bool:
    """A short line that is page furniture, not prose: counters, times, dates, slugs, labels."""
    core = line.strip(_BULLET_CHARS + " ")
    if not core:
        return True
    if not _is_short_line(core):
        return False
    return (
        not any(char.isalpha() for char in core)  # "4", "00:00", "1/11/2022"
        or core.endswith(":")  # "Share:", "مشاركة :"
        or _SLUG.fullmatch(core) is not None  # "news-picture", "tags-list"
        or any(map(_is_number, core.split()))  # "Views 1234", "3 comments"
    )


def _is_number(token: str) -> bool:
    return any(char.isdigit() for char in token) and not any(char.isalpha() for char in token)


def parse_scraped_page(raw: str, *, source_name: str) -> Article:
    """A scraped page: first line is the title, a `M/D/YYYY` line the date, edge clutter dropped."""
    lines = [line for line in normalize_text(raw).split("\n") if line]
    if not lines:
        raise ArticleParseError("empty file")
    title, rest = lines[0], lines[1:]
    prose_indices = [index for index, line in enumerate(rest) if not is_page_clutter(line)]
    if not prose_indices:
        raise ArticleParseError("no body text")
    start, end = prose_indices[0], prose_indices[-1] + 1
    edge_clutter = rest[:start] + rest[end:]
    dates = (_find_date(line, at_start=False) for line in edge_clutter)
    published = next((found for found in dates if found is not None), None)
    return _build_article(
        title=title, text="\n\n".join(rest[start:end]), source_name=source_name, published=published
    )


# --- front matter (.txt, .md) ------------------------------------------------------

_FRONT_MATTER_FENCE = "---"


def split_front_matter(raw: str) -> tuple[dict[str, object], str] | None:
    """(front-matter fields, body) when `raw` starts with a `---` YAML block, else None."""
    lines = raw.split("\n")
    opening = next((index for index, line in enumerate(lines) if line.strip("\ufeff \t\r")), None)
    if opening is None or lines[opening].strip("\ufeff \t\r") != _FRONT_MATTER_FENCE:
        return None
    for closing in range(opening + 1, len(lines)):
        if lines[closing].rstrip() == _FRONT_MATTER_FENCE:
            block = "\n".join(lines[opening + 1 : closing])
            return _parse_yaml_mapping(block, first_line=opening + 2), "\n".join(lines[closing + 1 :])
    raise ArticleParseError("front matter has no closing '---' line")


def _parse_yaml_mapping(block: str, *, first_line: int) -> dict[str, object]:
    """Parse the YAML block; `first_line` (1-based, in the file) makes error positions point into the file."""
    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError as exc:
        raise ArticleParseError(f"invalid YAML front matter: {_yaml_message(exc, first_line)}") from exc
    except ValueError as exc:  # a value YAML cannot build, e.g. the date 2022-13-45
        raise ArticleParseError(f"invalid YAML front matter: {exc}") from exc
    except RecursionError as exc:
        raise ArticleParseError("invalid YAML front matter: nested too deeply") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ArticleParseError("front matter is not a list of `key: value` lines")
    return data


def _yaml_message(exc: yaml.YAMLError, first_line: int) -> str:
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return " ".join(str(exc).split())
    mark = exc.problem_mark
    context = f"{exc.context}: " if exc.context else ""
    return f"{context}{exc.problem} (line {first_line + mark.line}, column {mark.column + 1})"


def parse_article_text(raw: str, *, source_name: str) -> Article:
    """An article from .txt content: front matter + body, or a scraped page."""
    front = split_front_matter(raw)
    if front is None:
        return parse_scraped_page(raw, source_name=source_name)
    fields, body = front
    return _article_from_fields(_resolve_aliases(fields), text=body, source_name=source_name)


# --- markdown (.md) ------------------------------------------------------------------

# Each pattern's inner part stops at the next opening delimiter: a long line of unclosed
# `*a *a …` or `[[[…` would otherwise be scanned to its end from every delimiter (quadratic).
_MD_LEADING_H1 = re.compile(r"\A\s*#[ \t]+(.+)")
_MD_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*)$", re.MULTILINE)
_MD_LINK = re.compile(r"!?\[([^\[\]]*)\]\([^)\[]*\)")
_MD_STRONG = re.compile(r"(\*\*|__)(?=\S)((?:(?!\1).)+?)(?<=\S)\1")
# Single * or _ around text, not inside words (snake_case, 2*3*4 stay as they are).
_MD_EMPHASIS = re.compile(r"(?<![\w*])([*_])(?=\S)((?:(?!\1).)+?)(?<=\S)\1(?![\w*])")


def _heading_text(heading: re.Match[str]) -> str:
    """A heading line's text without its closing `#`s (string methods: a regex for them
    backtracks quadratically over long runs of spaces)."""
    text = heading.group(1).rstrip(" \t")
    without_closing = text.rstrip("#")
    if without_closing != text and without_closing.endswith((" ", "\t")):
        return without_closing.rstrip(" \t")
    return text


def strip_markdown(text: str) -> str:
    """Plain text from light markdown: heading markers, emphasis and link syntax removed."""
    text = _MD_HEADING.sub(_heading_text, text)
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_STRONG.sub(r"\2", text)
    return _MD_EMPHASIS.sub(r"\2", text)


def parse_markdown(raw: str, *, source_name: str) -> Article:
    """An article from markdown, with optional front matter; a leading `# Title` is the title."""
    fields, body = split_front_matter(raw) or ({}, raw)
    canonical = _resolve_aliases(fields)
    if heading := _MD_LEADING_H1.match(body):
        body = body[heading.end() :]
        canonical["title"] = canonical["title"] or strip_markdown(heading.group(1))
    return _article_from_fields(canonical, text=strip_markdown(body), source_name=source_name)


# --- HTML (.html, .htm) -----------------------------------------------------------------

_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)


def article_from_html(html: str, *, source_name: str, url: str | None = None) -> Article:
    """The main text and metadata of a web page (via trafilatura); `url` wins over the page's own."""
    # Imported here so `import corpus` stays fast for code that never parses HTML.
    import trafilatura
    from trafilatura.settings import Document

    document = trafilatura.bare_extraction(
        html, url=url, favor_precision=True, include_comments=False, include_tables=False, with_metadata=True
    )
    if not isinstance(document, Document) or not document.text:
        raise ArticleParseError("no article text found in the HTML")
    title = document.title or _html_title(html)
    paragraphs = [line for line in normalize_text(document.text).split("\n") if line]
    if paragraphs and title and paragraphs[0] == _one_line(title):
        paragraphs = paragraphs[1:]  # the page's <h1>, already the title
    return _build_article(
        title=title,
        text="\n\n".join(paragraphs),
        source_name=source_name,
        url=url or document.url,
        published=parse_date(document.date),
        lang=document.language,
        source=document.sitename,
    )


def _html_title(html: str) -> str | None:
    found = _HTML_TITLE.search(html)
    return unescape_html(found.group(1)) if found else None


# --- records (.json, .jsonl) ---------------------------------------------------------------


def article_from_record(record: Mapping[str, object], *, source_name: str) -> Article:
    """An article from a dict with front-matter keys plus `text` (its id comes from its url, if any)."""
    fields = _resolve_aliases(record)
    text = _as_text(fields["text"], "text") or ""
    return _article_from_fields(fields, text=text, source_name=source_name)


def _parse_json(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArticleParseError(f"invalid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ArticleParseError("invalid JSON: nested too deeply") from exc


def _require_object(value: object) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise ArticleParseError(f"expected a JSON object, got {type(value).__name__}")
    return value


# --- files -------------------------------------------------------------------------------------

ReportBadRecord = Callable[[str], None]


def _raise_bad_record(reason: str) -> NoReturn:
    raise ArticleParseError(reason)


def _load_jsonl(raw: str, file_name: str, report: ReportBadRecord) -> list[Article]:
    articles = []
    # split("\n"), not splitlines(): JSON strings may contain U+2028, which splitlines breaks on.
    for number, line in enumerate(raw.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = _require_object(_parse_json(line))
            articles.append(article_from_record(record, source_name=f"{file_name}#{number}"))
        except ArticleParseError as exc:
            report(f"line {number}: {exc}")
    return articles


def _load_json(raw: str, file_name: str, report: ReportBadRecord) -> list[Article]:
    data = _parse_json(raw)
    if isinstance(data, dict):
        return [article_from_record(data, source_name=file_name)]
    if not isinstance(data, list):
        raise ArticleParseError(f"expected a JSON object or a list of objects, got {type(data).__name__}")
    articles = []
    for number, item in enumerate(data, start=1):
        try:
            articles.append(article_from_record(_require_object(item), source_name=f"{file_name}#{number}"))
        except ArticleParseError as exc:
            report(f"record {number}: {exc}")
    return articles


_SINGLE_ARTICLE_PARSERS: dict[str, Callable[..., Article]] = {
    ".txt": parse_article_text,
    ".md": parse_markdown,
    ".html": article_from_html,
    ".htm": article_from_html,
}
_RECORD_LOADERS: dict[str, Callable[[str, str, ReportBadRecord], list[Article]]] = {
    ".json": _load_json,
    ".jsonl": _load_jsonl,
}
SUPPORTED_SUFFIXES = frozenset(_SINGLE_ARTICLE_PARSERS) | frozenset(_RECORD_LOADERS)


def load_file(path: Path, *, on_bad_record: ReportBadRecord | None = None) -> list[Article]:
    """The articles in one file; raises ArticleParseError with the reason when it is unusable.

    A bad record in a .json/.jsonl file raises too, unless `on_bad_record` is given: it then
    receives the reason ("line 3: …") and the file's other records still load.
    """
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ArticleParseError(f"unsupported file type {suffix or '(none)'!r}")
    raw = read_text_file(path)
    if suffix in _RECORD_LOADERS:
        return _RECORD_LOADERS[suffix](raw, path.name, on_bad_record or _raise_bad_record)
    return [_SINGLE_ARTICLE_PARSERS[suffix](raw, source_name=path.name)]


# --- corpus ------------------------------------------------------------------------------------


def _is_skipped(relative: Path) -> bool:
    hidden = any(part.startswith(".") for part in relative.parts)
    return hidden or relative.name.upper().startswith("README")


def corpus_files(folder: Path) -> list[Path]:
    """Files under `folder`, recursively and sorted, without hidden files and READMEs."""
    return sorted(
        path for path in folder.rglob("*") if path.is_file() and not _is_skipped(path.relative_to(folder))
    )


def _record_label(path: Path, article: Article) -> str | None:
    """The article's name inside a file of records (`x.jsonl#3`); None for one-article files."""
    return None if article.source_name == path.name else article.source_name


def load_corpus(dirs: Sequence[Path]) -> CorpusLoad:
    """Every article under `dirs`; unreadable files, bad records and duplicates become errors."""
    articles: list[Article] = []
    errors: list[LoadError] = []
    first_seen: dict[str, str] = {}  # article id -> where it was loaded from

    def report(path: Path, reason: str) -> None:
        logger.warning("Skipped %s: %s", path, reason)
        errors.append(LoadError(path=str(path), reason=reason))

    for folder in map(Path, dirs):
        if not folder.is_dir():
            report(folder, "not a folder" if folder.exists() else "folder not found")
            continue
        for path in corpus_files(folder):
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                logger.debug("Ignoring %s: not an article file type", path)
                continue
            try:
                loaded = load_file(path, on_bad_record=partial(report, path))
            except ArticleParseError as exc:
                report(path, str(exc))
                continue
            for article in loaded:
                record = _record_label(path, article)
                if article.id in first_seen:
                    prefix = f"{record}: " if record else ""
                    report(path, f"{prefix}duplicate of {first_seen[article.id]}")
                    continue
                first_seen[article.id] = f"{path} ({record})" if record else str(path)
                articles.append(article)

    logger.info("Loaded %d articles (%d errors) from %d folders", len(articles), len(errors), len(dirs))
    return CorpusLoad(articles=articles, errors=errors)
