"""A fake LLM server for tests: the OpenAI chat completions API and Ollama's native chat API.

One aiohttp server on 127.0.0.1, in a background thread, answers

- ``POST /v1/chat/completions`` like an OpenAI-compatible server (OpenAI, vLLM,
  llama.cpp's ``llama-server``, LM Studio): a ``chat.completion`` object, or with
  ``"stream": true`` server-sent events of ``chat.completion.chunk`` objects ending
  in ``data: [DONE]``; errors as ``{"error": {...}}``;
- ``POST /api/chat`` like Ollama: one JSON object, or with ``"stream": true``
  (Ollama's default) newline-delimited JSON objects, the last with ``"done": true``;
  errors as ``{"error": "..."}``.

So ``langchain-openai``'s ``ChatOpenAI(base_url=fake.openai_base_url)`` and
``langchain-ollama``'s ``ChatOllama(base_url=fake.ollama_base_url)`` talk to it over real
HTTP and cannot tell the difference.

Replies are scripted: ``fake.script(Reply(...), ...)`` queues replies that the next
requests get in order (a 500, a slow reply, a reply streamed in given chunks...).
When the queue is empty, the ``responder`` given to the constructor makes the reply
from the request (``cited_reply`` by default: a valid cited answer in the language of
the system prompt).  Every request is recorded (``fake.requests``), so a test can check
the prompt the model was given.

Usage::

    with FakeLLM() as fake:
        fake.script(Reply("Sherman led the US delegation [1]."))
        model = ChatOpenAI(base_url=fake.openai_base_url, api_key="k", model="m")
        model.invoke("...")
        assert "[1]" in fake.requests[-1].user
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from aiohttp import web
from local_server import LocalServer

__all__ = ["FakeLLM", "Received", "Reply", "cited_reply", "is_arabic"]

JSON = dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """What the fake answers to one request.

    ``content`` is the assistant's text (JSON text for structured requests).  ``status``
    other than 200 sends an error body instead.  ``delay`` waits before the response
    starts (a slow model); ``chunk_delay`` waits between streamed chunks.  ``chunks``
    says how a streamed reply is cut (default: word by word, spaces kept).
    """

    content: str = ""
    status: int = 200
    delay: float = 0.0
    chunk_delay: float = 0.0
    chunks: tuple[str, ...] | None = None

    def pieces(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        words = self.content.split(" ")
        return [word + " " for word in words[:-1]] + words[-1:]


@dataclass(frozen=True)
class Received:
    """One request the fake received."""

    api: Literal["openai", "ollama"]
    path: str
    body: JSON
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def messages(self) -> list[JSON]:
        return list(self.body.get("messages", []))

    def _text_of(self, role: str) -> str:
        return "\n".join(str(m.get("content") or "") for m in self.messages if m.get("role") == role)

    @property
    def system(self) -> str:
        """All system messages' text."""
        return self._text_of("system")

    @property
    def user(self) -> str:
        """All user messages' text."""
        return self._text_of("user")

    @property
    def stream(self) -> bool:
        # Ollama streams unless told not to; OpenAI only when asked.
        return bool(self.body.get("stream", self.api == "ollama"))

    @property
    def structured(self) -> bool:
        """Whether the client asked for JSON output (OpenAI response_format, Ollama format)."""
        if self.api == "openai":
            return "response_format" in self.body
        return bool(self.body.get("format"))


def is_arabic(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum("\u0600" <= c <= "\u06ff" for c in letters) / len(letters) >= 0.3


def cited_reply(request: Received) -> Reply:
    """A valid answer citing passage [1], in the language of the system prompt."""
    text = "تتناول المقاطع هذا السؤال [1]." if is_arabic(request.system) else "The passages address this question [1]."
    if request.structured:
        return Reply(json.dumps({"answer": text, "citations": [{"passage": 1, "quote": ""}]}, ensure_ascii=False))
    return Reply(text)


class FakeLLM(LocalServer):
    """An OpenAI-compatible and Ollama chat server on 127.0.0.1 with scripted replies."""

    name = "fake LLM server"
    # A slow reply's handler is cancelled when its client goes away.
    runner_options: ClassVar[dict[str, Any]] = {"shutdown_timeout": 0.5, "handler_cancellation": True}

    def __init__(self, responder: Callable[[Received], Reply] = cited_reply, *, model: str = "fake-model") -> None:
        super().__init__()
        self.responder = responder
        self.model = model
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self._requests: list[Received] = []

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeLLM.start() has not been called")
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """What to pass as ``base_url`` to an OpenAI client."""
        return f"{self.base_url}/v1"

    @property
    def ollama_base_url(self) -> str:
        """What to pass as ``base_url`` to an Ollama client."""
        return self.base_url

    # ------------------------------------------------------------------ scripting and inspection

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order (then the responder takes over)."""
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        """Forget queued replies and recorded requests."""
        with self._lock:
            self._script.clear()
            self._requests.clear()

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """Scripted replies not used yet."""
        with self._lock:
            return len(self._script)

    # ------------------------------------------------------------------ serving

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle_openai)
        app.router.add_post("/api/chat", self._handle_ollama)
        return app

    async def _receive(self, api: Literal["openai", "ollama"], request: web.Request) -> tuple[Received, Reply]:
        received = Received(api, request.path, await request.json(), dict(request.headers))
        with self._lock:
            self._requests.append(received)
            reply = self._script.popleft() if self._script else None
        reply = reply or self.responder(received)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return received, reply

    async def _handle_openai(self, request: web.Request) -> web.StreamResponse:
        received, reply = await self._receive("openai", request)
        if reply.status != 200:
            error = {"message": f"fake error {reply.status}", "type": "server_error", "code": None}
            return web.json_response({"error": error}, status=reply.status)
        created = int(time.time())
        base = {"id": "chatcmpl-fake", "created": created, "model": received.body.get("model", self.model)}
        if not received.stream:
            return web.json_response(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply.content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)

        async def event(data: JSON) -> None:
            await response.write(f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode())

        chunk = {**base, "object": "chat.completion.chunk"}
        await event({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        for piece in reply.pieces():
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            await event({**chunk, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        await event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (received.body.get("stream_options") or {}).get("include_usage"):
            await event({**chunk, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _handle_ollama(self, request: web.Request) -> web.StreamResponse:
        received, reply = await self._receive("ollama", request)
        if reply.status != 200:
            return web.json_response({"error": f"fake error {reply.status}"}, status=reply.status)
        model = received.body.get("model", self.model)
        created_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        done = {
            "model": model,
            "created_at": created_at,
            "done": True,
            "done_reason": "stop",
            "total_duration": 1_000_000,
            "prompt_eval_count": 10,
            "eval_count": 10,
        }
        if not received.stream:
            return web.json_response({**done, "message": {"role": "assistant", "content": reply.content}})
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for piece in reply.pieces():
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            line = {"model": model, "created_at": created_at, "message": {"role": "assistant", "content": piece}, "done": False}
            await response.write((json.dumps(line, ensure_ascii=False) + "\n").encode())
        await response.write((json.dumps({**done, "message": {"role": "assistant", "content": ""}}) + "\n").encode())
        await response.write_eof()
        return response
