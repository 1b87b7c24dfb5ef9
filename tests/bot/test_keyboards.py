"""Every inline button we can build packs under Telegram's 64-byte callback_data limit and unpacks back."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData

from bot.i18n import I18n
from bot.telegram.callbacks import JobAction, JobCb, LangCb, SetCb, SettingKey, fits
from bot.telegram.keyboards import (
    ASPECT_CHOICES,
    aspect_keyboard,
    language_keyboard,
    progress_keyboard,
    result_keyboard,
    settings_keyboard,
    workflow_keyboard,
)

TEXTS = I18n.load()
JOB = "0123456789abcdef"


def _all_data(markup) -> list[str]:
    return [b.callback_data for row in markup.inline_keyboard for b in row]


def test_every_keyboard_fits_and_round_trips() -> None:
    boards = [
        progress_keyboard(TEXTS, "en", JOB),
        result_keyboard(TEXTS, "ru", JOB, images=1),
        result_keyboard(TEXTS, "ko", JOB, images=10),
        settings_keyboard(TEXTS, "zh_Hant"),
        workflow_keyboard(TEXTS, "en", ["txt2img", "a" * 40], "txt2img"),
        aspect_keyboard(TEXTS, "en", "16:9"),
        language_keyboard(TEXTS, "en", "en"),
        language_keyboard(TEXTS, "en", "en", in_settings=True),
    ]
    factories: dict[str, type[CallbackData]] = {"j": JobCb, "s": SetCb, "l": LangCb}
    for board in boards:
        for data in _all_data(board):
            assert 1 <= len(data.encode()) <= 64, data
            prefix = data[0]
            assert factories[prefix].unpack(data).pack() == data


def test_album_gets_one_upscale_button_per_image() -> None:
    data = _all_data(result_keyboard(TEXTS, "en", JOB, images=4))
    ups = [JobCb.unpack(d) for d in data if d.startswith("j:u:")]
    assert [u.idx for u in ups] == [0, 1, 2, 3]


def test_aspect_values_survive_packing() -> None:
    for ar in ASPECT_CHOICES:
        cb = SetCb(key=SettingKey.ASPECT, value=ar)
        assert fits(cb) and SetCb.unpack(cb.pack()).value == ar
    assert fits(JobCb(action=JobAction.UPSCALE, job=JOB, idx=9))
