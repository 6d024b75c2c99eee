"""`talks chat`: the bot's question answering in the terminal — same pipeline, same cited
answers, same follow-ups. Reads a prompt in a terminal, or one question per line when piped."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console, Group
from rich.text import Text

from bot.render import visible_text
from bot.startup import load_service
from bot.texts import text
from retrieval.answering import Answer
from retrieval.service import Exchange, QuestionError, TalksService
from retrieval.store import StoreError
from talks.settings import Settings

QUIT_WORDS = frozenset({"/quit", "/exit", "quit", "exit", ":q"})


def answer_view(answer: Answer) -> Group:
    """The answer (after its note, if any), then its sources: title (a link where the terminal
    supports it), date, source, url and the quoted sentence(s)."""
    parts: list[Text] = [Text(answer.note, style="dim italic")] if answer.note else []
    parts.append(Text(answer.answer, style="" if answer.answered else "yellow"))
    if not answer.answered:
        parts.append(
            Text(visible_text(text("decline_suggestion", answer.language)), style="dim")
        )
    if answer.citations:
        parts.append(Text("\n" + text("sources", answer.language) + ":", style="bold"))
    for citation in answer.citations:
        line = Text(f"[{citation.n}] ")
        line.append(
            citation.title,
            style=f"bold link {citation.url}" if citation.url else "bold",
        )
        meta = " · ".join(
            part for part in (citation.date, citation.source, citation.url) if part
        )
        if meta:
            line.append(f" — {meta}", style="dim")
        parts.append(line)
        parts.append(Text(f"    “{' '.join(citation.quote.split())}”", style="italic"))
    return Group(*parts)


def _questions(stdin: TextIO, console: Console, interactive: bool):
    """Questions until EOF: prompted in a terminal, line by line from a pipe."""
    while True:
        if interactive:
            try:
                yield console.input("[bold cyan]? [/]")
            except EOFError:
                return
        else:
            line = stdin.readline()
            if not line:
                return
            yield line


def chat(service: TalksService, stdin: TextIO, console: Console) -> None:
    interactive = stdin.isatty()
    stats = service.stats()
    intro = [
        f"{stats.articles} articles ({stats.first_date or '–'} – {stats.last_date or '–'}).",
        "Ask in Arabic or English; follow-up questions use the previous answer.",
    ]
    if interactive:
        intro.append("Ctrl-D or /quit to leave.")
    console.print(" ".join(intro), style="dim", highlight=False)
    history: list[Exchange] = []
    for line in _questions(stdin, console, interactive):
        question = line.strip()
        if not question:
            continue
        if question.lower() in QUIT_WORDS:
            break
        try:
            answer = service.ask(question, history=history)
        except (QuestionError, StoreError) as error:
            console.print(f"[yellow]{error}[/]", highlight=False)
            continue
        if not interactive:
            console.print(Text(f"? {question}", style="bold cyan"))
        console.print(answer_view(answer), highlight=False)
        console.print()
        history = [Exchange(question=question, answer=answer.answer)]


def run_chat(
    settings: Settings, stdin: TextIO = sys.stdin, console: Console | None = None
) -> int:
    """Load the pipeline once and chat until EOF, /quit or Ctrl-C."""
    console = console or Console(soft_wrap=True)
    try:
        chat(load_service(settings), stdin, console)
    except KeyboardInterrupt:
        console.print()
    console.print("bye", style="dim")
    return 0
