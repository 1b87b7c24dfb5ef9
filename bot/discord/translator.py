"""Slash-command names' descriptions in the user's client language, from the same PO catalogues.

Strings carry their catalogue key in ``locale_str(..., key=...)``; Discord gets a localization for each
shipped language when the tree is synced (``description_localizations``).
"""

from __future__ import annotations

import discord
from discord import app_commands

from bot.i18n import I18n

__all__ = ["DISCORD_LOCALES", "CatalogueTranslator"]

#: Discord client locale → our catalogue.
DISCORD_LOCALES: dict[discord.Locale, str] = {
    discord.Locale.american_english: "en",
    discord.Locale.british_english: "en",
    discord.Locale.russian: "ru",
    discord.Locale.korean: "ko",
    discord.Locale.taiwan_chinese: "zh_Hant",
}
DESCRIPTION_LIMIT = 100


class CatalogueTranslator(app_commands.Translator):
    def __init__(self, i18n: I18n) -> None:
        self.i18n = i18n

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        key = string.extras.get("key")
        lang = DISCORD_LOCALES.get(locale)
        if not isinstance(key, str) or lang is None:
            return None
        text = self.i18n.catalogues.get(lang, {}).get(key)
        return text[:DESCRIPTION_LIMIT] if text else None
