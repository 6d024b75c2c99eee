"""Telegram HTML for answers, passages and digests: escaping, links, bidi marks, splitting.

Pure functions: no Telegram calls. Everything user- or article-provided goes through
`escape` (or `link`) before it is put into a template.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from bot.texts import Lang, text
from corpus.text import detect_language, is_arabic_letter
from retrieval.answering import Answer, Citation
from retrieval.service import ArticleInfo

MESSAGE_LIMIT = 4096  # Telegram's limit, in UTF-16 code units of the parsed text
QUOTE_CHARS = 220  # the short quote under each source
LEAD_CHARS = 400  # an article's summary in a digest
PASSAGE_UNITS = 3000  # one passage on a passages page, in UTF-16 units like Telegram's limit
SOURCE_PART_CHARS = 200  # a source's title, date or publisher: longer ones are cut
_CLOSING_RESERVE = 64  # room for the closing tags a split adds

RLM, LRM = "\u200f", "\u200e"

_TAG = re.compile(r"<(/?)([a-zA-Z-]+)[^>]*>")
_TAG_OR_ENTITY = re.compile(r"<[^>]*>|&#?\w+;")
_LINK = re.compile(r'<a href="([^"]*)">(.*?)</a>', re.DOTALL)


def escape(value: str) -> str:
    """Text safe inside Telegram HTML (outside attributes)."""
    return html.escape(value, quote=False)


def link(title: str, url: str | None) -> str:
    """The title as a link when the url is a web address, else the escaped title."""
    if url and urlsplit(url.strip()).scheme in ("http", "https"):
        return f'<a href="{html.escape(url.strip(), quote=True)}">{escape(title)}</a>'
    return escape(title)


def shorten(value: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary, with an ellipsis when cut."""
    value = " ".join(value.split())
    if len(value) <= limit:
        return value
    cut = value[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:.،") + "…"


def _quoted(value: str, lang: str) -> str:
    return f"«{value}»" if lang == "ar" else f"“{value}”"


def visible_text(markup: str) -> str:
    """What Telegram shows for `markup`: tags dropped, entities decoded."""
    return html.unescape(_TAG.sub("", markup))


# --- bidi -----------------------------------------------------------------------


def _first_strong_is_arabic(value: str) -> bool | None:
    for char in value:
        if char.isalpha():
            return is_arabic_letter(char)
    return None


def bidi(markup: str) -> str:
    """Give each line the direction of its script.

    Telegram lays out each line by its first letter, so an Arabic line that starts with a
    Latin name ("NATO …") would read left to right: such lines get a right-to-left mark,
    and English lines that start with an Arabic word a left-to-right mark.
    """
    lines = []
    for line in markup.split("\n"):
        visible = visible_text(line)
        starts_arabic = _first_strong_is_arabic(visible)
        if starts_arabic is not None:
            arabic = detect_language(visible) == "ar"
            if arabic and not starts_arabic:
                line = RLM + line
            elif not arabic and starts_arabic:
                line = LRM + line
        lines.append(line)
    return "\n".join(lines)


# --- splitting -------------------------------------------------------------------


def utf16_units(value: str) -> int:
    return len(value.encode("utf-16-le", "surrogatepass")) // 2


def _budget_end(markup: str, budget: int) -> int:
    """The largest index whose prefix fits in `budget` UTF-16 units."""
    units = 0
    for index, char in enumerate(markup):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > budget:
            return index
    return len(markup)


def _cut_position(markup: str, budget: int) -> int:
    """Where to cut: the last paragraph break, else line break, else space in the second half
    of the budget; never inside a tag or an entity."""
    end = _budget_end(markup, budget)
    protected = [m.span() for m in _TAG_OR_ENTITY.finditer(markup, 0, end + 16)]

    def allowed(index: int) -> bool:
        return not any(start < index < stop for start, stop in protected)

    for separator in ("\n\n", "\n", " "):
        index = markup.rfind(separator, end // 2, end)
        while index > 0 and not allowed(index):
            index = markup.rfind(separator, end // 2, index)
        if index > 0:
            return index
    for start, stop in protected:  # a hard cut: step back out of a tag or entity
        if start < end < stop:
            return start
    return end


def _open_tags(markup: str) -> list[tuple[str, str]]:
    """The tags still open at the end of `markup`, outermost first: (name, opening tag)."""
    stack: list[tuple[str, str]] = []
    for match in _TAG.finditer(markup):
        closing, name = match.group(1), match.group(2).lower()
        if not closing:
            stack.append((name, match.group(0)))
        elif stack:
            stack.pop()
    return stack


def split_html(markup: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split into messages of at most `limit` UTF-16 units (of markup, so of the shown text
    too), on paragraph boundaries when possible; tags open at a cut are closed and reopened."""
    messages = []
    rest = markup.strip()
    while rest:
        if utf16_units(rest) <= limit:
            messages.append(rest)
            break
        cut = max(_cut_position(rest, limit - _CLOSING_RESERVE), 1)
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        still_open = _open_tags(head)
        messages.append(
            head + "".join(f"</{name}>" for name, _ in reversed(still_open))
        )
        rest = "".join(tag for _, tag in still_open) + rest
    return [message for message in messages if visible_text(message).strip()]


def group_blocks(
    blocks: Sequence[str], limit: int, separator: str = "\n\n"
) -> list[list[int]]:
    """Pack consecutive blocks into groups whose joined length fits `limit`; indices per group.
    A block longer than `limit` gets a group of its own."""
    groups: list[list[int]] = []
    size = 0
    for index, block in enumerate(blocks):
        length = utf16_units(block)
        if groups and size + utf16_units(separator) + length <= limit:
            groups[-1].append(index)
            size += utf16_units(separator) + length
        else:
            groups.append([index])
            size = length
    return groups


def html_to_plain(markup: str) -> str:
    """The same message as plain text (for when Telegram rejects the HTML): links keep their url."""

    def plain_link(match: re.Match[str]) -> str:
        url, title = html.unescape(match.group(1)), visible_text(match.group(2))
        return title if title == url else f"{match.group(2)} ({match.group(1)})"

    return visible_text(_LINK.sub(plain_link, markup))


# --- answers ---------------------------------------------------------------------


def _source_line(citation: Citation) -> str:
    # Cut so that a passages page (a source line and its passage) always fits one message.
    meta = " · ".join(escape(shorten(part, SOURCE_PART_CHARS)) for part in (citation.date, citation.source) if part)
    return f"[{citation.n}] {link(shorten(citation.title, SOURCE_PART_CHARS), citation.url)}" + (
        f" — {meta}" if meta else ""
    )


def render_answer(answer: Answer) -> str:
    """The answer with its [n] markers, then the sources: title (linked), date, short quote.
    A note on how the answer was made (e.g. quotes because the LLM failed) comes first."""
    lang: Lang = answer.language
    sections = [f"<i>ℹ️ {escape(answer.note)}</i>"] if answer.note else []
    sections.append(escape(answer.answer))
    if not answer.answered:
        sections.append(text("decline_suggestion", lang))
    if answer.citations:
        lines = [f"<b>{text('sources', lang)}</b>"]
        for citation in answer.citations:
            lines.append(_source_line(citation))
            lines.append(
                f"<i>{escape(_quoted(shorten(citation.quote, QUOTE_CHARS), citation.lang))}</i>"
            )
        sections.append("\n".join(lines))
    return bidi("\n\n".join(sections))


def _passage_window(passage: str, at: int) -> tuple[int, int]:
    """(start, end) of the part of a long passage shown: `PASSAGE_UNITS` from the quote at
    `at` (or from the start), moved back when the passage ends sooner."""
    start = max(at, 0)
    end = start + _budget_end(passage[start:], PASSAGE_UNITS)
    if end == len(passage):
        start = len(passage) - _budget_end(passage[::-1], PASSAGE_UNITS)
    return start, end


def _highlighted_passage(citation: Citation) -> str:
    """The passage, escaped, with the quoted sentence(s) in bold; long passages are cut
    around the quote."""
    passage, quote = citation.passage, citation.quote
    at = passage.find(quote)
    if utf16_units(passage) > PASSAGE_UNITS:
        start, end = _passage_window(passage, at)
        passage = (
            ("…" if start else "")
            + passage[start:end]
            + ("…" if end < len(passage) else "")
        )
        at = passage.find(quote)
    if at < 0:
        return escape(passage)
    return (
        escape(passage[:at])
        + "<b>"
        + escape(quote)
        + "</b>"
        + escape(passage[at + len(quote) :])
    )


def passage_pages(answer: Answer) -> list[str]:
    """The full passages behind the answer's sources, as pages that each fit one message."""
    title = text("passages_title", answer.language)
    blocks = [
        bidi(
            f"{_source_line(citation)}\n<blockquote>{_highlighted_passage(citation)}</blockquote>"
        )
        for citation in answer.citations
    ]
    groups = group_blocks(blocks, MESSAGE_LIMIT - 100)
    pages = []
    for number, group in enumerate(groups, start=1):
        header = f"<b>{title}</b>"
        if len(groups) > 1:
            header += (
                f" · {text('page', answer.language, page=number, pages=len(groups))}"
            )
        pages.append(bidi(header) + "\n\n" + "\n\n".join(blocks[i] for i in group))
    return pages


# --- digests ----------------------------------------------------------------------


def digest_block(article: ArticleInfo) -> str:
    """One article in a digest: title (linked), date and source, a short summary."""
    meta = " · ".join(escape(part) for part in (article.date, article.source) if part)
    lines = [f"<b>{link(article.title, article.url)}</b>"]
    if meta:
        lines.append(meta)
    if article.lead:
        lines.append(escape(shorten(article.lead, LEAD_CHARS)))
    return bidi("\n".join(lines))


def digest_messages(
    articles: Sequence[ArticleInfo], header: str
) -> list[tuple[str, list[str]]]:
    """Digest messages for `articles`, each with the ids of the articles it carries."""
    blocks = [digest_block(article) for article in articles]
    heading = f"<b>{escape(header)}</b>"
    groups = group_blocks(blocks, MESSAGE_LIMIT - utf16_units(heading) - 2)
    messages = []
    for number, group in enumerate(groups):
        body = "\n\n".join(blocks[i] for i in group)
        messages.append(
            (
                f"{heading}\n\n{body}" if number == 0 else body,
                [articles[i].id for i in group],
            )
        )
    return messages
