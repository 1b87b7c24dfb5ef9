"""Parse `/generate a lighthouse at dusk --ar 16:9 --seed 42` into a prompt and typed parameters.

Shared by every chat front end. The parser is shlex-like but written for what phones actually send:

* Telegram (and iOS/macOS) turn ``--`` into an em dash ``—`` and ``"`` into ``“ ”``; both are accepted
  (``—ar``, ``–ar``, ``--ar``, ``--ar=16:9``).
* Only *flag values* are unquoted. Words of the prompt are kept as typed, so apostrophes and quotes in the
  prompt (``a "red" car``, ``don't``) never break parsing.
* The text is cleaned first (:func:`comfy.text.clean_text`): control characters, ANSI escapes and
  invisible characters go, so a prompt of only zero-width characters is no prompt at all.
* An unknown flag is an error that names it; values are only *typed* here (int, float, ``W:H``) — bounds
  come from the workflow's manifest and are checked by the gateway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from comfy.text import clean_text

__all__ = ["FLAGS", "ParseError", "ParsedPrompt", "normalize_aspect", "parse_prompt"]

# canonical flag name -> (parameter key, value kind)
_FLAG_SPECS: dict[str, tuple[str, str]] = {
    "ar": ("ar", "aspect"),
    "seed": ("seed", "int"),
    "steps": ("steps", "int"),
    #: the second (upscale) pass of a two-pass workflow such as ``hires``; ``--steps`` sets the first
    "hires-steps": ("hires_steps", "int"),
    "neg": ("negative", "text"),
    "wf": ("workflow", "name"),
    "batch": ("batch", "int"),
    "cfg": ("cfg", "float"),
}
_ALIASES: dict[str, str] = {
    "aspect": "ar",
    "negative": "neg",
    "no": "neg",
    "workflow": "wf",
    "n": "batch",
    "hires_steps": "hires-steps",
    "hiressteps": "hires-steps",
}
FLAGS: tuple[str, ...] = tuple(_FLAG_SPECS)
"""Canonical flags, in the order help texts list them."""
# A value that fits each flag, for "--ar needs a value, for example --ar 16:9".
_EXAMPLES: dict[str, str] = {
    "ar": "16:9",
    "seed": "42",
    "steps": "30",
    "hires-steps": "10",
    "neg": '"blurry, text"',
    "wf": "img2img",
    "batch": "2",
    "cfg": "7",
}

# "--x", "—x" (em dash), "–x" (en dash), "−−x" (minus signs), "—-x": anything dash-like, then a letter.
_FLAG_RE = re.compile(r"^(?:--|[—–]-?|−−)([A-Za-z][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*)(?:=(.*))?$", re.DOTALL)
_QUOTES: dict[str, str] = {'"': '"', "“": "”", "„": "“", "«": "»", "'": "'", "‘": "’", "”": "”"}
_ASPECT_RE = re.compile(r"^\s*(\d{1,6})\s*[:x×/]\s*(\d{1,6})\s*$", re.IGNORECASE)
_INT_RE = re.compile(r"^[+-]?\d{1,30}$")


class ParseError(ValueError):
    """The command line is malformed. ``code`` picks the localized text; ``flag``/``value`` fill it.

    Codes: ``unknown_flag``, ``missing_value``, ``not_integer``, ``not_number``, ``bad_aspect``.
    ``example`` is the flag with a value that would fit (``--ar 16:9``), for the ``missing_value`` text.
    """

    def __init__(self, code: str, flag: str = "", value: str = "", example: str = "") -> None:
        super().__init__(f"{code}: {flag} {value!r}")
        self.code = code
        self.flag = flag
        self.value = value
        self.example = example


@dataclass(frozen=True)
class ParsedPrompt:
    """What a command line says: the prompt, parameters for the manifest, and an explicit workflow."""

    prompt: str
    params: dict[str, Any] = field(default_factory=dict)
    workflow: str | None = None


def normalize_aspect(value: str) -> str | None:
    """``16:9``, ``16x9``, ``16/9`` → ``"16:9"``; anything else → ``None``. Zero is left to the manifest."""
    m = _ASPECT_RE.match(value)
    if m is None:
        return None
    return f"{int(m.group(1))}:{int(m.group(2))}"


def _typed(flag: str, kind: str, raw: str) -> Any:
    if kind == "int":
        if not _INT_RE.match(raw.strip()):
            raise ParseError("not_integer", flag, raw)
        return int(raw)
    if kind == "float":
        try:
            value = float(raw.replace(",", "."))
        except ValueError:
            raise ParseError("not_number", flag, raw) from None
        if value != value or value in (float("inf"), float("-inf")):  # NaN / inf
            raise ParseError("not_number", flag, raw)
        return value
    if kind == "aspect":
        aspect = normalize_aspect(raw)
        if aspect is None:
            raise ParseError("bad_aspect", flag, raw)
        return aspect
    if kind == "name":
        return raw.strip().lower()
    return raw


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def word(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and not self.text[self.pos].isspace():
            self.pos += 1
        return self.text[start : self.pos]

    def value(self) -> str | None:
        """A flag's value: a quoted string (any quote style, closed by its partner) or one word."""
        self.skip_space()
        if self.at_end():
            return None
        opener = self.text[self.pos]
        closer = _QUOTES.get(opener)
        if closer is not None:
            # The closing quote must end a word; "it's" inside a quoted value does not close '…'.
            i = self.pos + 1
            while i < len(self.text):
                ch = self.text[i]
                if (ch == closer or (closer != "'" and ch in '"”“')) and (
                    i + 1 == len(self.text) or self.text[i + 1].isspace()
                ):
                    value = self.text[self.pos + 1 : i]
                    self.pos = i + 1
                    return value
                i += 1
            # Unclosed quote: tolerate it, take the rest of the line minus the opener.
            value = self.text[self.pos + 1 :]
            self.pos = len(self.text)
            return value.strip()
        word = self.word()
        if _FLAG_RE.match(word):
            # "--neg --ar 1:1": the next flag is not a value.
            self.pos -= len(word)
            return None
        return word


def parse_prompt(text: str) -> ParsedPrompt:
    """Split ``text`` (the command's arguments or a photo caption) into prompt, params and workflow.

    The text is cleaned first (``clean_text``). Later flags win over earlier ones. Raises
    :class:`ParseError`.
    """
    scanner = _Scanner(clean_text(text or ""))
    words: list[str] = []
    params: dict[str, Any] = {}
    workflow: str | None = None
    while True:
        scanner.skip_space()
        if scanner.at_end():
            break
        word = scanner.word()
        m = _FLAG_RE.match(word)
        if m is None:
            words.append(word)
            continue
        name = m.group(1).lower()
        name = _ALIASES.get(name, name)
        shown = f"--{m.group(1)}"
        if name not in _FLAG_SPECS:
            raise ParseError("unknown_flag", shown)
        inline = m.group(2)
        raw = inline if inline is not None else scanner.value()
        if raw is None or (raw.strip() == "" and name != "neg"):
            raise ParseError("missing_value", shown, example=f"{shown} {_EXAMPLES[name]}")
        key, kind = _FLAG_SPECS[name]
        value = _typed(shown, kind, raw)
        if key == "workflow":
            workflow = value
        else:
            params[key] = value
    return ParsedPrompt(prompt=" ".join(words).strip(), params=params, workflow=workflow)
