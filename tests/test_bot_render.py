"""Rendering for Telegram: escaping, links, bidi marks, splitting, passages and digests.

Checked against the fake server's port of Telegram's own HTML parser, so "valid" means what
Telegram would accept.
"""

from __future__ import annotations

import pytest
from fake_telegram import parse_html, utf16_len
from hypothesis import given
from hypothesis import strategies as st

from bot.handlers.subscriptions import parse_subscription
from bot.render import (
    LRM,
    MESSAGE_LIMIT,
    RLM,
    bidi,
    digest_messages,
    escape,
    html_to_plain,
    link,
    passage_pages,
    render_answer,
    shorten,
    split_html,
)
from bot.texts import TEXTS, text
from retrieval.answering import Answer, Citation
from retrieval.service import ArticleInfo

HOSTILE = (
    'a < b && c > d <b>not bold</b> &amp; "quoted" *stars* _under_ `tick` </i> &#0; &lt'
)


def citation(n: int = 1, **overrides: object) -> Citation:
    passage = overrides.pop(
        "passage", "First sentence. The quoted sentence is here. Last sentence."
    )
    quote = overrides.pop("quote", "The quoted sentence is here.")
    values = {
        "n": n,
        "article_id": f"a{n}",
        "chunk_id": f"c{n}",
        "title": f"Title {n} <&>",
        "url": f"https://example.org/{n}?a=1&b=2",
        "date": "2022-01-10",
        "lang": "en",
        "source": "Example News",
        "source_name": f"file{n}.md",
        "quote": quote,
        "start": 0,
        "end": len(quote),
        "passage": passage,
        "score": 0.9,
    }
    return Citation(**(values | overrides))


def answer(
    citations: list[Citation],
    text_: str = "An answer [1].",
    language: str = "en",
    answered: bool = True,
) -> Answer:
    return Answer(
        question="q?",
        language=language,
        answered=answered,
        answer=text_,
        citations=citations,
        evidence=0.9,
        backend="test",
    )


def shown(markup: str) -> str:
    return parse_html(markup)[0]


def entity_text(visible: str, entity: dict) -> str:
    """The text an entity covers (its offsets are in UTF-16 units)."""
    units = visible.encode("utf-16-le")
    return units[
        2 * entity["offset"] : 2 * (entity["offset"] + entity["length"])
    ].decode("utf-16-le")


# --- escaping and links --------------------------------------------------------------


@given(st.text())
def test_escaped_text_parses_back_to_itself(value: str) -> None:
    assert shown(escape(value)) == value


def test_link_escapes_title_and_url() -> None:
    markup = link('Talks "A" & <B>', 'https://example.org/x?a=1&b="2"')
    visible, entities = parse_html(markup)
    assert visible == 'Talks "A" & <B>'
    assert entities == [
        {
            "type": "text_link",
            "url": 'https://example.org/x?a=1&b="2"',
            "offset": 0,
            "length": 15,
        }
    ]


@pytest.mark.parametrize(
    "url", [None, "", "javascript:alert(1)", "file:///etc/passwd", "example.org/x"]
)
def test_link_without_a_web_url_is_plain_title(url: str | None) -> None:
    assert link("Title <1>", url) == "Title &lt;1&gt;"


def test_shorten_cuts_at_a_word() -> None:
    assert shorten("one two three four five", 12) == "one two…"
    assert shorten("short", 12) == "short"
    assert len(shorten("x" * 50, 10)) == 10


# --- bidi ----------------------------------------------------------------------------------


def test_arabic_line_starting_with_a_latin_word_gets_a_right_to_left_mark() -> None:
    lines = bidi(
        "NATO قال إن الحلف لن يتراجع عن مبادئه\nقال الناتو\nNATO said\nالناتو said that NATO would not compromise"
    ).split("\n")
    assert lines == [
        RLM + "NATO قال إن الحلف لن يتراجع عن مبادئه",
        "قال الناتو",
        "NATO said",
        LRM + "الناتو said that NATO would not compromise",
    ]


def test_bidi_looks_at_shown_text_not_at_tags() -> None:
    markup = '<a href="https://example.org/x">ستولتنبرغ: خطر حقيقي</a> — 2022-01-12'
    assert bidi(markup) == markup  # the href's Latin letters are not shown


def test_arabic_answer_renders_right_to_left() -> None:
    arabic = answer(
        [
            citation(title="Geneva talks end", lang="en"),
            citation(2, title="محادثات جنيف", lang="ar", quote="نص", passage="نص"),
        ],
        text_="من المقالات الإنجليزية:\nقالت روسيا إنها تريد ضمانات. [1] [2]",
        language="ar",
    )
    visible = shown(render_answer(arabic))
    assert "المصادر" in visible and "«نص»" in visible
    assert all(
        not line[:1].isascii() or not line[:1].isalpha()
        for line in visible.split("\n")
        if "ا" in line[:12]
    )


# --- answers ---------------------------------------------------------------------------------


def test_answer_with_sources_block() -> None:
    markup = render_answer(
        answer(
            [citation(1), citation(2, url=None, date=None, source=None)],
            HOSTILE + " [1] [2]",
        )
    )
    visible, entities = parse_html(markup)
    assert visible.startswith(
        HOSTILE + " [1] [2]\n\nSources\n[1] Title 1 <&> — 2022-01-10 · Example News\n"
    )
    assert "\n[2] Title 2 <&>\n" in visible  # no link, no date: nothing dangling
    assert [e["url"] for e in entities if e["type"] == "text_link"] == [
        "https://example.org/1?a=1&b=2"
    ]
    assert "“The quoted sentence is here.”" in visible


def test_decline_suggests_questions() -> None:
    visible = shown(
        render_answer(answer([], "The articles I have don't say.", answered=False))
    )
    assert text("example_1", "en") in visible and "Sources" not in visible


def test_a_note_comes_first_in_italics() -> None:
    note = "The language model did not respond, so here are <quotes> instead."
    noted = answer([citation()]).model_copy(update={"note": note})
    visible, entities = parse_html(render_answer(noted))
    assert visible.startswith(f"ℹ️ {note}\n\nAn answer [1].")
    assert entities[0]["type"] == "italic" and entity_text(visible, entities[0]).endswith("instead.")


def test_long_quote_is_shortened_in_the_sources_block() -> None:
    quote = "word " * 200
    visible = shown(render_answer(answer([citation(quote=quote, passage=quote)])))
    assert "…”" in visible and len(visible) < 400


# --- passages ----------------------------------------------------------------------------------


def test_passages_page_shows_whole_passage_with_the_quote_in_bold() -> None:
    pages = passage_pages(answer([citation(1)]))
    assert len(pages) == 1
    visible, entities = parse_html(pages[0])
    assert "First sentence. The quoted sentence is here. Last sentence." in visible
    bold = [entity_text(visible, e) for e in entities if e["type"] == "bold"]
    assert "The quoted sentence is here." in bold
    assert any(e["type"] == "blockquote" for e in entities)


def test_long_passages_are_paged_and_each_page_fits() -> None:
    long_passage = (
        "A sentence about the talks. " * 100
    ) + "The quoted sentence is here."
    pages = passage_pages(
        answer([citation(n, passage=long_passage) for n in (1, 2, 3, 4)])
    )
    assert len(pages) > 1
    for number, page in enumerate(pages, start=1):
        visible = shown(page)
        assert (
            utf16_len(visible) <= MESSAGE_LIMIT
            and f"page {number}/{len(pages)}" in visible
        )
    assert sum(shown(page).count("The quoted sentence is here.") for page in pages) == 4


# --- splitting -------------------------------------------------------------------------------------


def test_short_text_is_one_message() -> None:
    assert split_html("<b>hello</b>") == ["<b>hello</b>"]


def test_split_prefers_paragraph_boundaries() -> None:
    paragraphs = [f"Paragraph {n}: " + "word " * 150 for n in range(12)]
    parts = split_html("\n\n".join(escape(p) for p in paragraphs))
    assert len(parts) > 1
    for part in parts:
        assert utf16_len(part) <= MESSAGE_LIMIT
        assert part.startswith("Paragraph ") and part.endswith(
            "word"
        )  # whole paragraphs


def test_split_closes_and_reopens_tags() -> None:
    markup = (
        "<blockquote>"
        + "\n".join(f"<i>line {n}</i> &amp; more" for n in range(600))
        + "</blockquote>"
    )
    parts = split_html(markup)
    assert len(parts) > 1
    joined = ""
    for part in parts:
        visible, entities = parse_html(part)  # each part is valid Telegram HTML
        assert entities[0]["type"] == "blockquote" and entities[0]["offset"] == 0
        joined += visible + "\n"
    assert joined.split() == shown(markup).split()


def test_split_a_wall_without_spaces_never_cuts_an_entity() -> None:
    parts = split_html("&amp;" * 3000)
    assert "".join(shown(part) for part in parts) == "&" * 3000


@given(st.lists(st.text(min_size=1, max_size=700), min_size=1, max_size=30))
def test_split_keeps_every_word(paragraphs: list[str]) -> None:
    markup = "\n\n".join("<b>" + escape(p) + "</b>" for p in paragraphs)
    parts = split_html(markup)
    assert all(utf16_len(part) <= MESSAGE_LIMIT for part in parts)
    assert "".join("".join(shown(part).split()) for part in parts) == "".join(
        shown(markup).split()
    )


def test_emoji_count_twice_towards_the_limit() -> None:
    parts = split_html("🏟 " * 3000)  # 9000 UTF-16 units, though 6000 characters
    assert len(parts) == 3 and all(utf16_len(part) <= MESSAGE_LIMIT for part in parts)
    assert sum(part.count("🏟") for part in parts) == 3000


def test_plain_text_fallback_keeps_link_targets() -> None:
    markup = '<b>Sources</b>\n[1] <a href="https://e.org/?a=1&amp;b=2">A &lt;title&gt;</a> — 2022'
    assert (
        html_to_plain(markup)
        == "Sources\n[1] A <title> (https://e.org/?a=1&b=2) — 2022"
    )


# --- digests -----------------------------------------------------------------------------------------


def article(n: int, **overrides: object) -> ArticleInfo:
    values = {
        "id": f"id{n}",
        "title": f"Article {n} & more",
        "url": f"https://example.org/{n}",
        "date": "2022-01-1" + str(n % 10),
        "lang": "en",
        "source": "Example Wire",
        "source_name": f"{n}.md",
        "chunks": 3,
        "lead": "First sentence. Second one.",
    }
    return ArticleInfo(**(values | overrides))


def test_digest_lists_title_link_date_source_and_summary() -> None:
    [(markup, ids)] = digest_messages(
        [article(1), article(2, url=None, source=None)], "📰 New articles"
    )
    visible, entities = parse_html(markup)
    assert visible.startswith(
        "📰 New articles\n\nArticle 1 & more\n2022-01-11 · Example Wire\nFirst sentence. Second one."
    )
    assert "Article 2 & more\n2022-01-12\n" in visible
    assert ids == ["id1", "id2"]
    assert [e["url"] for e in entities if e["type"] == "text_link"] == [
        "https://example.org/1"
    ]


def test_many_articles_make_several_messages_each_with_their_ids() -> None:
    articles = [article(n, lead="A long summary sentence. " * 15) for n in range(40)]
    messages = digest_messages(articles, "📰 New articles")
    assert len(messages) > 1
    assert [i for _, ids in messages for i in ids] == [a.id for a in articles]
    assert all(utf16_len(markup) <= MESSAGE_LIMIT for markup, _ in messages)


# --- texts and commands ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_every_text_exists_in_both_languages(key: str) -> None:
    assert TEXTS[key].keys() == {"ar", "en"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ("instant", None)),
        (["instant"], ("instant", None)),
        (["daily"], ("daily", "09:00")),
        (["Daily", "7:05"], ("daily", "07:05")),
        (["daily", "23:59"], ("daily", "23:59")),
        (["daily", "24:00"], None),
        (["daily", "noon"], None),
        (["hourly"], None),
        (["instant", "now"], None),
    ],
)
def test_parse_subscription(
    args: list[str], expected: tuple[str, str | None] | None
) -> None:
    from datetime import time

    parsed = parse_subscription(args, time(9, 0))
    assert (
        parsed and (parsed[0], parsed[1] and parsed[1].strftime("%H:%M"))
    ) == expected
