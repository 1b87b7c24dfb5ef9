"""Telegram front end (aiogram 3): commands, photos, one edited message per job, buttons.

Start it from a startup module with :class:`bot.telegram.app.TelegramFrontend` or
:func:`bot.telegram.app.run_telegram`.
"""
