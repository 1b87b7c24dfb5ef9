"""Buttons under job messages, persistent across restarts.

Each button is a :class:`JobButton` — a ``DynamicItem`` whose ``custom_id`` is ``comfybot:<action>:<job id>``
(a stable prefix, at most ~60 chars). The client registers the class (``add_dynamic_items``), so a button
on a message sent by an earlier process still reaches :meth:`ButtonsCog.handle` after a restart.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import discord
from discord.ext import commands

from bot.i18n import I18n
from bot.requests import JobAction

__all__ = [
    "PREFIX",
    "JobAction",
    "JobButton",
    "dispatched",
    "progress_view",
    "result_view",
    "reroll_view",
]

PREFIX = "comfybot"


@runtime_checkable
class ButtonHandler(Protocol):
    async def handle(
        self, interaction: discord.Interaction[Any], action: JobAction, job_id: str, idx: int
    ) -> None: ...


_STYLES = {
    JobAction.CANCEL: discord.ButtonStyle.danger,
    JobAction.REROLL: discord.ButtonStyle.primary,
    JobAction.VARIATIONS: discord.ButtonStyle.secondary,
    JobAction.UPSCALE: discord.ButtonStyle.secondary,
    JobAction.INFO: discord.ButtonStyle.secondary,
}
_LABELS = {
    JobAction.CANCEL: "btn.cancel",
    JobAction.REROLL: "btn.reroll",
    JobAction.VARIATIONS: "btn.variations",
    JobAction.UPSCALE: "btn.upscale",
    JobAction.INFO: "btn.info",
}


def custom_id(action: JobAction, job_id: str, idx: int | None = None) -> str:
    """``comfybot:<action>:<job id>[:<image index>]`` — well under Discord's 100 characters."""
    return f"{PREFIX}:{action.value}:{job_id}" + ("" if idx is None else f":{idx}")


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=PREFIX + r":(?P<action>[crvui]):(?P<job>[0-9a-zA-Z_-]{1,64})(?::(?P<idx>\d{1,2}))?",
):
    """One job button; rebuilt from its ``custom_id`` when pressed (labels are not needed for that)."""

    def __init__(
        self,
        action: JobAction,
        job_id: str,
        label: str | None = None,
        *,
        idx: int | None = None,
        row: int | None = None,
    ) -> None:
        super().__init__(
            discord.ui.Button(label=label, style=_STYLES[action], custom_id=custom_id(action, job_id, idx)),
            row=row,
        )
        self.action = action
        self.job_id = job_id
        self.idx = idx or 0

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobButton:
        idx = match["idx"]
        return cls(JobAction(match["action"]), match["job"], idx=None if idx is None else int(idx))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        client = interaction.client
        cog = (
            client.get_cog("ButtonsCog")
            if isinstance(client, commands.Bot | commands.AutoShardedBot)
            else None
        )
        if isinstance(cog, ButtonHandler):
            await cog.handle(interaction, self.action, self.job_id, self.idx)


def _view(
    i18n: I18n, locale: str, job_id: str, actions: list[JobAction], upscales: int = 0
) -> Callable[[], discord.ui.View]:
    def build() -> discord.ui.View:
        view = discord.ui.View(timeout=None)
        for action in actions:
            view.add_item(JobButton(action, job_id, i18n.t(locale, _LABELS[action]), row=0))
        for i in range(upscales):  # one ⬆️ per picture of a batch, on the next rows
            view.add_item(JobButton(JobAction.UPSCALE, job_id, f"⬆️ {i + 1}", idx=i, row=1 + i // 5))
        return view

    return build


def progress_view(i18n: I18n, locale: str, job_id: str) -> Callable[[], discord.ui.View]:
    """✖️ Cancel while the job waits or runs."""
    return _view(i18n, locale, job_id, [JobAction.CANCEL])


def result_view(
    i18n: I18n, locale: str, job_id: str, *, upscale: bool, images: int = 1, reroll: bool = True
) -> Callable[[], discord.ui.View]:
    """🔁 Reroll 🎲 Variations ⬆️ Upscale ℹ️ Info; a batch gets ⬆️ 1…⬆️ N on the rows below. ``reroll``
    False (a workflow without a seed, like upscale): no Reroll/Variations — a new seed means nothing."""
    actions = [JobAction.REROLL, JobAction.VARIATIONS] if reroll else []
    if upscale and images == 1:
        actions.append(JobAction.UPSCALE)
    actions.append(JobAction.INFO)
    return _view(i18n, locale, job_id, actions, upscales=min(images, 10) if upscale and images > 1 else 0)


def reroll_view(jobs: list[tuple[int, str]]) -> discord.ui.View:
    """🔁 1 … 🔁 N under /history, five a row: each reruns job N with a new seed, like 🔁 under a result."""
    view = discord.ui.View(timeout=None)
    for i, (n, job_id) in enumerate(jobs[:25]):
        view.add_item(JobButton(JobAction.REROLL, job_id, f"🔁 {n}", row=i // 5))
    return view


def dispatched(client: discord.Client, interaction: discord.Interaction[Any]) -> bool:
    """Whether discord.py hands this component press to some item: a dynamic item whose template matches
    a ``custom_id`` that is on the pressed message, or an item of a view it tracks (by message or
    persistent). discord.py drops every other press without answering, and has no public lookup, so this
    asks its view store the same questions it asks itself (``ViewStore.dispatch_view``)."""
    data: Any = interaction.data or {}
    custom_id, kind = str(data.get("custom_id", "")), data.get("component_type")
    store = client._connection._view_store
    msg = interaction.message
    if msg is not None and any(p.fullmatch(custom_id) for p in store._dynamic_items):
        layout = discord.ui.LayoutView if msg.flags.components_v2 else discord.ui.View
        view = layout.from_message(msg, timeout=None)
        if any(getattr(i, "custom_id", None) == custom_id for i in view.walk_children()):
            return True
    keys: list[int | None] = [None] if msg is None else [msg.id, None]
    return any((kind, custom_id) in store._views.get(key, {}) for key in keys)
