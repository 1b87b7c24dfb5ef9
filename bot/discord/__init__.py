"""The Discord front end (discord.py 2): slash commands, one job message per job, persistent buttons.

What the startup module uses::

    from bot.discord.app import DiscordFrontend, run_discord

    await run_discord(settings.discord, gateway, registry)      # until cancelled
    # or: async with DiscordFrontend(settings.discord, gateway, registry) as fe: await fe.wait()

Layout: ``app`` (DiscordFrontend), ``client`` (ComfyBot, the Cogs' home), ``cogs/`` (generate, jobs,
settings, help, buttons), ``events`` (gateway events → job messages), ``messages`` (the throttled job message
and its 15-minute-token continuation), ``views`` (persistent JobButton), ``jobs`` (submit + refusals),
``access`` (the access policy before every command and button), ``images`` (attachments), ``translator``
(command descriptions from the PO catalogues).
"""

import warnings

with warnings.catch_warnings():
    # discord.py 2.7 imports the stdlib ``audioop`` (for voice), deprecated since Python 3.11. Not ours to
    # fix, and under pytest's ``filterwarnings = error`` it would fail every test importing this package.
    warnings.filterwarnings("ignore", message="'audioop' is deprecated", category=DeprecationWarning)
    import discord  # noqa: F401
