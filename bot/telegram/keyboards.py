"""Inline keyboards, built from localized labels and the callback factories."""

from __future__ import annotations

from collections.abc import Iterable

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.i18n import I18n
from bot.telegram.callbacks import JobAction, JobCb, LangCb, SetCb, SettingKey

__all__ = [
    "ASPECT_CHOICES",
    "again_keyboard",
    "aspect_keyboard",
    "language_keyboard",
    "progress_keyboard",
    "result_keyboard",
    "settings_keyboard",
    "workflow_keyboard",
]

ASPECT_CHOICES: tuple[str, ...] = ("1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16", "21:9")


def _button(text: str, data: JobCb | SetCb | LangCb) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def progress_keyboard(i18n: I18n, locale: str, job_id: str) -> InlineKeyboardMarkup:
    """The Cancel button shown while a job waits or runs."""
    return InlineKeyboardMarkup(
        inline_keyboard=[[_button(i18n.t(locale, "btn.cancel"), JobCb(action=JobAction.CANCEL, job=job_id))]]
    )


def again_keyboard(i18n: I18n, locale: str, job_id: str) -> InlineKeyboardMarkup:
    """The one button under a job that was interrupted and lost: run the same request again."""
    again = JobCb(action=JobAction.AGAIN, job=job_id)
    return InlineKeyboardMarkup(inline_keyboard=[[_button(i18n.t(locale, "btn.again"), again)]])


def result_keyboard(
    i18n: I18n, locale: str, job_id: str, *, images: int = 1, upscale: bool = True, reroll: bool = True
) -> InlineKeyboardMarkup:
    """🔁 Reroll 🎲 Variations / ⬆️ Upscale ℹ️ Info. An album gets one ⬆️ button per image (⬆️ 1, ⬆️ 2…)."""
    rows: list[list[InlineKeyboardButton]] = []
    if reroll:
        rows.append(
            [
                _button(i18n.t(locale, "btn.reroll"), JobCb(action=JobAction.REROLL, job=job_id)),
                _button(i18n.t(locale, "btn.variations"), JobCb(action=JobAction.VARIATIONS, job=job_id)),
            ]
        )
    last: list[InlineKeyboardButton] = []
    if upscale and images == 1:
        last.append(_button(i18n.t(locale, "btn.upscale"), JobCb(action=JobAction.UPSCALE, job=job_id)))
    elif upscale:
        ups = [
            _button(f"⬆️ {i + 1}", JobCb(action=JobAction.UPSCALE, job=job_id, idx=i))
            for i in range(min(images, 10))
        ]
        rows.extend(_grid(ups, 5))
    last.append(_button(i18n.t(locale, "btn.info"), JobCb(action=JobAction.INFO, job=job_id)))
    rows.append(last)
    return InlineKeyboardMarkup(inline_keyboard=rows)


def settings_keyboard(i18n: I18n, locale: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                _button(i18n.t(locale, "settings.btn.workflow"), SetCb(key=SettingKey.WORKFLOW)),
                _button(i18n.t(locale, "settings.btn.ar"), SetCb(key=SettingKey.ASPECT)),
            ],
            [_button(i18n.t(locale, "settings.btn.language"), SetCb(key=SettingKey.LANGUAGE))],
        ]
    )


def _grid(buttons: list[InlineKeyboardButton], per_row: int) -> list[list[InlineKeyboardButton]]:
    return [buttons[i : i + per_row] for i in range(0, len(buttons), per_row)]


def _back(i18n: I18n, locale: str) -> list[InlineKeyboardButton]:
    return [_button(i18n.t(locale, "btn.back"), SetCb(key=SettingKey.MENU))]


def workflow_keyboard(i18n: I18n, locale: str, names: Iterable[str], current: str) -> InlineKeyboardMarkup:
    buttons = [
        _button(("✅ " if n == current else "") + n, SetCb(key=SettingKey.WORKFLOW, value=n)) for n in names
    ]
    return InlineKeyboardMarkup(inline_keyboard=[*_grid(buttons, 2), _back(i18n, locale)])


def aspect_keyboard(i18n: I18n, locale: str, current: str) -> InlineKeyboardMarkup:
    buttons = [
        _button(("✅ " if a == current else "") + a, SetCb(key=SettingKey.ASPECT, value=a))
        for a in ASPECT_CHOICES
    ]
    return InlineKeyboardMarkup(inline_keyboard=[*_grid(buttons, 4), _back(i18n, locale)])


def language_keyboard(
    i18n: I18n, locale: str, current: str, *, in_settings: bool = False
) -> InlineKeyboardMarkup:
    buttons = []
    for code in i18n.locales:
        label = ("✅ " if code == current else "") + i18n.t(code, f"lang.{code}")
        data: SetCb | LangCb = (
            SetCb(key=SettingKey.LANGUAGE, value=code) if in_settings else LangCb(code=code)
        )
        buttons.append(_button(label, data))
    rows = _grid(buttons, 2)
    if in_settings:
        rows.append(_back(i18n, locale))
    return InlineKeyboardMarkup(inline_keyboard=rows)
