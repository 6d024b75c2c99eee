"""Choose the answerer named by the settings (TALKS_LLM), and use any answerer the same way.

- `extractive` (default): quotes the passages, no LLM.
- `openai`: any OpenAI-compatible chat completions server (OpenAI, vLLM, LM Studio,
  Ollama's /v1, llama.cpp's llama-server): TALKS_LLM_BASE_URL, TALKS_LLM_MODEL, TALKS_LLM_API_KEY.
- `llamacpp`: `openai` with llama-server's defaults (http://127.0.0.1:8080/v1, no key, any model name).
- `ollama`: Ollama's native API (TALKS_LLM_BASE_URL defaults to http://127.0.0.1:11434).
- `local`: a GGUF model file (TALKS_LLM_MODEL_PATH) run in this process by llama-cpp-python, through
  LangChain's `ChatLlamaCpp`; needs the `local` extra (`pip install -e '.[local]'`). It always asks
  for plain text with [n] markers: `ChatLlamaCpp` has no JSON-schema mode for structured output.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from corpus.models import Language
from retrieval.answering import Answer, Answerer, ExtractiveAnswerer
from retrieval.embeddings import SentenceTransformerEmbeddings
from retrieval.llm import LLMAnswerer, Turn
from retrieval.retriever import Passage
from talks.settings import Settings

LLAMACPP_BASE_URL = "http://127.0.0.1:8080/v1"
LLAMACPP_MODEL = "local"  # llama-server answers with the model it loaded, whatever the name
OLLAMA_BASE_URL = "http://127.0.0.1:11434"
NO_API_KEY = "none"  # local OpenAI-compatible servers want some key, and check none
LOCAL_BATCH_TOKENS = 512  # prompt tokens llama.cpp evaluates at once (ChatLlamaCpp's default of 8 is slow)


class AnswererConfigError(ValueError):
    """TALKS_LLM names an answerer that does not exist or is not configured."""


def _openai_model(settings: Settings) -> tuple[BaseChatModel, str]:
    from langchain_openai import ChatOpenAI

    llamacpp = settings.llm == "llamacpp"
    base_url = settings.llm_base_url or (LLAMACPP_BASE_URL if llamacpp else None)
    model = settings.llm_model or (LLAMACPP_MODEL if llamacpp else None)
    if not model:
        raise AnswererConfigError("TALKS_LLM=openai needs TALKS_LLM_MODEL (the model name the server knows)")
    if settings.llm_api_key is None and base_url is None:
        raise AnswererConfigError(
            "TALKS_LLM=openai needs TALKS_LLM_API_KEY for OpenAI, or TALKS_LLM_BASE_URL for another server"
        )
    chat = ChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=settings.llm_api_key or SecretStr(NO_API_KEY),
        timeout=settings.llm_timeout_s,
        stream_chunk_timeout=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
        max_completion_tokens=settings.llm_max_tokens,
        temperature=0,
        use_responses_api=False,  # chat completions: what every OpenAI-compatible server speaks
    )
    return chat, model


def _ollama_model(settings: Settings) -> tuple[BaseChatModel, str]:
    from langchain_ollama import ChatOllama

    if not settings.llm_model:
        raise AnswererConfigError("TALKS_LLM=ollama needs TALKS_LLM_MODEL (e.g. qwen2.5:7b-instruct)")
    chat = ChatOllama(
        model=settings.llm_model,
        base_url=settings.llm_base_url or OLLAMA_BASE_URL,
        num_predict=settings.llm_max_tokens,
        temperature=0,
        client_kwargs={"timeout": settings.llm_timeout_s},
    )
    return chat, settings.llm_model


def _local_model(settings: Settings) -> tuple[BaseChatModel, str]:
    path = settings.llm_model_path
    if path is None:
        raise AnswererConfigError("TALKS_LLM=local needs TALKS_LLM_MODEL_PATH (a GGUF model file)")
    if not path.is_file():
        raise AnswererConfigError(f"TALKS_LLM_MODEL_PATH={path} is not a file (it should be a GGUF model file)")
    try:
        import llama_cpp  # noqa: F401 -- ChatLlamaCpp imports it only once built, with a vaguer message
        from langchain_community.chat_models import ChatLlamaCpp
    except ImportError as error:
        raise AnswererConfigError(
            f"TALKS_LLM=local needs the `local` extra: pip install -e '.[local]' ({error})"
        ) from error
    try:
        chat = ChatLlamaCpp(
            model_path=str(path),
            n_ctx=settings.llm_context_tokens,
            max_tokens=settings.llm_max_tokens,
            n_batch=LOCAL_BATCH_TOKENS,
            temperature=0,
            repeat_penalty=1.0,  # ChatLlamaCpp's 1.1 discourages copying the passages' words
            verbose=False,  # llama.cpp's load report goes to stderr otherwise, on every start
        )
    except ValueError as error:  # pydantic wraps llama.cpp's "failed to load model"
        raise AnswererConfigError(f"TALKS_LLM_MODEL_PATH={path} could not be loaded as a GGUF model: {error}") from None
    return chat, path.name


CHAT_MODELS = {"openai": _openai_model, "llamacpp": _openai_model, "ollama": _ollama_model, "local": _local_model}
# Backends whose LangChain model cannot do `with_structured_output(method="json_schema")`.
PLAIN_TEXT_ONLY = {"local"}


def build_answerer(settings: Settings, embeddings: SentenceTransformerEmbeddings) -> Answerer:
    extractive = ExtractiveAnswerer(
        embeddings,
        threshold=settings.decline_threshold,
        cross_language_offset=settings.cross_language_offset,
        max_sentences=settings.answer_max_sentences,
    )
    if settings.llm == "extractive":
        return extractive
    if settings.llm not in CHAT_MODELS:
        raise AnswererConfigError(f"unknown TALKS_LLM={settings.llm!r}: use extractive, {', '.join(CHAT_MODELS)}")
    chat, model = CHAT_MODELS[settings.llm](settings)
    structured = settings.llm_structured and settings.llm not in PLAIN_TEXT_ONLY
    return LLMAnswerer(chat, extractive, name=f"{settings.llm}:{model}", structured=structured)


async def astream_answer(
    answerer: Answerer, question: str, language: Language, passages: Sequence[Passage]
) -> AsyncIterator[str | Answer]:
    """Drafts of the answer (each the whole text so far) while an LLM writes it, then the final
    `Answer`, once, last. An answerer that does not stream yields the `Answer` only."""
    if isinstance(answerer, LLMAnswerer):
        async for update in answerer.astream_answer(question, language, passages):
            yield update
    else:
        yield await asyncio.to_thread(answerer.answer, question, language, passages)


def condense_question(answerer: Answerer, history: Sequence[Turn], question: str) -> str | None:
    """The follow-up rewritten as a standalone question by the LLM; None for the extractive
    answerer, without history, or when the LLM fails (use `service.standalone_query` then)."""
    return answerer.condense_question(history, question) if isinstance(answerer, LLMAnswerer) else None
