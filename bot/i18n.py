"""User-facing text from gettext ``.po`` catalogues, one per language.

Each ``msgid`` is a stable key (``progress.queued``); its ``msgstr`` is the text with ``{placeholders}``.
The reader handles what translators' tools write: comments, multi-line strings, C escapes, ``msgctxt``;
entries marked ``#, fuzzy`` are skipped (gettext does the same). Lookup falls back to English, then to the
key itself, so a missing translation is visible but never crashes a handler.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locales import LOCALES_DIR

__all__ = [
    "DEFAULT_LOCALE",
    "LANGUAGES",
    "I18n",
    "PoSyntaxError",
    "placeholders",
    "read_po",
    "resolve_locale",
]

DEFAULT_LOCALE = "en"
LANGUAGES: tuple[str, ...] = ("en", "ru", "ko", "zh_Hant")
"""Shipped catalogues, in the order /language offers them."""

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
_STRING_RE = re.compile(r'^"(.*)"$')
_PLACEHOLDER_RE = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)(?:[:!][^{}]*)?\}")


class PoSyntaxError(ValueError):
    """A catalogue line could not be read; names the file and line."""


def _unescape(body: str, where: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if i + 1 >= len(body):
                raise PoSyntaxError(f"{where}: dangling backslash")
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise PoSyntaxError(f"{where}: unknown escape \\{nxt}")
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        if ch == '"':
            raise PoSyntaxError(f"{where}: unescaped quote")
        out.append(ch)
        i += 1
    return "".join(out)


@dataclass
class _Entry:
    ctxt: str | None = None
    msgid: str | None = None
    msgstr: str | None = None
    fuzzy: bool = False


def _quoted(text: str, where: str, problem: str) -> str:
    """The unescaped value of a PO string literal; ``problem`` is the error when it is none."""
    m = _STRING_RE.match(text)
    if m is None:
        raise PoSyntaxError(f"{where}: {problem}")
    return _unescape(m.group(1), where)


def read_po(source: str | Path, *, name: str = "<po>") -> dict[str, str]:
    """Parse PO text (or a file path) into ``{msgid: msgstr}``; ``msgctxt`` entries become ``ctxt\\x04id``.

    The header (empty msgid), fuzzy entries and empty translations are left out.
    """
    if isinstance(source, Path):
        name = str(source)
        text = source.read_text(encoding="utf-8")
    else:
        text = source
    result: dict[str, str] = {}
    entry = _Entry()
    field: str | None = None
    next_fuzzy = False

    def flush() -> None:
        nonlocal entry
        if entry.msgid and entry.msgstr and not entry.fuzzy:
            key = entry.msgid if entry.ctxt is None else f"{entry.ctxt}\x04{entry.msgid}"
            result[key] = entry.msgstr
        entry = _Entry()

    for lineno, raw in enumerate(text.splitlines(), start=1):
        where = f"{name}:{lineno}"
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("#,") and "fuzzy" in line:
                if entry.msgid is not None and entry.msgstr is not None:
                    flush()
                next_fuzzy = True
            continue
        keyword, _, rest = line.partition(" ")
        if line.startswith('"'):
            if field is None:
                raise PoSyntaxError(f"{where}: string continuation without a keyword")
            value = _quoted(line, where, "malformed string")
            setattr(entry, field, (getattr(entry, field) or "") + value)
            continue
        if keyword in ("msgctxt", "msgid") and entry.msgstr is not None:
            flush()
        if keyword in ("msgctxt", "msgid", "msgstr"):
            field = {"msgctxt": "ctxt", "msgid": "msgid", "msgstr": "msgstr"}[keyword]
            setattr(entry, field, _quoted(rest.strip(), where, f"{keyword} needs a quoted string"))
            entry.fuzzy = entry.fuzzy or next_fuzzy
            next_fuzzy = False
            continue
        if keyword.startswith("msgid_plural") or keyword.startswith("msgstr["):
            # Plural forms are not used by our catalogues (texts avoid them); skip their strings.
            field = None
            continue
        raise PoSyntaxError(f"{where}: unexpected {keyword!r}")
    flush()
    return result


def placeholders(text: str) -> set[str]:
    """The ``{names}`` a text uses (``{{`` escapes excluded)."""
    return set(_PLACEHOLDER_RE.findall(text.replace("{{", "").replace("}}", "")))


def resolve_locale(language_code: str | None, available: Iterable[str] = LANGUAGES) -> str:
    """Telegram's ``language_code`` (IETF tag) → one of our catalogues; unknown → English.

    ``zh-hant``, ``zh-tw``, ``zh-hk`` and ``zh-mo`` map to Traditional Chinese; ``ru-RU`` → ``ru``.
    """
    names = set(available)
    if not language_code:
        return DEFAULT_LOCALE
    code = language_code.strip().replace("_", "-").lower()
    if code in {n.lower().replace("_", "-") for n in names}:
        return next(n for n in names if n.lower().replace("_", "-") == code)
    parts = code.split("-")
    if parts[0] == "zh":
        if any(p in ("hant", "tw", "hk", "mo") for p in parts[1:]) and "zh_Hant" in names:
            return "zh_Hant"
        return DEFAULT_LOCALE
    return parts[0] if parts[0] in names else DEFAULT_LOCALE


class _Missing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class I18n:
    """Catalogues by locale, with ``t(locale, key, **values)``.

    Build with :meth:`load` (reads ``locales/*.po``) or directly from dicts in tests.
    """

    def __init__(self, catalogues: Mapping[str, Mapping[str, str]], default: str = DEFAULT_LOCALE) -> None:
        if default not in catalogues:
            raise ValueError(f"default locale {default!r} has no catalogue")
        self.catalogues: dict[str, dict[str, str]] = {k: dict(v) for k, v in catalogues.items()}
        self.default = default

    @classmethod
    def load(cls, directory: Path = LOCALES_DIR) -> I18n:
        return cls({p.stem: read_po(p) for p in sorted(directory.glob("*.po"))})

    @property
    def locales(self) -> tuple[str, ...]:
        return tuple(name for name in LANGUAGES if name in self.catalogues) + tuple(
            sorted(n for n in self.catalogues if n not in LANGUAGES)
        )

    def resolve(self, language_code: str | None) -> str:
        return resolve_locale(language_code, self.catalogues)

    def has(self, locale: str, key: str) -> bool:
        return key in self.catalogues.get(locale, {}) or key in self.catalogues[self.default]

    def raw(self, locale: str, key: str) -> str:
        text = self.catalogues.get(locale, {}).get(key)
        if text is None:
            text = self.catalogues[self.default].get(key, key)
        return text

    def t(self, locale: str, key: str, /, **values: Any) -> str:
        """The text for ``key`` in ``locale`` with ``{placeholders}`` filled; unknown names stay as-is."""
        text = self.raw(locale, key)
        if not values and "{" not in text:
            return text
        try:
            return string.Formatter().vformat(text, (), _Missing(values))
        except (ValueError, IndexError, KeyError):
            # A broken translation must not break a handler: fall back to English, then the raw text.
            try:
                return string.Formatter().vformat(self.raw(self.default, key), (), _Missing(values))
            except (ValueError, IndexError, KeyError):
                return text
