"""clean_text: what nobody can see goes, every script and emoji stays."""

from __future__ import annotations

import pytest

from comfy.text import clean_text

# (what the user sent, what is left)
CASES = [
    ("\u200b\u200b\u200b", ""),  # zero-width spaces only: nothing
    ("\u200c\u2060\ufeff\u00ad", ""),  # ZWNJ, word joiner, BOM, soft hyphen
    ("\u3164\u115f\u2800", ""),  # Hangul fillers, braille blank: "blank" letters
    ("\u202e\u2066\u200f", ""),  # bidi override, isolate, RLM
    ("a \u202egnp.exe\u202c cat", "a gnp.exe cat"),  # the override goes, the text stays in order
    ("\x1b[31mred\x1b[0m fox", "red fox"),  # ANSI colour: the whole sequence, not just ESC
    ("\x1b]0;pwned\x07a boat", "a boat"),  # OSC (window title)
    ("\x9b2Jclear", "clear"),  # C1 CSI
    ("nul\x00byte\x07bell\x7fdel", "nulbytebelldel"),
    ("a\tb\nc\r\nd\u00a0e\u3000f\u2028g  h", "a b c d e f g h"),  # every whitespace: one space
    ("  padded  ", "padded"),
    ("👩\u200d💻 at work", "👩\u200d💻 at work"),  # ZWJ inside an emoji sequence is kept
    ("❤\ufe0f\u200d🔥 👨🏽\u200d🚀 🏳\ufe0f\u200d🌈", "❤\ufe0f\u200d🔥 👨🏽\u200d🚀 🏳\ufe0f\u200d🌈"),
    ("\ufe0f\ufe0f \U000e0100", ""),  # variation selectors with nothing to select
    ("☺\ufe0f\ufe0f smile", "☺\ufe0f smile"),  # one styles the emoji; the second is nothing
    ("word\u200djoined", "wordjoined"),  # ZWJ between letters is not an emoji's
    ("\u200d👩", "👩"),  # nothing to join on the left
    ("🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",) * 2,  # Scotland's flag
    ("x\U000e0041y", "xy"),  # a tag character outside a flag
    ("고양이가 달빛 아래", "고양이가 달빛 아래"),  # Korean
    ("\u1100\u1161", "가"),  # decomposed Hangul jamo → NFC syllable
    ("e\u0301", "é"),  # NFC
    ("月光下的猫 кошка при луне", "月光下的猫 кошка при луне"),
    ("قطة تحت القمر", "قطة تحت القمر"),  # a right-to-left script keeps its letters
    ('a "quoted" {brace} \\ ]]', 'a "quoted" {brace} \\ ]]'),
]


@pytest.mark.parametrize(("raw", "clean"), CASES)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_clean_text_is_idempotent() -> None:
    for raw, clean in CASES:
        assert clean_text(clean) == clean, raw
