"""ComfyClient: one ComfyUI server = HTTP endpoints + one websocket with a stable clientId.

A reader task owns the websocket: it sends ``feature_flags`` first, parses every frame into a typed
event, hands each to the tracker of its prompt, and reconnects with backoff when the socket drops or
stays silent while a prompt is being followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import json
import random
import uuid
from types import TracebackType
from typing import Any

import aiohttp

from comfy.errors import ComfyError, ComfyTimeout, ComfyUnreachable
from comfy.events import (
    ComfyEvent,
    Executing,
    ExecutionStart,
    FeatureFlags,
    Logs,
    PreviewImage,
    Progress,
    ProgressText,
    Status,
    UnknownEvent,
    parse_binary,
    parse_json,
)
from comfy.jobs import ComfyJobs, Location, Where
from comfy.results import OutputImage, PromptResult, QueueState
from comfy.tracker import PromptTracker, Signal

__all__ = [
    "ComfyClient",
    "Location",
    "OutputImage",
    "PromptResult",
    "PromptTracker",
    "QueueState",
    "Where",
]

_BACKOFF_FIRST_S = 0.05
_CLIENT_FLAGS = {"supports_preview_metadata": True}


class ComfyClient(ComfyJobs):
    """Client of one ComfyUI server. Use as ``async with ComfyClient(url, session) as c:``.

    The aiohttp ``session`` is the caller's (not closed here). ``client_id`` is stable for the life of
    the client so a reconnect gets the running prompt's events again.
    """

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        name: str | None = None,
        client_id: str | None = None,
        ws_stall_timeout_s: float = 30.0,
        request_timeout_s: float = 30.0,
        ws_max_msg_size: int = 256 * 1024 * 1024,
        reconnect_max_delay_s: float = 5.0,
        preview_method: str | None = "auto",
    ) -> None:
        super().__init__(
            base_url,
            session,
            name=name,
            client_id=client_id or uuid.uuid4().hex,
            request_timeout_s=request_timeout_s,
            preview_method=preview_method,
        )
        self._stall_timeout_s = ws_stall_timeout_s
        # SaveImageWebsocket sends full-size PNGs in one frame; aiohttp's default cap is 4 MB.
        self._ws_max_msg_size = ws_max_msg_size
        self._reconnect_max_delay_s = reconnect_max_delay_s
        self._trackers: dict[str, PromptTracker] = {}
        self._reader: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._first_attempt = asyncio.Event()
        self._running_prompt: str | None = None  # the prompt executing on our socket, for id-less frames
        self._running_node: str | None = None
        #: queue_remaining of the last ``status`` message, None before the first.
        self.last_queue_remaining: int | None = None
        #: websocket connections made so far: a change means a reconnect (the server may have restarted).
        self.ws_connects = 0
        #: the server's answer to our feature_flags (e.g. ``max_upload_size``).
        self.server_features: dict[str, Any] = {}

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the websocket reader; returns after the first connection attempt (whatever its outcome).

        A server that is down at start is retried in the background with backoff; see :attr:`connected`.
        """
        if self._reader is not None:
            return
        # A fresh context: the reader serves every prompt of this server for the client's whole life, so it
        # must not inherit the request_id/job_id bound by whichever caller happened to start it.
        self._reader = asyncio.create_task(
            self._run(), name=f"comfy-ws-{self.name}", context=contextvars.Context()
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._request_timeout_s + 1):
                await self._first_attempt.wait()

    async def close(self) -> None:
        """Stop the reader, close the websocket, end every tracker. Does not close the session."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        for tracker in list(self._trackers.values()):
            tracker.feed(Signal.CLOSED)
        self._trackers.clear()

    async def __aenter__(self) -> ComfyClient:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """True while the websocket is open."""
        return self._ws is not None and not self._ws.closed

    # -- prompts -------------------------------------------------------------------------------------
    def track(
        self, prompt_id: str, *, timeout_s: float | None = None, submitted: bool = False
    ) -> PromptTracker:
        """Start following ``prompt_id``; call BEFORE :meth:`submit` so no early event is lost.

        ``timeout_s`` bounds the whole wait (ComfyTimeout). ``submitted=True`` follows a prompt posted
        earlier (e.g. by a worker that died): its status is checked at once.
        """
        if prompt_id in self._trackers:
            raise ValueError(f"prompt {prompt_id} is already tracked")
        tracker = PromptTracker(
            prompt_id,
            backend=self.name,
            locate=self.locate,
            untrack=self._untrack,
            stall_timeout_s=self._stall_timeout_s,
            timeout_s=timeout_s,
            logger=self._log,
            submitted=submitted,
        )
        self._trackers[prompt_id] = tracker
        return tracker

    def _untrack(self, tracker: PromptTracker) -> None:
        if self._trackers.get(tracker.prompt_id) is tracker:
            del self._trackers[tracker.prompt_id]
        if self._running_prompt == tracker.prompt_id and tracker.done:
            self._running_prompt = None

    async def submit(
        self,
        graph: dict[str, Any],
        *,
        prompt_id: str,
        extra_data: dict[str, Any] | None = None,
        front: bool = False,
    ) -> int:
        """Queue ``graph`` (see :meth:`comfy.http.ComfyHTTP.submit`) and arm its tracker, if any.

        When the answer never comes (timeout, connection cut) the POST may still have reached ComfyUI:
        the prompt id is ours, so ``/queue`` and ``/history`` tell. A prompt found there counts as
        submitted (returned number -1); only one found nowhere raises, so a retry never runs it twice.
        """
        try:
            number = await super().submit(graph, prompt_id=prompt_id, extra_data=extra_data, front=front)
        except (ComfyTimeout, ComfyUnreachable) as exc:
            if not await self._landed(prompt_id):
                raise
            self._log.warning("comfyui_submit_unconfirmed", prompt_id=prompt_id, error=type(exc).__name__)
            number = -1
        tracker = self._trackers.get(prompt_id)
        if tracker is not None:
            tracker.submitted = True
        return number

    async def _landed(self, prompt_id: str) -> bool:
        """Whether ComfyUI knows ``prompt_id`` (queued, running or finished); False when it can't tell."""
        try:
            return (await self.locate(prompt_id)).known
        except ComfyError:
            return False

    # -- the reader ----------------------------------------------------------------------------------
    async def _run(self) -> None:
        attempt = 0
        reason = ""
        ever_connected = False
        while True:
            if attempt:
                delay = min(self._reconnect_max_delay_s, _BACKOFF_FIRST_S * 2 ** (attempt - 1))
                delay *= random.uniform(0.5, 1.0)  # jitter: many workers must not reconnect in lockstep
                self._log.warning(
                    "comfyui_ws_reconnect", attempt=attempt, delay_s=round(delay, 3), reason=reason
                )
                await asyncio.sleep(delay)
            try:
                ws = await self._connect()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                attempt += 1
                reason = f"connect_failed: {type(exc).__name__}"
                self._first_attempt.set()
                continue
            self._ws = ws
            self.ws_connects += 1
            self._log.info("comfyui_ws_connected", client_id=self.client_id, reconnect=ever_connected)
            self._first_attempt.set()
            if ever_connected:
                # Events may have been lost while we were away: let every armed tracker ask /history.
                for tracker in list(self._trackers.values()):
                    tracker.feed(Signal.CHECK)
            ever_connected = True
            try:
                reason = await self._read(ws)
            except Exception as exc:  # a bug must not end the reader for good: log it, reconnect
                self._log.exception("comfyui_ws_reader_failed", error=f"{type(exc).__name__}: {exc}")
                reason = f"reader_failed: {type(exc).__name__}"
            finally:
                self._ws = None
                with contextlib.suppress(Exception):
                    await ws.close()
            attempt = 1

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        async with asyncio.timeout(self._request_timeout_s):
            ws = await self._session.ws_connect(
                f"{self.base_url}/ws",
                params={"clientId": self.client_id},
                max_msg_size=self._ws_max_msg_size,
                autoping=True,
                # Pings find a dead TCP connection even while no prompt is followed (no stall check then).
                heartbeat=max(self._stall_timeout_s, 1.0),
                timeout=aiohttp.ClientWSTimeout(ws_close=min(self._request_timeout_s, 5.0)),
            )
            try:
                # Only the first client message counts, and only if it is feature_flags.
                await ws.send_json({"type": "feature_flags", "data": _CLIENT_FLAGS})
            except BaseException:
                await ws.close()
                raise
        return ws

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Dispatch frames until the socket ends or stalls; returns why it ended."""
        while True:
            try:
                async with asyncio.timeout(self._stall_timeout_s):
                    msg = await ws.receive()
            except TimeoutError:
                if any(t.submitted and not t.done for t in self._trackers.values()):
                    return "stall"
                continue  # an idle server is silent; that is fine while nobody waits on it
            if msg.type is aiohttp.WSMsgType.TEXT:
                self._on_text(msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                try:
                    event = parse_binary(msg.data)
                except ValueError as exc:
                    self._log.warning("comfyui_ws_bad_frame", error=str(exc), bytes=len(msg.data))
                    continue
                self._dispatch(event)
            elif msg.type is aiohttp.WSMsgType.ERROR:
                return f"error: {ws.exception()!r}"
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return "closed"

    def _on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            self._log.warning("comfyui_ws_bad_frame", error="not json", bytes=len(text))
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self._log.warning("comfyui_ws_bad_frame", error="no type", bytes=len(text))
            return
        self._dispatch(parse_json(message["type"], message.get("data")))

    def _dispatch(self, event: ComfyEvent) -> None:
        """Route one event to its prompt's tracker; id-less frames go to the prompt running on our socket."""
        prompt_id: str | None = None
        match event:
            case Status():
                self.last_queue_remaining = event.queue_remaining
                return
            case FeatureFlags():
                self.server_features = dict(event.data)
                return
            case UnknownEvent():
                self._log.debug("comfyui_ws_unknown_event", type=event.type)
                return
            case Logs():
                return  # we never subscribe; another client's subscription is not our business
            case ExecutionStart():
                self._running_prompt, self._running_node = event.prompt_id, None
                prompt_id = event.prompt_id
            case Executing(prompt_id=None):
                # The replay a reconnecting socket gets: {"node": "2"} without prompt_id.
                prompt_id = self._running_prompt
                self._running_node = event.node
                event = dataclasses.replace(event, prompt_id=prompt_id)
            case Executing(node=None):
                prompt_id = event.prompt_id
                if self._running_prompt == prompt_id:
                    self._running_prompt = self._running_node = None
            case Executing():
                self._running_prompt, self._running_node = event.prompt_id, event.node
                prompt_id = event.prompt_id
            case PreviewImage(prompt_id=None) | Progress(prompt_id=None):
                prompt_id = self._running_prompt
                if isinstance(event, PreviewImage):
                    event = dataclasses.replace(event, prompt_id=prompt_id, node_id=self._running_node)
                else:
                    event = dataclasses.replace(event, prompt_id=prompt_id)
            case ProgressText():
                prompt_id = self._running_prompt
            case _:
                prompt_id = event.prompt_id
        tracker = self._trackers.get(prompt_id) if prompt_id else None
        if tracker is not None:
            tracker.feed(event)
