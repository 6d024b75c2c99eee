"""Text helpers shared by the loaders: normalisation, language detection, ids."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import PurePosixPath
from urllib.parse import urlsplit, urlunsplit

from corpus.models import Language

# Invisible bidi controls, zero-width characters, BOM and Arabic tatweel (U+0640):
# they carry no meaning but break exact matching of quoted text.
_INVISIBLE_CHARS = (
    "\u200e\u200f"  # LRM, RLM
    "\u202a\u202b\u202c\u202d\u202e"  # LRE, RLE, PDF, LRO, RLO
    "\u2066\u2067\u2068\u2069"  # LRI, RLI, FSI, PDI
    "\u061c"  # Arabic letter mark
    "\u200b\u200c\u200d"  # zero-width space, non-joiner, joiner
    "\ufeff"  # BOM / zero-width no-break space
    "\u0640"  # Arabic tatweel
)
_NBSP_CHARS = "\u00a0\u202f\u2007"
# Control characters (C0, DEL, C1: NUL, bell, terminal escapes…) other than the tab and the
# line breaks that `str.splitlines` turns into newlines: no text, and unsendable to Telegram.
_LINE_BREAKS_AND_TAB = "\t\n\r\x0b\x0c\x1c\x1d\x1e\x85"
_CONTROL_CHARS = "".join(
    chr(code) for code in (*range(0x20), *range(0x7F, 0xA0)) if chr(code) not in _LINE_BREAKS_AND_TAB
)
_CHAR_MAP = {ord(c): None for c in _INVISIBLE_CHARS + _CONTROL_CHARS} | {ord(c): " " for c in _NBSP_CHARS}

_INLINE_SPACE_RUN = re.compile(r"[ \t]+")
_BLANK_LINE_RUN = re.compile(r"\n{3,}")

_ARABIC_SCRIPT_RANGES = (
    (0x0600, 0x06FF),  # Arabic
    (0x0750, 0x077F),  # Arabic Supplement
    (0x08A0, 0x08FF),  # Arabic Extended-A
    (0xFB50, 0xFDFF),  # Arabic Presentation Forms-A
    (0xFE70, 0xFEFF),  # Arabic Presentation Forms-B
)
ARABIC_SHARE_THRESHOLD = 0.3

ID_LENGTH = 16


def normalize_text(text: str) -> str:
    """NFC, drop invisible marks, control characters and tatweel, tidy spaces; paragraphs end up
    split by one blank line."""
    text = unicodedata.normalize("NFC", text.translate(_CHAR_MAP))
    lines = (_INLINE_SPACE_RUN.sub(" ", line).strip() for line in text.splitlines())
    return _BLANK_LINE_RUN.sub("\n\n", "\n".join(lines)).strip()


def is_arabic_letter(char: str) -> bool:
    """True for a letter of the Arabic script (any Arabic Unicode block)."""
    code = ord(char)
    return char.isalpha() and any(low <= code <= high for low, high in _ARABIC_SCRIPT_RANGES)


def detect_language(text: str) -> Language:
    """"ar" when Arabic-script letters are at least ~30% of all letters, else "en"."""
    letters = [char for char in text if char.isalpha()]
    if not letters:
        return "en"
    arabic = sum(1 for char in letters if is_arabic_letter(char))
    return "ar" if arabic / len(letters) >= ARABIC_SHARE_THRESHOLD else "en"


# Query parameters that only say where a click came from: never part of what a page is.
_TRACKING_PARAM_PREFIXES = ("utm_",)
_TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "mc_cid", "mc_eid", "_ga", "_gl",
     "igshid", "ref_src", "cmpid", "ocid"}
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_tracking_param(name: str) -> bool:
    name = name.lower()
    return name in _TRACKING_PARAMS or name.startswith(_TRACKING_PARAM_PREFIXES)


def canonical_url(url: str) -> str:
    """The url as one page's identity: no surrounding spaces, #fragment, tracking parameters
    (utm_*, fbclid…), default port or trailing slash; scheme and host in lower case."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    netloc = parts.netloc.lower()
    if parts.port is not None and _DEFAULT_PORTS.get(scheme) == parts.port:
        netloc = netloc.rsplit(":", 1)[0]
    path = (parts.path.rstrip("/") or "/") if netloc else parts.path
    query = "&".join(
        pair for pair in parts.query.split("&") if pair and not _is_tracking_param(pair.split("=", 1)[0])
    )
    return urlunsplit((scheme, netloc, path, query, ""))


def stable_article_id(url: str | None, source_name: str) -> str:
    """Short hex id from the canonical url, else from the source's file name (not its folder)."""
    if url and url.strip():
        key = canonical_url(url)
    elif "://" in source_name:
        key = source_name.strip()
    else:
        key = PurePosixPath(source_name.replace("\\", "/")).name
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:ID_LENGTH]
