"""``JobMessage``: the one Discord message that shows a job, edited in place and throttled.

The message starts as the interaction's original response (``defer(thinking=True)``), edited through the
interaction token. Progress states are coalesced: only the newest waits, and edits go out at most once per
``edit_interval_s`` (a 429 is retried by discord.py after its ``retry_after``, and the next edit waits for
it). The token lives 15 minutes: past ``token_ttl_s`` (or on 50027 Invalid Webhook Token) the job
continues on a normal channel message the bot owns — the original says so, a new message is sent, and
later edits go to it. A deleted message (10008) stops progress edits; the final state is sent anew.

Where the bot may not post (``can_post``: the interaction's ``app_permissions`` lack View Channel, Send
Messages or Attach Files, or a channel send answered 403) the channel path is never tried again: progress
stops at the last state the token could show, and the final state (the result) goes to the user's DMs
(``user_id``), introduced by ``dm_text``. Only a refusal there too is raised (``result_not_delivered``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import discord

from core.logs import get_logger
from gateway import metrics

__all__ = ["CannotPost", "JobMessage", "Render"]

log = get_logger("discord")

INVALID_WEBHOOK_TOKEN = 50027
UNKNOWN_MESSAGE = 10008
CONTENT_LIMIT = 2000


class CannotPost(Exception):
    """The final state has nowhere to go: no live token, no right to post in the channel, no user."""

    def __init__(self, channel_id: int) -> None:
        super().__init__(f"cannot post in channel {channel_id}")
        self.channel_id = channel_id


@dataclass(frozen=True)
class Render:
    """One state of a job message. ``files`` None keeps the attachments; ``view`` None: no buttons."""

    content: str
    view: Callable[[], discord.ui.View] | None = None
    files: Sequence[tuple[str, bytes]] | None = None

    def kwargs(self, *, new: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"content": self.content[:CONTENT_LIMIT]}
        view = self.view() if self.view is not None else None
        if view is not None or not new:
            out["view"] = view
        if self.files is not None:
            files = [discord.File(io.BytesIO(data), filename=name) for name, data in self.files]
            out["files" if new else "attachments"] = files
        return out

    @property
    def bytes(self) -> int:
        return sum(len(d) for _, d in self.files or ())


class JobMessage:
    """Where a job is shown, and the single task that edits it. ``show`` coalesces; ``final`` waits."""

    def __init__(
        self,
        client: discord.Client,
        *,
        channel_id: int,
        interaction: discord.Interaction[Any] | None,
        token_deadline: float,
        interval_s: float,
        continued_text: str = "⬇️",
        attachment_limit: int = 10 * 1024 * 1024,
        can_post: bool = True,
        user_id: int | None = None,
        dm_text: str = "",
    ) -> None:
        self.client = client
        self.channel_id = channel_id
        self.interaction = interaction
        self.token_deadline = token_deadline  # time.monotonic() after which the token is not used
        self.interval_s = interval_s
        self.continued_text = continued_text
        self.attachment_limit = attachment_limit
        self.can_post = can_post
        self.user_id = user_id
        self.dm_text = dm_text
        self.channel_message: discord.Message | None = None
        self.original_id: int | None = None  # the interaction's response, once an edit returned it
        self.gone = False
        self.edits = 0
        self._pending: Render | None = None
        self._final = False
        self._finished: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._last_edit = -1e9
        self._task: asyncio.Task[None] | None = None

    @property
    def message_id(self) -> int | None:
        return self.channel_message.id if self.channel_message is not None else None

    def show(self, render: Render) -> None:
        """Queue a progress state; a newer one replaces it before it is sent."""
        if self._final:
            return
        if render.files is None and self._pending is not None and self._pending.files is not None:
            render = replace(render, files=self._pending.files)  # a newer text must not drop a preview
        self._pending = render
        self._kick()

    async def final(self, render: Render) -> None:
        """Send the final state (result, failure) after any edit in flight; returns once it is out."""
        if self._finished is None or self._finished.done():  # a failed final may be retried
            self._finished = asyncio.get_running_loop().create_future()
        self._pending = render
        self._final = True
        self._kick()
        await asyncio.shield(self._finished)

    async def close(self, *, flush: bool = False, flush_s: float = 5.0) -> None:
        """Stop the edit loop. ``flush``: a state still waiting to be sent (the "held" notice of a
        shutdown) goes out first, bounded by ``flush_s``."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        render, self._pending = self._pending, None
        if flush and render is not None and not self._final:
            try:
                async with asyncio.timeout(flush_s):
                    await self._deliver(render, False)
            except Exception as exc:  # stopping anyway: say so, do not raise
                log.warning("job_message_failed", error=type(exc).__name__, final=False)

    def _kick(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="discord-job-message")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            wait = self._last_edit + self.interval_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # at most one edit a second per message; newer states coalesce
            render, final = self._pending, self._final
            self._pending = None
            if render is None:
                continue
            try:
                await self._deliver(render, final)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.chat_api_error("discord", type(exc).__name__)
                log.warning(
                    "job_message_failed", error=type(exc).__name__, detail=str(exc)[:200], final=final
                )
                if final and self._finished is not None and not self._finished.done():
                    self._finished.set_exception(exc)
                    return
            self._last_edit = time.monotonic()
            if final:
                if self._finished is not None and not self._finished.done():
                    self._finished.set_result(None)
                return

    # --- transport --------------------------------------------------------------------------------

    def _token_usable(self) -> bool:
        return self.interaction is not None and time.monotonic() < self.token_deadline

    async def _deliver(self, render: Render, final: bool) -> None:
        if self.gone and not final:
            return
        if self.channel_message is None and not self._token_usable():
            reason = "message_gone" if self.gone else "token_ttl"
            await self._continue_in_channel(render, reason=reason, final=final)
            return
        try:
            if self.channel_message is not None:
                self.channel_message = await self.channel_message.edit(**render.kwargs(new=False))
            else:
                assert self.interaction is not None
                original = await self.interaction.edit_original_response(**render.kwargs(new=False))
                self.original_id = original.id
            self.edits += 1
        except discord.NotFound as exc:
            if exc.code not in (UNKNOWN_MESSAGE, 0) and self.channel_message is not None:
                raise
            log.info("job_message_gone", code=exc.code)
            self.gone = True
            self.interaction = None
            self.channel_message = None
            if final:
                await self._send_new(render, final=True)
        except discord.HTTPException as exc:
            if exc.code != INVALID_WEBHOOK_TOKEN and exc.status != 401:
                raise
            self.interaction = None  # the token is dead: never use it again
            await self._retire_original()
            await self._continue_in_channel(render, reason="token_expired", final=final)

    async def _retire_original(self) -> None:
        """The token died before the original could say where the job went: edit it as the bot's own
        message instead, so no live Cancel is left on it. Best effort: it may be gone or not ours."""
        if self.original_id is None or not self.can_post:
            return
        original = self.client.get_partial_messageable(self.channel_id).get_partial_message(self.original_id)
        try:
            await original.edit(content=self.continued_text, view=None)
        except discord.HTTPException as exc:
            log.info("job_message_original_left", code=exc.code)

    async def _continue_in_channel(self, render: Render, *, reason: str, final: bool = False) -> None:
        if not self.can_post:
            self.interaction = None
            if final:
                await self._send_new(render, final=True)
            return
        if self.interaction is not None:
            with contextlib.suppress(discord.HTTPException):
                # Still within the token's life: say where the job went, drop the buttons.
                await self.interaction.edit_original_response(
                    content=self.continued_text, view=None, attachments=[]
                )
            self.interaction = None
        if await self._send_new(render, final=final):
            log.info("job_message_continued", reason=reason, message_id=self.message_id)

    async def _send_new(self, render: Render, *, final: bool) -> bool:
        """Post ``render`` as a new channel message; True when it went there. The bot may not post in
        the channel: never try again, and a final state goes to the user's DMs instead."""
        if self.can_post:
            channel = self.client.get_partial_messageable(self.channel_id)
            try:
                self.channel_message = await channel.send(**render.kwargs(new=True))
                self.gone = False
                return True
            except discord.Forbidden as exc:
                self.can_post = False  # a permanent 403: no request loop against it
                log.warning("job_message_cannot_post", code=exc.code, channel_id=self.channel_id)
        if final and self.user_id is not None:
            dm = await self.client.create_dm(discord.Object(self.user_id))
            intro = replace(render, content=f"{self.dm_text}\n{render.content}".strip())
            await dm.send(**intro.kwargs(new=True))  # a refusal here too is the caller's to report
            log.info("job_message_continued", reason="cannot_post", where="dm")
            return False
        if final:
            raise CannotPost(self.channel_id)
        return False
