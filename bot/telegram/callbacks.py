"""Inline-button payloads: aiogram ``CallbackData`` factories, each packed well under Telegram's 64 bytes.

Job ids are 16 hex chars (``gateway.records.new_job_id``); the longest payload, ``j:u:<16>:9``, is 24 bytes.
Settings values are workflow names (≤ 40 chars by the manifest's name pattern) or short codes.
"""

from __future__ import annotations

import enum

from aiogram.filters.callback_data import CallbackData

from bot.requests import JobAction

__all__ = ["MAX_CALLBACK_BYTES", "JobAction", "JobCb", "LangCb", "SetCb", "SettingKey", "fits"]

MAX_CALLBACK_BYTES = 64


class JobCb(CallbackData, prefix="j"):
    """A button under a job message. ``idx`` picks one image of an album (for Upscale)."""

    action: JobAction
    job: str
    idx: int = 0


class SettingKey(enum.StrEnum):
    MENU = "m"
    WORKFLOW = "wf"
    ASPECT = "ar"
    LANGUAGE = "lang"


class SetCb(CallbackData, prefix="s", sep="|"):
    """A /settings button: open a sub-menu (``value`` empty) or choose ``value`` for ``key``.

    ``|`` separates: values such as aspect ratios (``16:9``) contain aiogram's default ``:``.
    """

    key: SettingKey
    value: str = ""


class LangCb(CallbackData, prefix="l"):
    """A /language button."""

    code: str


def fits(data: CallbackData) -> bool:
    """True when the packed payload fits Telegram's limit (aiogram does not check it)."""
    return len(data.pack().encode()) <= MAX_CALLBACK_BYTES
