"""The Discord front end (discord.py 2): slash commands, one job message per job, persistent buttons.

``bot.discord.app.DiscordFrontend`` (or ``run_discord``) is what the startup module runs.
"""
