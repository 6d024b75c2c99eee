"""Generative answers: a chat model writes the answer from the numbered passages, and its
citations are checked before anyone sees them.

`LLMAnswerer` wraps the extractive answerer. It scores the passages' sentences first, so the
same decline threshold applies before any call to the model (no evidence: decline, no call),
and the extractive answer is ready as the fallback. The model gets the passages numbered
1..k (prompts/passages.yaml) and the rules in the question's language
(prompts/answer_system.yaml). Its reply is then checked:

- "the passages don't say" (the `no_answer` reply) -> decline;
- not in the question's language -> asked once more with a stronger instruction, then fallback;
- citation numbers that name no passage are removed, the rest renumbered 1..m in order of
  appearance; no valid citation left -> fallback;
- each citation quotes its passage verbatim: the sentence the model quoted if it is in the
  passage word for word, else the passage's sentence closest to the question.

Errors, timeouts and unreachable servers -> fallback, logged. A fallback is the extractive
answer with a short `note` in the question's language.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import httpx
from langchain_core.exceptions import ModelError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from ollama import ResponseError as OllamaResponseError
from pydantic import BaseModel, Field, ValidationError

from corpus.models import Language
from corpus.text import detect_language
from retrieval.answering import (
    Answer,
    Citation,
    ExtractiveAnswerer,
    ScoredSentence,
    decline,
)
from retrieval.prompts import load_prompt
from retrieval.retriever import Passage
from retrieval.sentences import Span, split_sentences

logger = logging.getLogger(__name__)

# What a chat model raises when its server fails, times out or cannot be reached:
# langchain-openai wraps the openai client's errors in ModelError; langchain-ollama passes on
# the ollama client's (ResponseError for HTTP errors, httpx's for transport errors).
LLM_ERRORS: tuple[type[BaseException], ...] = (
    ModelError,
    OllamaResponseError,
    httpx.HTTPError,
    ConnectionError,
    TimeoutError,
)

_DIGITS = "0-9٠-٩۰-۹"  # Latin, Arabic-Indic and Persian digits
# "[2]", "[1, 3]", "[١]" with the white space before it.
_MARKER = re.compile(rf"(\s*)\[\s*([{_DIGITS}]+(?:\s*[,،]\s*[{_DIGITS}]+)*)\s*\]")
MIN_QUOTE_WORDS = 4
CONDENSE_TURNS = 3  # earlier exchanges shown to the condense prompt
CONDENSE_ANSWER_CHARS = 300

FallbackReason = Literal["unavailable", "uncited", "wrong_language"]


class CitedPassage(BaseModel):
    passage: int = Field(description="number of a passage the answer cites")
    quote: str = Field("", description="the sentence relied on, copied exactly from that passage")


class GeneratedAnswer(BaseModel):
    """The answer to the question, written from the numbered passages only."""

    answer: str = Field(description="the answer, with [n] after each claim")
    citations: list[CitedPassage] = Field(default_factory=list, description="the passages the answer cites")


STRUCTURED_SCHEMA = GeneratedAnswer.model_json_schema()


@dataclass(frozen=True)
class Draft:
    """What the model wrote: the answer text, and the quotes it gave per passage number."""

    text: str
    quotes: dict[int, str]
    raw: str  # the reply as sent, for the language retry


@dataclass(frozen=True)
class Grounding:
    """The extractive outcome for the question: the decline or fallback answer, and the
    sentence scores that choose citation quotes."""

    extractive: Answer
    scored: list[ScoredSentence]


class Turn(Protocol):
    """An earlier exchange of the conversation (`retrieval.service.Exchange`)."""

    question: str
    answer: str


def _digits(text: str) -> str:
    return text.translate(str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789"))


def strip_markers(text: str) -> str:
    return _MARKER.sub("", text).strip()


def renumber_citations(text: str, valid: int) -> tuple[str, list[int]]:
    """Drop citation numbers outside 1..valid, renumber the rest 1..m in order of first
    appearance. Returns the new text and the passage numbers cited, in their new order."""
    order: list[int] = []

    def replace(match: re.Match[str]) -> str:
        numbers = [int(_digits(n)) for n in re.split(r"\s*[,،]\s*", match.group(2))]
        kept = []
        for n in numbers:
            if 1 <= n <= valid:
                if n not in order:
                    order.append(n)
                if order.index(n) + 1 not in kept:
                    kept.append(order.index(n) + 1)
        return match.group(1) + "".join(f"[{n}]" for n in kept) if kept else ""

    return _MARKER.sub(replace, text).strip(), order


def format_passages(passages: Sequence[Passage], language: Language) -> str:
    layout = load_prompt("passages")
    return "\n\n".join(
        layout["passage"].format(
            n=n, title=p.chunk.title, date=p.chunk.published or layout["undated"][language], text=p.chunk.text
        )
        for n, p in enumerate(passages, start=1)
    )


def answer_prompt(language: Language, *, structured: bool) -> ChatPromptTemplate:
    rules = load_prompt("answer_system")
    system = rules[language] + ("\n\n" + rules["structured"][language] if structured else "")
    return ChatPromptTemplate.from_messages(
        [("system", system), ("human", load_prompt("passages")["question"][language])]
    )


def ground(extractive: ExtractiveAnswerer, question: str, language: Language, passages: Sequence[Passage]) -> Grounding:
    """What `ExtractiveAnswerer.answer` decides, keeping the sentence scores."""
    scored = extractive.score_sentences(question, passages)
    return Grounding(extractive.answer_scored(question, language, scored), scored)


def _quote(passage: Passage, quote: str, scored: Sequence[ScoredSentence]) -> tuple[Span, float]:
    """The model's quote if it is in the passage word for word, else the passage's sentence
    closest to the question; with the cosine of the sentence it lies in."""
    chunk = passage.chunk
    inside = [s for s in scored if chunk.start <= s.span.start and s.span.end <= chunk.end]
    quote = quote.strip()
    at = chunk.text.find(quote) if len(quote.split()) >= MIN_QUOTE_WORDS else -1
    if at >= 0:
        span = Span(chunk.start + at, chunk.start + at + len(quote), quote)
        overlapping = [s.score for s in inside if s.span.start < span.end and span.start < s.span.end]
        return span, max(overlapping, default=passage.score)
    if inside:
        best = max(inside, key=lambda s: s.score)
        return best.span, best.score
    sentences = split_sentences(chunk.text, offset=chunk.start)
    return (sentences[0] if sentences else Span(chunk.start, chunk.end, chunk.text)), passage.score


class LLMAnswerer:
    """Cited answers written by a LangChain chat model, checked, with the extractive fallback."""

    def __init__(
        self, model: BaseChatModel, extractive: ExtractiveAnswerer, *, name: str, structured: bool = True
    ) -> None:
        self.model = model
        self.extractive = extractive
        self.name = name
        self.structured = structured
        self._structured_model = (
            model.with_structured_output(STRUCTURED_SCHEMA, method="json_schema", include_raw=True)
            if structured
            else None
        )

    @property
    def threshold(self) -> float:
        """The decline threshold (the extractive answerer's: it applies before any LLM call)."""
        return self.extractive.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.extractive.threshold = value

    @property
    def prompts(self) -> dict[str, int]:
        return {p["name"]: p["version"] for p in map(load_prompt, ("answer_system", "passages"))}

    # --- answering -----------------------------------------------------------

    def answer(self, question: str, language: Language, passages: Sequence[Passage]) -> Answer:
        passages = sorted(passages, key=lambda p: p.rank)
        grounding = ground(self.extractive, question, language, passages)
        if not grounding.extractive.answered:
            return self._declined(grounding)
        messages = self._messages(question, language, passages, structured=self.structured)
        try:
            draft = self._generate(messages)
            checked = self._check(draft, language, passages, grounding)
            if checked == "wrong_language":
                draft = self._generate([*messages, *self._language_retry(draft, language)])
                checked = self._check(draft, language, passages, grounding)
        except LLM_ERRORS as error:
            return self._fallback(grounding, "unavailable", error)
        return checked if isinstance(checked, Answer) else self._fallback(grounding, checked)

    async def astream_answer(
        self, question: str, language: Language, passages: Sequence[Passage]
    ) -> AsyncIterator[str | Answer]:
        """Drafts as the model writes them, then the checked `Answer`, once, last.

        Each draft is the whole text so far (with the model's raw [n] markers), ready for a
        Telegram draft or message edit; a language retry starts its drafts over. Streams ask
        for plain text (JSON does not read well half-written). The final `Answer` may differ
        from the last draft: citations renumbered, or the extractive fallback with a note.
        """
        passages = sorted(passages, key=lambda p: p.rank)
        grounding = await asyncio.to_thread(ground, self.extractive, question, language, passages)
        if not grounding.extractive.answered:
            yield self._declined(grounding)
            return
        messages = self._messages(question, language, passages, structured=False)
        checked: Answer | FallbackReason = "uncited"
        try:
            for attempt in range(2):
                text = ""
                async for chunk in self.model.astream(messages):
                    if not chunk.text:
                        continue
                    text += chunk.text
                    if text.strip() and not self._no_answer.startswith(text.strip()):
                        yield text
                draft = Draft(text, {}, text)
                checked = self._check(draft, language, passages, grounding)
                if checked != "wrong_language" or attempt:
                    break
                messages = [*messages, *self._language_retry(draft, language)]
        except LLM_ERRORS as error:
            yield self._fallback(grounding, "unavailable", error)
            return
        yield checked if isinstance(checked, Answer) else self._fallback(grounding, checked)

    @property
    def _no_answer(self) -> str:
        return load_prompt("answer_system")["no_answer"]

    def _messages(
        self, question: str, language: Language, passages: Sequence[Passage], *, structured: bool
    ) -> list[BaseMessage]:
        return answer_prompt(language, structured=structured).format_messages(
            no_answer=self._no_answer, passages=format_passages(passages, language), question=question
        )

    @staticmethod
    def _language_retry(draft: Draft, language: Language) -> list[BaseMessage]:
        return [AIMessage(draft.raw), HumanMessage(load_prompt("answer_system")["language_retry"][language])]

    def _generate(self, messages: list[BaseMessage]) -> Draft:
        if self._structured_model is None:
            text = self.model.invoke(messages).text
            return Draft(text, {}, text)
        result = cast(dict[str, Any], self._structured_model.invoke(messages))  # include_raw: a dict
        raw = result["raw"].text
        try:
            parsed = GeneratedAnswer.model_validate(result["parsed"]) if result["parsed"] is not None else None
        except ValidationError:
            parsed = None
        if parsed is None:  # the server ignored the JSON request: read the reply as plain text
            return Draft(raw, {}, raw)
        quotes = {c.passage: c.quote for c in parsed.citations}
        if not _MARKER.search(parsed.answer) and quotes:  # cited in the list only: cite at the end
            parsed.answer += " " + "".join(f"[{n}]" for n in quotes)
        return Draft(parsed.answer, quotes, raw)

    def _check(
        self, draft: Draft, language: Language, passages: Sequence[Passage], grounding: Grounding
    ) -> Answer | FallbackReason:
        """The checked answer, or why the extractive one must be given instead."""
        if self._no_answer in draft.text:
            return self._declined(grounding)
        if detect_language(strip_markers(draft.text)) != language:
            return "wrong_language"
        text, cited = renumber_citations(draft.text, len(passages))
        if not cited:
            return "uncited"
        citations = [
            Citation.quoting(n, passages[number - 1].chunk, *_quote(passages[number - 1], draft.quotes.get(number, ""), grounding.scored))
            for n, number in enumerate(cited, start=1)
        ]
        return grounding.extractive.model_copy(
            update={"answer": text, "citations": citations, "backend": self.name, "prompts": self.prompts}
        )

    def _declined(self, grounding: Grounding) -> Answer:
        """The extractive decline, as this answerer's (the threshold or the model said no)."""
        answer = grounding.extractive
        evidence = {"evidence": answer.evidence, "evidence_by_language": answer.evidence_by_language}
        declined = decline(answer.question, answer.language, self.name, **evidence)
        return declined.model_copy(update={"prompts": {**declined.prompts, **self.prompts}})

    def _fallback(self, grounding: Grounding, reason: FallbackReason, error: BaseException | None = None) -> Answer:
        answer = grounding.extractive
        if error is not None:
            logger.warning("%s failed (%s: %s); giving the extractive answer", self.name, type(error).__name__, error)
        else:
            logger.warning("%s reply rejected (%s); giving the extractive answer", self.name, reason)
        notes = load_prompt("llm_notes")
        return answer.model_copy(
            update={
                "note": notes[reason][answer.language],
                "prompts": {**answer.prompts, **self.prompts, notes["name"]: notes["version"]},
            }
        )

    # --- follow-ups ----------------------------------------------------------

    def condense_question(self, history: Sequence[Turn], question: str) -> str | None:
        """The follow-up `question` rewritten as a standalone question, in its language; None
        without history or when the model fails (the caller then uses its own rule)."""
        if not history:
            return None
        language = detect_language(question)
        texts = load_prompt("condense")
        turns = "\n\n".join(
            texts["turn"][language].format(
                question=turn.question, answer=strip_markers(turn.answer)[:CONDENSE_ANSWER_CHARS]
            )
            for turn in history[-CONDENSE_TURNS:]
        )
        prompt = ChatPromptTemplate.from_messages(
            [("system", texts["system"][language]), ("human", texts["human"][language])]
        )
        try:
            reply = self.model.invoke(prompt.format_messages(history=turns, question=question)).text
        except LLM_ERRORS as error:
            logger.warning("%s could not rewrite the follow-up (%s: %s)", self.name, type(error).__name__, error)
            return None
        rewritten = reply.strip().splitlines()[0].strip(" \"'«»“”") if reply.strip() else ""
        return rewritten or None
