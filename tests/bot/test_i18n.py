"""Catalogues: the PO reader, locale resolution, and completeness of every shipped language."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.i18n import LANGUAGES, I18n, PoSyntaxError, placeholders, read_po, resolve_locale
from comfy.workflow_errors import ParamError
from gateway.models import FailureCode
from locales import LOCALES_DIR

# Reasons ParamError documents; every one must have a text (the renderer maps too_small/too_large with
# both bounds to reason.out_of_range).
PARAM_REASONS = [
    "required",
    "unknown_param",
    "not_a_number",
    "not_an_integer",
    "too_small",
    "too_large",
    "too_long",
    "not_text",
    "not_a_bool",
    "not_in_options",
    "bad_aspect",
    "bad_model_name",
    "bad_image_name",
]


@pytest.fixture(scope="module")
def i18n() -> I18n:
    return I18n.load()


def test_every_language_ships() -> None:
    assert sorted(p.stem for p in LOCALES_DIR.glob("*.po")) == sorted(LANGUAGES)


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang != "en"])
def test_catalogue_has_every_key_and_placeholder_of_english(i18n: I18n, lang: str) -> None:
    en = i18n.catalogues["en"]
    other = i18n.catalogues[lang]
    missing = sorted(set(en) - set(other))
    assert not missing, f"{lang} lacks {missing}"
    extra = sorted(set(other) - set(en))
    assert not extra, f"{lang} has keys English lacks: {extra}"
    for key, text in en.items():
        assert placeholders(other[key]) == placeholders(text), f"{lang}:{key} placeholders differ"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_failure_code_and_param_reason_has_text(i18n: I18n, lang: str) -> None:
    cat = i18n.catalogues[lang]
    for code in FailureCode:
        assert f"error.{code.value}" in cat
    for reason in PARAM_REASONS:
        assert f"reason.{reason}" in cat or reason in ("too_small", "too_large")
    assert "reason.out_of_range" in cat
    assert ParamError.__doc__ is not None
    for reason in PARAM_REASONS:  # the documented list is the one we test against
        assert f"``{reason}``" in ParamError.__doc__


@pytest.mark.parametrize("lang", LANGUAGES)
def test_menu_descriptions_fit_telegram(i18n: I18n, lang: str) -> None:
    for key, text in i18n.catalogues[lang].items():
        if key.startswith("cmd."):
            assert 3 <= len(text) <= 256
        if key.startswith(("btn.", "button.", "settings.btn.")):
            assert len(text) <= 200


def test_reader_handles_multiline_escapes_comments_context_and_fuzzy(tmp_path: Path) -> None:
    po = tmp_path / "x.po"
    po.write_text(
        "# translator comment\n"
        'msgid ""\nmsgstr "Language: x\\n"\n\n'
        "#. extracted comment\n#: file.py:1\n"
        'msgid "a.key"\nmsgstr ""\n"line one\\n"\n"say \\"hi\\"\\t{name}\\\\"\n\n'
        '#, fuzzy\nmsgid "b.key"\nmsgstr "not reviewed"\n\n'
        'msgctxt "menu"\nmsgid "c.key"\nmsgstr "with context"\n\n'
        'msgid "d.key"\nmsgstr ""\n',
        encoding="utf-8",
    )
    cat = read_po(po)
    assert cat == {"a.key": 'line one\nsay "hi"\t{name}\\', "menu\x04c.key": "with context"}


@pytest.mark.parametrize(
    "bad", ['msgid "x\nmsgstr "y"\n', 'msgid "x"\nmsgstr "\\q"\n', '"orphan"\n', "junk\n"]
)
def test_reader_names_the_bad_line(bad: str) -> None:
    with pytest.raises(PoSyntaxError, match=r"<po>:\d"):
        read_po(bad)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ru", "ru"),
        ("ru-RU", "ru"),
        ("ko", "ko"),
        ("zh-hant", "zh_Hant"),
        ("zh-TW", "zh_Hant"),
        ("zh-hk", "zh_Hant"),
        ("zh-Hant-TW", "zh_Hant"),
        ("zh-hans", "en"),
        ("zh", "en"),
        ("de", "en"),
        (None, "en"),
        ("", "en"),
        ("en-GB", "en"),
        ("zh_Hant", "zh_Hant"),
    ],
)
def test_resolve_locale(code: str | None, expected: str) -> None:
    assert resolve_locale(code) == expected


def test_lookup_falls_back_and_never_raises() -> None:
    i = I18n({"en": {"a": "Hi {name}", "b": "only en"}, "ru": {"a": "Привет {name} {broken"}})
    assert i.t("ru", "b") == "only en"
    assert i.t("ru", "a", name="x") == "Hi x"  # broken translation → English
    assert i.t("en", "a") == "Hi {name}"  # missing value stays visible
    assert i.t("ko", "a", name="y") == "Hi y"
    assert i.t("en", "nope") == "nope"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_shipped_workflows_parameters_and_step_labels_are_translated(i18n: I18n, lang: str) -> None:
    import re

    from comfy.workflows import load_workflows

    cat = i18n.catalogues[lang]
    for wf in load_workflows():
        assert f"wf.{wf.name}" in cat
        for name in [*wf.params, *wf.images]:
            assert f"field.{name}" in cat, f"{lang}: field.{name}"
        for label in wf.labels.values():
            assert "step." + re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") in cat, label
