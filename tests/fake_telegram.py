"""A fake Telegram Bot API server for end-to-end tests of the bot.

The fake listens on 127.0.0.1 and answers ``POST /bot<TOKEN>/<method>`` the way
https://api.telegram.org does, for the methods this project's bot uses: a bot
(python-telegram-bot, or anything else speaking HTTP) is pointed at it with
``base_url`` / ``base_file_url`` and cannot tell the difference.  The test on the
other side plays the users: it queues updates (text, commands, media, edits,
button presses), makes Telegram misbehave the way it really does (HTML that does
not parse, messages that are too long, blocked chats, flood control), and
inspects everything the bot sent.

The server runs an aiohttp application on its own event loop in a background
thread, so a test can drive it from synchronous code, from its own event loop, or
while the bot runs in another process.  All state sits behind one lock; long
polling ``getUpdates`` waits on a condition variable, in a worker thread, and
wakes as soon as an update is queued.

Usage::

    with FakeTelegram() as fake:
        alice = fake.user(1001, "Alice")
        start_bot(token=fake.token, base_url=fake.base_url)  # a subprocess, say
        fake.send_text(alice, "What was agreed in Geneva?")
        answer = fake.wait_for_message(alice["id"], contains="Geneva")
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import logging
import re
import string
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import telegram
from aiohttp import BodyPartReader, web
from local_server import LocalServer

__all__ = ["ApiError", "EntityParseError", "FakeTelegram", "parse_html", "utf16_len"]

_LOGGER = logging.getLogger(__name__)

JSON = dict[str, Any]
T = TypeVar("T")

#: Every Bot API method, spelled as Telegram spells it, taken from the camelCase
#: aliases python-telegram-bot defines on ``telegram.Bot`` (plus ``close``, the one
#: method whose name is a single lowercase word).  Method names are
#: case-insensitive on the real server, hence the lowercase keys.
_API_METHODS: dict[str, str] = {
    name.lower(): name
    for name, value in vars(telegram.Bot).items()
    if callable(value)
    and (re.fullmatch(r"[a-z]+(?:[A-Z][a-z0-9]*)+", name) or name == "close")
}

#: Parameters whose form-encoded value is the raw string; every other parameter
#: holds JSON (python-telegram-bot JSON-encodes numbers, booleans and objects, but
#: not strings).
_STRING_PARAMS = frozenset(
    [
        "action",
        "address",
        "business_connection_id",
        "callback_query_id",
        "caption",
        "description",
        "emoji",
        "explanation",
        "file_id",
        "first_name",
        "inline_message_id",
        "ip_address",
        "language_code",
        "last_name",
        "message_effect_id",
        "name",
        "parse_mode",
        "phone_number",
        "question",
        "secret_token",
        "short_description",
        "text",
        "title",
        "url",
        "vcard",
        "animation",
        "audio",
        "document",
        "photo",
        "sticker",
        "video",
        "video_note",
        "voice",
        "thumbnail",
    ]
)

#: Update types delivered when the bot never passed ``allowed_updates`` (or passed []).
_DEFAULT_UPDATE_TYPES = frozenset(
    [
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    ]
)

_CHAT_ACTIONS = frozenset(
    [
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    ]
)

#: Methods that post something into a chat and therefore fail in a chat that
#: blocked (or kicked) the bot.
_POSTING_PREFIXES = ("send", "edit", "copy", "forward")

#: Media-sending methods and the Message field that carries their media.
_MEDIA_METHODS = {
    "sendPhoto": "photo",
    "sendDocument": "document",
    "sendAudio": "audio",
    "sendVoice": "voice",
    "sendVideo": "video",
    "sendAnimation": "animation",
    "sendSticker": "sticker",
}

_MAX_TEXT_LENGTH = 4096
_MAX_CAPTION_LENGTH = 1024
_MAX_CALLBACK_DATA_BYTES = 64

_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An unsuccessful Bot API reply: HTTP status ``code`` and Telegram's ``description``."""

    def __init__(
        self, code: int, description: str, retry_after: int | None = None
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def envelope(self) -> JSON:
        """The JSON body Telegram sends along with the HTTP status."""
        body: JSON = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad_request(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


# --------------------------------------------------------------------------- HTML parse mode


class EntityParseError(ValueError):
    """Text in HTML parse mode that Telegram refuses; the message is Telegram's own wording."""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of every Telegram length and offset."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


_SIMPLE_TAG_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
_HTML_TAGS = frozenset(_SIMPLE_TAG_TYPES) | {
    "a",
    "tg-emoji",
    "pre",
    "code",
    "blockquote",
}
#: How Telegram orders entities that start at the same offset and have the same length.
_ENTITY_PRIORITY = {
    "blockquote": 0,
    "expandable_blockquote": 0,
    "pre": 11,
    "code": 20,
    "text_link": 49,
    "bold": 90,
    "italic": 91,
    "underline": 92,
    "strikethrough": 93,
    "spoiler": 94,
    "custom_emoji": 99,
}
_HTML_SPACES = " \t\r\n\v\0"
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_URL_WITH_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_URL_WITHOUT_SCHEME = re.compile(
    r"(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?::\d+)?(?P<rest>[/?#]\S*)?"
)


@dataclass
class _OpenTag:
    name: str
    argument: str
    utf16_offset: int
    text_index: int


def _decode_html_entity(s: str, pos: int) -> tuple[str, int] | None:
    """Decode the character reference at ``s[pos] == "&"`` like Telegram does.

    Only &lt; &gt; &amp; &quot; and numeric references are understood (the ``;`` is
    optional); anything else is not an entity and stays in the text as typed.
    Returns the character and the position after the reference.
    """
    end = pos + 1
    if s[end] == "#":
        end += 1
        digits = string.digits
        base = 10
        if s[end] == "x":
            end += 1
            digits = string.hexdigits
            base = 16
        start = end
        while s[end] in digits:
            end += 1
        code = int(s[start:end], base) if end > start else 0
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return None
        char = chr(code)
    else:
        start = end
        while s[end].isascii() and s[end].isalpha():
            end += 1
        found = _NAMED_ENTITIES.get(s[start:end])
        if found is None:
            return None
        char = found
    if s[end] == ";":
        end += 1
    return char, end


def _tag_argument(tag: str, attribute: str, value: str, current: str) -> str:
    if tag == "a" and attribute == "href":
        return value
    if tag == "code" and attribute == "class" and value.startswith("language-"):
        return value.removeprefix("language-")
    if tag == "span" and attribute == "class" and value.startswith("tg-"):
        return value.removeprefix("tg-")
    if tag == "tg-emoji" and attribute == "emoji-id":
        return value
    if tag == "blockquote" and attribute == "expandable":
        return "1"
    return current


def _normalize_url(url: str) -> str | None:
    """The URL a text_link entity gets, or None where Telegram drops the link."""
    if _URL_WITH_SCHEME.fullmatch(url):
        return url
    match = _URL_WITHOUT_SCHEME.fullmatch(url)
    if match is None:
        return None
    host = url[: match.start("rest")] if match["rest"] else url
    path = match["rest"] or ""
    return f"http://{host}{path if path.startswith('/') else '/' + path}"


def _close_tag(
    tag: _OpenTag, length: int, inner_text: str, entities: list[JSON]
) -> None:
    """Append the entity a closed tag produces (if any) to ``entities``."""
    offset = tag.utf16_offset
    entity: JSON
    if tag.name in _SIMPLE_TAG_TYPES:
        entity = {"type": _SIMPLE_TAG_TYPES[tag.name]}
    elif tag.name == "tg-emoji":
        if not re.fullmatch(r"-?\d{1,19}", tag.argument):
            raise EntityParseError("Invalid custom emoji identifier specified")
        entity = {"type": "custom_emoji", "custom_emoji_id": tag.argument}
    elif tag.name == "a":
        url = _normalize_url(tag.argument or inner_text)
        if url is None:
            return
        entity = {"type": "text_link", "url": url}
    elif tag.name == "blockquote":
        entity = {"type": "expandable_blockquote" if tag.argument else "blockquote"}
    elif tag.name == "pre":
        entity = {"type": "pre"}
        # <pre><code class="language-x">...</code></pre> is one pre entity with a language.
        if entities and entities[-1]["type"] == "code" and "language" in entities[-1]:
            inner = entities[-1]
            if (inner["offset"], inner["length"]) == (offset, length):
                entities.pop()
                entity["language"] = inner["language"]
    else:  # code
        # <code class="language-x"><pre>...</pre></code> is one pre entity too.
        if tag.argument and entities and entities[-1]["type"] == "pre":
            inner = entities[-1]
            if (inner["offset"], inner["length"]) == (offset, length):
                inner["language"] = tag.argument
                return
        entity = {"type": "code"}
        if tag.argument:
            entity["language"] = (
                tag.argument
            )  # dropped unless an enclosing pre takes it
    entities.append({**entity, "offset": offset, "length": length})


def parse_html(text: str) -> tuple[str, list[JSON]]:
    """Parse ``text`` in Telegram's HTML parse mode into visible text and entities.

    A port of TDLib's ``parse_html`` (what the Bot API server runs): same tags,
    same leniencies (an ``&`` that starts no known entity stays as typed, ``</>``
    closes the innermost tag, unknown attributes are ignored) and the same error
    messages, byte offsets in the UTF-8 text included.  Entity offsets and lengths
    are in UTF-16 code units.

    Raises:
        EntityParseError: with the text Telegram puts after "can't parse entities: ".
    """
    s = text + "\0"
    end_of_text = len(text)
    out: list[str] = []
    utf16_offset = 0
    entities: list[JSON] = []
    stack: list[_OpenTag] = []

    def byte_offset(index: int) -> int:
        return len(text[:index].encode("utf-8", "surrogatepass"))

    def skip_spaces(index: int) -> int:
        while index < end_of_text and s[index] in _HTML_SPACES:
            index += 1
        return index

    i = 0
    while i < end_of_text:
        char = s[i]
        if char == "&":
            decoded = _decode_html_entity(s, i)
            if decoded is not None:
                decoded_char, i = decoded
                out.append(decoded_char)
                utf16_offset += utf16_len(decoded_char)
                continue
        if char != "<":
            out.append(char)
            utf16_offset += utf16_len(char)
            i += 1
            continue

        begin = i
        i += 1
        if s[i] != "/":
            while s[i] not in _HTML_SPACES and s[i] != ">":
                i += 1
            if i >= end_of_text:
                raise EntityParseError(
                    f"Unclosed start tag at byte offset {byte_offset(begin)}"
                )
            tag = s[begin + 1 : i].lower()
            if tag not in _HTML_TAGS:
                raise EntityParseError(
                    f'Unsupported start tag "{tag}" at byte offset {byte_offset(begin)}'
                )
            argument = ""
            while s[i] != ">":
                i = skip_spaces(i)
                if s[i] == ">":
                    break
                attribute_begin = i
                while s[i] not in _HTML_SPACES and s[i] not in "=>":
                    i += 1
                attribute = s[attribute_begin:i]
                if not attribute:
                    raise EntityParseError(
                        f'Empty attribute name in the tag "{tag}" '
                        f"at byte offset {byte_offset(begin)}"
                    )
                i = skip_spaces(i)
                if s[i] != "=":
                    argument = _tag_argument(tag, attribute, "", argument)
                    continue
                i = skip_spaces(i + 1)
                if i >= end_of_text:
                    raise EntityParseError(
                        f'Unclosed start tag "{tag}" at byte offset {byte_offset(begin)}'
                    )
                if s[i] not in "'\"":
                    # An unquoted value is an HTML 2.0 name token: letters, digits, '.', '-'.
                    token_begin = i
                    while s[i].isascii() and (s[i].isalnum() or s[i] in ".-"):
                        i += 1
                    value = s[token_begin:i].lower()
                    if s[i] not in _HTML_SPACES and s[i] != ">":
                        raise EntityParseError(
                            "Unexpected end of name token "
                            f"at byte offset {byte_offset(token_begin)}"
                        )
                else:
                    quote = s[i]
                    i += 1
                    value_chars: list[str] = []
                    while i < end_of_text and s[i] != quote:
                        if (
                            s[i] == "&"
                            and (decoded := _decode_html_entity(s, i)) is not None
                        ):
                            decoded_char, i = decoded
                            value_chars.append(decoded_char)
                            continue
                        value_chars.append(s[i])
                        i += 1
                    if s[i] == quote:
                        i += 1
                    value = "".join(value_chars)
                if i >= end_of_text:
                    raise EntityParseError(
                        f"Unclosed start tag at byte offset {byte_offset(begin)}"
                    )
                argument = _tag_argument(tag, attribute, value, argument)
            if tag == "span" and argument != "spoiler":
                raise EntityParseError(
                    'Tag "span" must have class "tg-spoiler" '
                    f"at byte offset {byte_offset(begin)}"
                )
            stack.append(_OpenTag(tag, argument, utf16_offset, len(out)))
        else:
            if not stack:
                raise EntityParseError(
                    f"Unexpected end tag at byte offset {byte_offset(begin)}"
                )
            while s[i] not in _HTML_SPACES and s[i] != ">":
                i += 1
            end_tag = s[begin + 2 : i]
            i = skip_spaces(i)
            if s[i] != ">":
                raise EntityParseError(
                    f"Unclosed end tag at byte offset {byte_offset(begin)}"
                )
            open_tag = stack.pop()
            if end_tag and end_tag != open_tag.name:
                raise EntityParseError(
                    f"Unmatched end tag at byte offset {byte_offset(begin)}, "
                    f'expected "</{open_tag.name}>", found "</{end_tag}>"'
                )
            if utf16_offset > open_tag.utf16_offset:
                inner_text = "".join(out[open_tag.text_index :])
                _close_tag(
                    open_tag, utf16_offset - open_tag.utf16_offset, inner_text, entities
                )
        i += 1  # past the '>'

    if stack:
        raise EntityParseError(
            f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"'
        )
    visible = "".join(out)
    if any(0xD800 <= ord(char) <= 0xDFFF for char in visible):
        raise EntityParseError(
            "Text contains invalid Unicode characters after decoding HTML entities, "
            "check for unmatched surrogate code units"
        )
    for entity in entities:
        if entity["type"] == "code":
            entity.pop("language", None)
    entities.sort(
        key=lambda e: (e["offset"], -e["length"], _ENTITY_PRIORITY[e["type"]])
    )
    return visible, entities


# --------------------------------------------------------------------------- entities in user text

_AUTO_ENTITY = re.compile(
    r"(?P<bot_command>(?<![\w/])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?)"
    r"|(?P<mention>(?<![\w@])@[A-Za-z0-9_]{5,32})"
    r"|(?P<url>https?://\S+)"
)


def _detect_entities(text: str) -> list[JSON]:
    """The entities a Telegram client attaches to typed text: /commands, @mentions, URLs."""
    return [
        {
            "type": match.lastgroup,
            "offset": utf16_len(text[: match.start()]),
            "length": utf16_len(match.group()),
        }
        for match in _AUTO_ENTITY.finditer(text)
    ]


# --------------------------------------------------------------------------- the server


@dataclass
class _Flood:
    method: str
    chat_id: int | None
    remaining: int
    retry_after: int


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes


class FakeTelegram(LocalServer):
    """A fake Bot API server plus the controls a test needs to play Telegram's users.

    Thread-safe: every public method may be called from any thread while the bot
    talks to the server.  Dicts handed out are copies; mutate them freely.
    """

    name = "fake Telegram server"

    def __init__(
        self, token: str = "123456:TEST-token", bot_username: str = "talks_test_bot"
    ) -> None:
        super().__init__()
        self.token = token
        self.bot_user: JSON = {
            "id": int(token.partition(":")[0]),  # a bot's id is its token's prefix
            "is_bot": True,
            "first_name": "Talks Test Bot",
            "username": bot_username,
        }
        self._cond = threading.Condition(threading.RLock())
        self._closed = False
        self._update_id = 1
        self._updates: list[JSON] = []
        self._allowed_updates = _DEFAULT_UPDATE_TYPES
        self._poll_generation = 0
        self._users: dict[int, JSON] = {}
        self._chats: dict[int, JSON] = {}
        self._messages: dict[tuple[int, int], JSON] = {}
        self._last_message_id: dict[int, int] = {}
        self._sent: list[tuple[int, int]] = []
        self._deleted: set[tuple[int, int]] = set()
        self._calls: list[JSON] = []
        self._blocked: set[int] = set()
        self._floods: list[_Flood] = []
        self._callback_queries: dict[str, bool] = {}
        self._next_callback_id = 1
        self._commands: dict[tuple[str, str], list[JSON]] = {}
        self._webhook: JSON = {"url": "", "has_custom_certificate": False}
        self._files: dict[str, _StoredFile] = {}
        self._handlers: dict[str, Callable[[JSON], Any]] = {
            "getMe": self._api_get_me,
            "sendMessage": self._api_send_message,
            "editMessageText": self._api_edit_message_text,
            "editMessageReplyMarkup": self._api_edit_message_reply_markup,
            "deleteMessage": self._api_delete_message,
            "sendChatAction": self._api_send_chat_action,
            "answerCallbackQuery": self._api_answer_callback_query,
            "sendMessageDraft": self._api_send_message_draft,
            "setWebhook": self._api_set_webhook,
            "deleteWebhook": self._api_delete_webhook,
            "getWebhookInfo": self._api_get_webhook_info,
            "setMyCommands": self._api_set_my_commands,
            "getMyCommands": self._api_get_my_commands,
            "deleteMyCommands": self._api_delete_my_commands,
            "getFile": self._api_get_file,
            "getUpdates": self._api_get_updates,
            **{
                method: functools.partial(self._api_send_media, field)
                for method, field in _MEDIA_METHODS.items()
            },
        }

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """What to pass as ``base_url`` to python-telegram-bot (the token is appended)."""
        return f"http://127.0.0.1:{self._require_port()}/bot"

    @property
    def base_file_url(self) -> str:
        """What to pass as ``base_file_url`` to python-telegram-bot."""
        return f"http://127.0.0.1:{self._require_port()}/file/bot"

    def start(self) -> None:
        super().start()
        _LOGGER.info("fake Telegram Bot API listening on %s", self.base_url)

    def stop(self) -> None:
        """Stop serving; pending long polls return at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        super().stop()

    # ------------------------------------------------------------------ users and chats

    def user(
        self,
        user_id: int,
        first_name: str = "Alice",
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
    ) -> JSON:
        """Create (or replace) a user and their private chat with the bot; returns the User."""
        user: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
        if last_name is not None:
            user["last_name"] = last_name
        if username is not None:
            user["username"] = username
        if language_code is not None:
            user["language_code"] = language_code
        chat: JSON = {"id": user_id, "type": "private", "first_name": first_name}
        if last_name is not None:
            chat["last_name"] = last_name
        if username is not None:
            chat["username"] = username
        with self._cond:
            self._users[user_id] = user
            self._chats[user_id] = chat
        return copy.deepcopy(user)

    def private_chat(self, user: JSON) -> JSON:
        """The private Chat between ``user`` and the bot."""
        with self._cond:
            return copy.deepcopy(self._stored_chat(user["id"]))

    def group_chat(
        self,
        chat_id: int,
        title: str,
        *,
        chat_type: Literal["group", "supergroup"] | None = None,
    ) -> JSON:
        """Create (or replace) a group the bot is a member of; returns the Chat.

        ``chat_type`` defaults to "supergroup" for ids like -100xxxxxxxxxx and to
        "group" for other negative ids, as on Telegram.
        """
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        if chat_type is None:
            chat_type = "supergroup" if chat_id <= -1_000_000_000_000 else "group"
        chat: JSON = {"id": chat_id, "type": chat_type, "title": title}
        with self._cond:
            self._chats[chat_id] = chat
        return copy.deepcopy(chat)

    def block(self, chat_id: int) -> None:
        """Make every later post into ``chat_id`` fail with 403, as when a user blocks the bot
        (in a group: as when the bot was kicked)."""
        with self._cond:
            self._stored_chat(chat_id)
            self._blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        """Undo :meth:`block`."""
        with self._cond:
            self._blocked.discard(chat_id)

    def arm_flood(
        self, method: str, count: int, retry_after: int = 1, chat_id: int | None = None
    ) -> None:
        """Answer the next ``count`` calls of ``method`` (into ``chat_id``, or any chat)
        with 429 "Too Many Requests: retry after N"; later calls succeed as usual."""
        canonical = self._canonical_method(method)
        with self._cond:
            self._floods.append(_Flood(canonical, chat_id, count, retry_after))

    # ------------------------------------------------------------------ injecting updates

    def send_text(
        self,
        user: JSON,
        text: str,
        chat: JSON | None = None,
        *,
        reply_to_message: JSON | None = None,
        entities: list[JSON] | None = None,
    ) -> JSON:
        """``user`` writes ``text`` into ``chat`` (default: their private chat with the bot).

        Entities default to what a client would attach: bot_command, mention and url.
        Returns the queued Update.
        """
        content: JSON = {"text": text}
        detected = _detect_entities(text) if entities is None else entities
        if detected:
            content["entities"] = detected
        return self._user_message(user, chat, content, reply_to_message)

    def send_command(
        self,
        user: JSON,
        command: str,
        args: str = "",
        chat: JSON | None = None,
        *,
        addressed: bool = False,
    ) -> JSON:
        """``user`` sends ``/command args`` (``/command@bot_username args`` if ``addressed``)."""
        text = "/" + command.removeprefix("/")
        if addressed:
            text += "@" + self.bot_user["username"]
        command_length = utf16_len(text)
        if args:
            text += " " + args
        entities = [{"type": "bot_command", "offset": 0, "length": command_length}]
        return self.send_text(user, text, chat, entities=entities)

    def send_photo(
        self,
        user: JSON,
        chat: JSON | None = None,
        *,
        caption: str | None = None,
        data: bytes = b"\xff\xd8fake-jpeg",
    ) -> JSON:
        """``user`` sends a photo; its bytes can be fetched via getFile. Returns the Update."""
        return self._user_media(user, chat, "photo", data, "photo.jpg", caption)

    def send_document(
        self,
        user: JSON,
        chat: JSON | None = None,
        *,
        caption: str | None = None,
        data: bytes = b"%PDF-1.4 fake",
        file_name: str = "document.pdf",
    ) -> JSON:
        """``user`` sends a document; its bytes can be fetched via getFile. Returns the Update."""
        return self._user_media(user, chat, "document", data, file_name, caption)

    def send_voice(
        self, user: JSON, chat: JSON | None = None, *, data: bytes = b"OggS fake-voice"
    ) -> JSON:
        """``user`` sends a voice note. Returns the Update."""
        return self._user_media(user, chat, "voice", data, "voice.ogg", None)

    def send_sticker(self, user: JSON, chat: JSON | None = None) -> JSON:
        """``user`` sends a sticker. Returns the Update."""
        return self._user_media(
            user, chat, "sticker", b"RIFF fake-webp", "sticker.webp", None
        )

    def edit_text(self, user: JSON, original_message: JSON, new_text: str) -> JSON:
        """``user`` edits a text message they sent; returns the edited_message Update."""
        with self._cond:
            message = self._stored_message(
                original_message["chat"]["id"], original_message["message_id"]
            )
            if message["from"]["id"] != user["id"] or "text" not in message:
                raise ValueError("a user can only edit their own text messages")
            message["text"] = new_text
            message.pop("entities", None)
            if entities := _detect_entities(new_text):
                message["entities"] = entities
            message["edit_date"] = int(time.time())
            return self._enqueue("edited_message", copy.deepcopy(message))

    def press_button(self, user: JSON, bot_message: JSON, callback_data: str) -> JSON:
        """``user`` presses the inline button carrying ``callback_data`` under a message the
        bot sent (as it looks now, after edits); returns the callback_query Update.

        Raises ValueError when the message has no such button: no client could press it.
        """
        with self._cond:
            message = self._stored_message(
                bot_message["chat"]["id"], bot_message["message_id"]
            )
            rows = message.get("reply_markup", {}).get("inline_keyboard", [])
            available = [button.get("callback_data") for row in rows for button in row]
            if callback_data not in available:
                raise ValueError(
                    f"message {message['message_id']} has no button with callback_data "
                    f"{callback_data!r}; its buttons carry {available}"
                )
            query_id = str(self._next_callback_id)
            self._next_callback_id += 1
            self._callback_queries[query_id] = False
            query = {
                "id": query_id,
                "from": copy.deepcopy(self._users[user["id"]]),
                "message": copy.deepcopy(message),
                "chat_instance": str(abs(message["chat"]["id"]) * 7919),
                "data": callback_data,
            }
            return self._enqueue("callback_query", query)

    # ------------------------------------------------------------------ observing

    def sent(
        self, chat_id: int | None = None, *, include_deleted: bool = False
    ) -> list[JSON]:
        """Messages the bot sent (to ``chat_id``, or anywhere), as they are now, in order."""
        with self._cond:
            return [
                copy.deepcopy(self._messages[key])
                for key in self._sent
                if (chat_id is None or key[0] == chat_id)
                and (include_deleted or key not in self._deleted)
            ]

    def wait_for_sent(self, after: int = 0, timeout: float = 60.0) -> list[JSON]:
        """The messages the bot sent anywhere after its first ``after`` (deleted ones included),
        as they are now, in order; waits up to ``timeout`` for at least one, else returns [].

        Wakes as soon as the bot sends, without polling: a load test follows every chat
        through one caller that passes ``after`` = the number of messages seen so far.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._sent) <= after and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return [copy.deepcopy(self._messages[key]) for key in self._sent[after:]]

    def calls(self, method: str | None = None) -> list[JSON]:
        """Every API call (of ``method``, case-insensitive), in order of completion.

        Each is ``{"method", "params", "content_type", "status", "response"}``;
        ``params`` are decoded (uploads appear as filename/content_type/size).
        """
        wanted = method.lower() if method is not None else None
        with self._cond:
            return [
                copy.deepcopy(call)
                for call in self._calls
                if wanted is None or call["method"].lower() == wanted
            ]

    def commands(
        self, scope: JSON | None = None, language_code: str = ""
    ) -> list[JSON]:
        """The bot's command list for ``scope`` (default scope) and ``language_code``."""
        with self._cond:
            return copy.deepcopy(
                self._commands.get(self._commands_key(scope, language_code), [])
            )

    def pending_updates(self) -> list[JSON]:
        """Updates queued and not yet confirmed by the bot (via getUpdates ``offset``)."""
        with self._cond:
            return copy.deepcopy(self._updates)

    def wait_for(self, predicate: Callable[[], T | None], timeout: float = 30.0) -> T:
        """Poll ``predicate`` until it returns something truthy, and return that.

        Blocks the calling thread: from a test whose event loop also runs the bot,
        use :meth:`wait_for_async`.  On timeout raises AssertionError listing the
        recent API calls.
        """
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_report(timeout))
            time.sleep(0.02)

    async def wait_for_async(
        self, predicate: Callable[[], T | None], timeout: float = 30.0
    ) -> T:
        """:meth:`wait_for` for async tests: sleeps with asyncio, so the loop keeps running."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_report(timeout))
            await asyncio.sleep(0.02)

    def wait_for_message(
        self,
        chat_id: int,
        *,
        after: int = 0,
        contains: str | None = None,
        timeout: float = 60.0,
    ) -> JSON:
        """The first message the bot sent to ``chat_id`` with message_id > ``after`` whose
        text (or caption) contains ``contains``, waiting for it to appear (edits count)."""
        return self.wait_for(
            lambda: self._find_message(chat_id, after, contains), timeout
        )

    async def wait_for_message_async(
        self,
        chat_id: int,
        *,
        after: int = 0,
        contains: str | None = None,
        timeout: float = 60.0,
    ) -> JSON:
        """:meth:`wait_for_message` for async tests."""
        return await self.wait_for_async(
            lambda: self._find_message(chat_id, after, contains), timeout
        )

    # ------------------------------------------------------------------ HTTP plumbing

    def _require_port(self) -> int:
        if self.port is None:
            raise RuntimeError("FakeTelegram.start() has not been called")
        return self.port

    def prepare_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        # Long polls park a worker thread each; keep enough of them around.
        loop.set_default_executor(ThreadPoolExecutor(max_workers=32, thread_name_prefix="fake-telegram-poll"))

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_route("*", "/{tail:.*}", self._handle_not_found)
        return app

    @staticmethod
    def _json_response(status: int, body: JSON) -> web.Response:
        return web.Response(
            status=status,
            text=json.dumps(body, ensure_ascii=False),
            content_type="application/json",
        )

    async def _handle_not_found(self, request: web.Request) -> web.Response:
        return self._json_response(404, ApiError(404, "Not Found").envelope())

    async def _handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._json_response(401, ApiError(401, "Unauthorized").envelope())
        with self._cond:
            stored = next(
                (
                    f
                    for f in self._files.values()
                    if f.file_path == request.match_info["path"]
                ),
                None,
            )
        if stored is None:
            return self._json_response(404, ApiError(404, "Not Found").envelope())
        return web.Response(body=stored.data, content_type="application/octet-stream")

    async def _handle_api(self, request: web.Request) -> web.Response:
        requested = request.match_info["method"]
        canonical = _API_METHODS.get(requested.lower())
        params = await self._read_params(request)
        if request.match_info["token"] != self.token:
            error = ApiError(401, "Unauthorized")
        elif canonical is None:
            error = ApiError(404, "Not Found")
        else:
            call = (canonical, params, request.content_type)
            if canonical == "getUpdates":
                # Long polling blocks on a condition variable: do it off the event loop.
                status, body = await asyncio.to_thread(self._call, *call)
            else:
                status, body = self._call(*call)
            return self._json_response(status, body)
        self._log_call(
            requested, params, request.content_type, error.code, error.envelope()
        )
        return self._json_response(error.code, error.envelope())

    async def _read_params(self, request: web.Request) -> JSON:
        """Decode a request the way the Bot API accepts them: query string, JSON,
        application/x-www-form-urlencoded or multipart/form-data."""
        params: JSON = {
            key: _decode_form_value(key, value) for key, value in request.query.items()
        }
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        elif request.content_type == "application/x-www-form-urlencoded":
            form = await request.post()
            params.update(
                {
                    key: _decode_form_value(key, str(value))
                    for key, value in form.items()
                }
            )
        elif request.content_type == "multipart/form-data":
            reader = await request.multipart()
            uploads: dict[str, JSON] = {}
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue
                if part.filename is None:
                    params[part.name] = _decode_form_value(part.name, await part.text())
                else:
                    data = await part.read()
                    uploads[part.name] = {
                        "filename": part.filename,
                        "content_type": part.headers.get("Content-Type", ""),
                        "size": len(data),
                        "data": data,
                    }
            for key, value in list(params.items()):
                if isinstance(value, str) and value.startswith("attach://"):
                    params[key] = uploads.pop(value.removeprefix("attach://"), value)
            params.update(uploads)
        return params

    def _log_call(
        self, method: str, params: JSON, content_type: str, status: int, body: JSON
    ) -> None:
        recorded_params = {
            key: {k: v for k, v in value.items() if k != "data"}
            if isinstance(value, dict) and "data" in value
            else value
            for key, value in params.items()
        }
        call = {
            "method": method,
            "params": recorded_params,
            "content_type": content_type,
            "status": status,
            "response": body,
        }
        with self._cond:
            self._calls.append(call)
        _LOGGER.debug("%s %s -> %s %s", method, recorded_params, status, body)

    def _call(self, method: str, params: JSON, content_type: str) -> tuple[int, JSON]:
        """Run and log one API method; returns the HTTP status and the JSON body.

        Holds the lock throughout (a long poll releases it while it waits), so the
        call log never lags behind the state it describes.
        """
        with self._cond:
            try:
                self._check_flood(method, params)
                if method.startswith(_POSTING_PREFIXES):
                    self._check_blocked(params)
                handler = self._handlers.get(method)
                result = handler(params) if handler is not None else True
            except ApiError as error:
                status, body = error.code, error.envelope()
            else:
                status, body = 200, {"ok": True, "result": result}
            self._log_call(method, params, content_type, status, body)
            return status, body

    # ------------------------------------------------------------------ checks shared by methods

    def _check_flood(self, method: str, params: JSON) -> None:
        for flood in self._floods:
            if flood.method != method or flood.remaining <= 0:
                continue
            if (
                flood.chat_id is not None
                and _int_or_none(params.get("chat_id")) != flood.chat_id
            ):
                continue
            flood.remaining -= 1
            raise ApiError(
                429,
                f"Too Many Requests: retry after {flood.retry_after}",
                retry_after=flood.retry_after,
            )

    def _check_blocked(self, params: JSON) -> None:
        chat_id = _int_or_none(params.get("chat_id"))
        if chat_id is None or chat_id not in self._blocked:
            return
        chat_type = self._chats[chat_id]["type"]
        if chat_type == "private":
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        raise ApiError(403, f"Forbidden: bot was kicked from the {chat_type} chat")

    def _target_chat(self, params: JSON) -> JSON:
        chat_id = _int_or_none(params.get("chat_id"))
        if chat_id is None or chat_id not in self._chats:
            raise _bad_request("chat not found")
        return self._chats[chat_id]

    @staticmethod
    def _format(
        params: JSON,
        field: str,
        limit: int,
        too_long: str,
        *,
        allow_empty: bool = False,
    ) -> tuple[str, list[JSON]]:
        """Visible text and entities of ``params[field]`` under its parse_mode/entities."""
        raw = params.get(field)
        text = "" if raw is None else str(raw)
        entities = (
            params.get(f"{field}_entities" if field == "caption" else "entities") or []
        )
        parse_mode = params.get("parse_mode")
        if parse_mode:
            mode = str(parse_mode).lower()
            if mode == "html":
                try:
                    text, entities = parse_html(text)
                except EntityParseError as error:
                    raise _bad_request(f"can't parse entities: {error}") from None
            elif mode not in ("markdown", "markdownv2"):
                raise _bad_request("unsupported parse_mode")
        if not allow_empty and not text.strip():
            raise _bad_request(
                "message text is empty"
                if field == "text"
                else "message caption is empty"
            )
        if utf16_len(text) > limit:
            raise _bad_request(too_long)
        return text, entities

    @staticmethod
    def _inline_markup(params: JSON) -> JSON | None:
        """The reply_markup a Message echoes back (only inline keyboards are), validated."""
        markup = params.get("reply_markup")
        if not isinstance(markup, dict) or "inline_keyboard" not in markup:
            return None
        for row in markup["inline_keyboard"]:
            for button in row:
                data = button.get("callback_data")
                if (
                    data is not None
                    and not 1 <= len(data.encode("utf-8")) <= _MAX_CALLBACK_DATA_BYTES
                ):
                    raise _bad_request("BUTTON_DATA_INVALID")
        return markup

    def _reply_target(self, chat: JSON, params: JSON) -> JSON | None:
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            chat_id = _int_or_none(reply.get("chat_id")) or chat["id"]
            allow_missing = bool(reply.get("allow_sending_without_reply"))
        elif params.get("reply_to_message_id") is not None:
            message_id = params["reply_to_message_id"]
            chat_id = chat["id"]
            allow_missing = bool(params.get("allow_sending_without_reply"))
        else:
            return None
        key = (chat_id, _int_or_none(message_id) or 0)
        if key in self._messages and key not in self._deleted:
            target = copy.deepcopy(self._messages[key])
            target.pop(
                "reply_to_message", None
            )  # Telegram does not nest replies further
            return target
        if allow_missing:
            return None
        raise _bad_request("message to be replied not found")

    def _bot_message(self, chat: JSON, params: JSON, content: JSON) -> JSON:
        """Store a message the bot sends and return it as the API returns it."""
        markup = self._inline_markup(params)
        reply = self._reply_target(chat, params)
        message = self._new_message(chat, self.bot_user, content)
        if reply is not None:
            message["reply_to_message"] = reply
        if markup is not None:
            message["reply_markup"] = markup
        if params.get("message_thread_id") is not None:
            message["message_thread_id"] = params["message_thread_id"]
        self._sent.append((chat["id"], message["message_id"]))
        self._cond.notify_all()  # wakes wait_for_sent
        return copy.deepcopy(message)

    def _new_message(self, chat: JSON, sender: JSON, content: JSON) -> JSON:
        message_id = self._last_message_id.get(chat["id"], 0) + 1
        self._last_message_id[chat["id"]] = message_id
        message = {
            "message_id": message_id,
            "from": copy.deepcopy(sender),
            "chat": copy.deepcopy(chat),
            "date": int(time.time()),
            **content,
        }
        self._messages[(chat["id"], message_id)] = message
        return message

    def _message_to_change(self, params: JSON, missing: str) -> JSON:
        chat = self._target_chat(params)
        key = (chat["id"], _int_or_none(params.get("message_id")) or 0)
        if key not in self._messages or key in self._deleted:
            raise _bad_request(missing)
        return self._messages[key]

    # ------------------------------------------------------------------ API methods

    def _api_get_me(self, params: JSON) -> JSON:
        return {
            **self.bot_user,
            "can_join_groups": True,
            # The fake delivers every group message, as with privacy mode disabled.
            "can_read_all_group_messages": True,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _api_get_updates(self, params: JSON) -> list[JSON]:
        with self._cond:
            if self._webhook["url"]:
                raise ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            offset = _int_or_none(params.get("offset")) or 0
            if offset > 0:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            elif offset < 0:
                self._updates = self._updates[offset:]
            allowed = params.get("allowed_updates")
            if isinstance(allowed, list):
                self._allowed_updates = frozenset(allowed) or _DEFAULT_UPDATE_TYPES
            limit = min(max(_int_or_none(params.get("limit")) or 100, 1), 100)
            timeout = max(float(params.get("timeout") or 0), 0.0)
            self._poll_generation += 1
            generation = self._poll_generation
            self._cond.notify_all()  # terminates an older long poll, as Telegram does
            deadline = time.monotonic() + timeout
            while True:
                if generation != self._poll_generation:
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; "
                        "make sure that only one bot instance is running",
                    )
                self._updates = [
                    u for u in self._updates if _update_type(u) in self._allowed_updates
                ]
                remaining = deadline - time.monotonic()
                if self._updates or self._closed or remaining <= 0:
                    return copy.deepcopy(self._updates[:limit])
                self._cond.wait(remaining)

    def _api_send_message(self, params: JSON) -> JSON:
        chat = self._target_chat(params)
        text, entities = self._format(
            params, "text", _MAX_TEXT_LENGTH, "message is too long"
        )
        content: JSON = {"text": text}
        if entities:
            content["entities"] = entities
        return self._bot_message(chat, params, content)

    def _api_send_media(self, field: str, params: JSON) -> JSON:
        chat = self._target_chat(params)
        if not params.get(field):
            raise _bad_request(f"there is no {field} in the request")
        caption, entities = self._format(
            params,
            "caption",
            _MAX_CAPTION_LENGTH,
            "message caption is too long",
            allow_empty=True,
        )
        media = params[field]
        if isinstance(media, dict):  # an upload
            data, file_name = media["data"], media["filename"]
        else:  # a file_id or URL
            stored = self._files.get(str(media))
            data, file_name = (
                (stored.data if stored else b""),
                str(media).rsplit("/", 1)[-1],
            )
        content: JSON = {field: self._media_object(field, data, file_name)}
        if caption:
            content["caption"] = caption
        if entities:
            content["caption_entities"] = entities
        return self._bot_message(chat, params, content)

    def _api_edit_message_text(self, params: JSON) -> JSON | bool:
        if params.get("inline_message_id"):
            return True  # inline messages are not modelled
        message = self._message_to_change(params, "message to edit not found")
        if message["from"]["id"] != self.bot_user["id"]:
            raise _bad_request("message can't be edited")
        if "text" not in message:
            raise _bad_request("there is no text in the message to edit")
        text, entities = self._format(
            params, "text", _MAX_TEXT_LENGTH, "MESSAGE_TOO_LONG"
        )
        markup = self._inline_markup(params)
        unchanged = (
            text == message["text"]
            and entities == message.get("entities", [])
            and markup == message.get("reply_markup")
        )
        if unchanged:
            raise _bad_request(_NOT_MODIFIED)
        message["text"] = text
        _set_or_pop(message, "entities", entities or None)
        _set_or_pop(message, "reply_markup", markup)
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    def _api_edit_message_reply_markup(self, params: JSON) -> JSON | bool:
        if params.get("inline_message_id"):
            return True
        message = self._message_to_change(params, "message to edit not found")
        if message["from"]["id"] != self.bot_user["id"]:
            raise _bad_request("message can't be edited")
        markup = self._inline_markup(params)
        if markup == message.get("reply_markup"):
            raise _bad_request(_NOT_MODIFIED)
        _set_or_pop(message, "reply_markup", markup)
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    def _api_delete_message(self, params: JSON) -> bool:
        message = self._message_to_change(params, "message to delete not found")
        self._deleted.add((message["chat"]["id"], message["message_id"]))
        return True

    def _api_send_chat_action(self, params: JSON) -> bool:
        self._target_chat(params)
        if params.get("action") not in _CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True

    def _api_answer_callback_query(self, params: JSON) -> bool:
        query_id = str(params.get("callback_query_id"))
        if self._callback_queries.get(query_id, True):
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        self._callback_queries[query_id] = True
        return True

    def _api_send_message_draft(self, params: JSON) -> bool:
        """Drafts are only recorded (see :meth:`calls`); they never become messages.

        The text is checked like sendMessage's except that it may be empty (Bot API
        10.0).  Drafts outside private chats and draft_id 0 are refused as the
        documentation demands, but with wording of this fake's own: Telegram's exact
        descriptions for those two were not available.
        """
        chat = self._target_chat(params)
        if chat["type"] != "private":
            raise _bad_request("message drafts can be sent only to private chats")
        if not _int_or_none(params.get("draft_id")):
            raise _bad_request("draft_id must be non-zero")
        self._format(
            params, "text", _MAX_TEXT_LENGTH, "message is too long", allow_empty=True
        )
        return True

    def _api_set_webhook(self, params: JSON) -> bool:
        self._webhook["url"] = str(params.get("url") or "")
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _api_delete_webhook(self, params: JSON) -> bool:
        self._webhook["url"] = ""
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _api_get_webhook_info(self, params: JSON) -> JSON:
        return {**self._webhook, "pending_update_count": len(self._updates)}

    @staticmethod
    def _commands_key(scope: JSON | None, language_code: str | None) -> tuple[str, str]:
        return json.dumps(
            scope or {"type": "default"}, sort_keys=True
        ), language_code or ""

    def _api_set_my_commands(self, params: JSON) -> bool:
        commands = params.get("commands") or []
        if len(commands) > 100:
            raise _bad_request("BOT_COMMANDS_TOO_MUCH")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        self._commands[key] = [
            {"command": c["command"], "description": c.get("description", "")}
            for c in commands
        ]
        return True

    def _api_get_my_commands(self, params: JSON) -> list[JSON]:
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        return copy.deepcopy(self._commands.get(key, []))

    def _api_delete_my_commands(self, params: JSON) -> bool:
        self._commands.pop(
            self._commands_key(params.get("scope"), params.get("language_code")), None
        )
        return True

    def _api_get_file(self, params: JSON) -> JSON:
        stored = self._files.get(str(params.get("file_id")))
        if stored is None:
            raise _bad_request("invalid file_id")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }

    # ------------------------------------------------------------------ internals

    def _stored_chat(self, chat_id: int) -> JSON:
        if chat_id not in self._chats:
            raise KeyError(
                f"unknown chat {chat_id}: create it with user() or group_chat()"
            )
        return self._chats[chat_id]

    def _stored_message(self, chat_id: int, message_id: int) -> JSON:
        key = (chat_id, message_id)
        if key not in self._messages or key in self._deleted:
            raise KeyError(f"no message {message_id} in chat {chat_id}")
        return self._messages[key]

    def _enqueue(self, update_type: str, payload: JSON) -> JSON:
        with self._cond:
            update = {"update_id": self._update_id, update_type: payload}
            self._update_id += 1
            self._updates.append(update)
            self._cond.notify_all()
            return copy.deepcopy(update)

    def _user_message(
        self,
        user: JSON,
        chat: JSON | None,
        content: JSON,
        reply_to_message: JSON | None,
    ) -> JSON:
        with self._cond:
            sender = self._users.get(user["id"])
            if sender is None:
                raise KeyError(f"unknown user {user['id']}: create it with user()")
            target_chat = self._stored_chat(user["id"] if chat is None else chat["id"])
            replied = None
            if reply_to_message is not None:
                replied = copy.deepcopy(
                    self._stored_message(
                        target_chat["id"], reply_to_message["message_id"]
                    )
                )
                replied.pop("reply_to_message", None)
            message = self._new_message(target_chat, sender, content)
            if replied is not None:
                message["reply_to_message"] = replied
            return self._enqueue("message", copy.deepcopy(message))

    def _user_media(
        self,
        user: JSON,
        chat: JSON | None,
        field: str,
        data: bytes,
        file_name: str,
        caption: str | None,
    ) -> JSON:
        with self._cond:
            content: JSON = {field: self._media_object(field, data, file_name)}
            if caption:
                content["caption"] = caption
                if entities := _detect_entities(caption):
                    content["caption_entities"] = entities
            return self._user_message(user, chat, content, None)

    def _media_object(
        self, field: str, data: bytes, file_name: str
    ) -> JSON | list[JSON]:
        """A new file with ``data`` (fetchable via getFile), shaped as Message.<field>."""
        number = len(self._files) + 1
        stored = _StoredFile(
            file_id=f"fake-{field}-{number}",
            file_unique_id=f"uniq{number}",
            file_path=f"{field}s/file_{number}{_extension(file_name)}",
            data=data,
        )
        self._files[stored.file_id] = stored
        base: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(data),
        }
        if field == "photo":
            return [{**base, "width": 800, "height": 600}]
        if field == "sticker":
            return {
                **base,
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
                "emoji": "👍",
            }
        if field in ("video", "animation"):
            return {**base, "width": 640, "height": 480, "duration": 1}
        if field in ("voice", "audio"):
            return {
                **base,
                "duration": 1,
                "mime_type": "audio/ogg" if field == "voice" else "audio/mpeg",
            }
        return {**base, "file_name": file_name}

    def _find_message(
        self, chat_id: int, after: int, contains: str | None
    ) -> JSON | None:
        for message in self.sent(chat_id):
            shown = message.get("text") or message.get("caption") or ""
            if message["message_id"] > after and (
                contains is None or contains in shown
            ):
                return message
        return None

    def _timeout_report(self, timeout: float) -> str:
        with self._cond:
            recent = [
                call
                for call in self._calls
                if not (
                    call["method"] == "getUpdates"
                    and call["response"].get("result") == []
                )
            ][-15:]
        lines = [
            f"condition not met within {timeout:g} s; recent API calls (oldest first):"
        ]
        for call in recent:
            outcome = (
                "ok"
                if call["response"].get("ok")
                else call["response"].get("description")
            )
            params = json.dumps(call["params"], ensure_ascii=False)
            lines.append(f"  {call['method']} {params[:300]} -> {outcome}")
        return "\n".join(lines)

    @staticmethod
    def _canonical_method(method: str) -> str:
        canonical = _API_METHODS.get(method.lower())
        if canonical is None:
            raise ValueError(f"{method!r} is not a Bot API method")
        return canonical


# --------------------------------------------------------------------------- helpers


def _decode_form_value(key: str, value: str) -> Any:
    """A form field's value as the JSON type the Bot API expects for ``key``."""
    if key in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return None


def _update_type(update: JSON) -> str:
    return next(key for key in update if key != "update_id")


def _set_or_pop(target: JSON, key: str, value: Any) -> None:
    if value is None:
        target.pop(key, None)
    else:
        target[key] = value


def _extension(file_name: str) -> str:
    return "." + file_name.rsplit(".", 1)[1] if "." in file_name else ""
