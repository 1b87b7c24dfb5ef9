"""Clean free text (prompts) before it goes anywhere: what a user typed, minus what nobody can see.

One function, :func:`clean_text`, applied where text becomes a workflow value (``TextParam.resolve``, so
every path into the gateway — Telegram, Discord, the HTTP API — sends ComfyUI clean text) and by the
chat parser (``bot.parsing``), so a prompt of only invisible characters gets the usual "tell me what to
draw" answer instead of running an invisible caption on the GPU.

Removed: ANSI escape sequences (whole, not just the ESC), C0/C1 control characters, zero-width and
other format characters (ZWSP, ZWNJ, word joiner, BOM, soft hyphen), bidirectional overrides and
isolates (``U+202A..U+202E``, ``U+2066..U+2069``, LRM/RLM/ALM), lone surrogates, blank "filler"
letters used to post invisible text (Hangul fillers, braille blank), and variation selectors that
select nothing (at the start, after a space or another selector). Kept: every script and emoji,
including the zero-width joiner *inside* an emoji sequence (👩‍💻, ❤️‍🔥) and the tag characters of
subdivision flags (🏴󠁧󠁢󠁳󠁣󠁴󠁿). Then NFC, and every run of whitespace of any kind (tabs, newlines, NBSP,
ideographic space, line separators) becomes one space, with none at either end.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["clean_text"]

# CSI (ESC [ … final, or the one-byte C1 CSI), OSC (ESC ] … BEL or ST), and two-byte escapes (ESC x).
_ANSI_RE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-~]"
)
_ZWJ = "\u200d"
_VS16 = "\ufe0f"
_BLACK_FLAG = "\U0001f3f4"  # the base of a subdivision flag (🏴 + tag letters + cancel tag)
_TAGS = range(0xE0020, 0xE0080)
# Letters and symbols that render as nothing: posted to make a "blank" message.
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5")


def _emoji_side(ch: str) -> bool:
    """A character an emoji ZWJ sequence joins: a pictograph, a skin-tone modifier, or VS16."""
    return ch == _VS16 or unicodedata.category(ch) == "So" or 0x1F3FB <= ord(ch) <= 0x1F3FF


def _variation_selector(ch: str) -> bool:
    return 0xFE00 <= ord(ch) <= 0xFE0F or 0xE0100 <= ord(ch) <= 0xE01EF


def _invisible(text: str, i: int, kept: list[str]) -> bool:
    """Whether ``text[i]`` is dropped, given what was kept before it."""
    ch = text[i]
    if ch in _FILLERS:
        return True
    if _variation_selector(ch):  # it styles the character before it: alone, it is nothing
        return not kept or kept[-1].isspace() or _variation_selector(kept[-1])
    category = unicodedata.category(ch)
    if category == "Cc":
        return not ch.isspace()  # tabs and newlines are whitespace, collapsed below
    if category == "Cs":
        return True
    if category != "Cf":
        return False
    if ch == _ZWJ:
        after = text[i + 1] if i + 1 < len(text) else ""
        return not (kept and _emoji_side(kept[-1]) and after and _emoji_side(after))
    if ord(ch) in _TAGS:
        return not (kept and (kept[-1] == _BLACK_FLAG or ord(kept[-1]) in _TAGS))
    return True


def clean_text(text: str) -> str:
    """``text`` without invisible and control characters, NFC-normalised, whitespace collapsed.

    ``"\\u200b\\u200b"`` → ``""``; ``"\\x1b[31mred\\x1b[0m fox"`` → ``"red fox"``;
    ``"a\\u202ecat"`` → ``"acat"``; ``"👩\\u200d💻  코드"`` → ``"👩\\u200d💻 코드"``.
    """
    text = _ANSI_RE.sub("", text)
    kept: list[str] = []
    for i, ch in enumerate(text):
        if not _invisible(text, i, kept):
            kept.append(ch)
    return " ".join(unicodedata.normalize("NFC", "".join(kept)).split())
