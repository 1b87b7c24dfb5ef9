"""Following one prompt: its events, its completion, and recovery when the websocket fails us."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from comfy.errors import (
    ComfyError,
    ComfyExecutionError,
    ComfyInterrupted,
    ComfyPromptLost,
    ComfyResponseError,
    ComfyTimeout,
    ComfyUnreachable,
)
from comfy.events import (
    ComfyEvent,
    Executed,
    Executing,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionSuccess,
)
from comfy.jobs import Location, Where
from comfy.results import PromptResult, images_from_outputs

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

__all__ = ["PromptTracker"]


class Signal(enum.Enum):
    """What the client tells a tracker besides events."""

    CHECK = "check"  # the socket reconnected or stalled: ask /history and /queue
    CLOSED = "closed"  # the client is closing
    STALL = "stall"  # nothing arrived for stall_timeout_s (set by the tracker itself)


class PromptTracker:
    """Async context manager and async iterator of the events of one prompt.

    Made by :meth:`ComfyClient.track` before the prompt is posted. Iteration ends after
    ``executing {node: null}`` for the prompt (or after the outcome was read from ``/history`` when the
    websocket failed); then :attr:`result` holds the :class:`PromptResult`. A failed or interrupted prompt
    raises :class:`ComfyExecutionError` / :class:`ComfyInterrupted` at the end of iteration instead.
    """

    def __init__(
        self,
        prompt_id: str,
        *,
        backend: str,
        locate: Callable[[str], Awaitable[Location]],
        untrack: Callable[[PromptTracker], None],
        stall_timeout_s: float,
        timeout_s: float | None,
        logger: FilteringBoundLogger,
        submitted: bool = False,
    ) -> None:
        self.prompt_id = prompt_id
        self.result: PromptResult | None = None
        #: True once the prompt was posted; before that a silent socket is no reason to ask /history.
        self.submitted = submitted
        self._backend = backend
        self._locate = locate
        self._untrack = untrack
        self._stall_timeout_s = stall_timeout_s
        self._started = asyncio.get_running_loop().time()
        self._deadline = None if timeout_s is None else self._started + timeout_s
        self._log = logger
        self._items: asyncio.Queue[ComfyEvent | Signal] = asyncio.Queue()
        self._outputs: dict[str, dict[str, Any]] = {}
        self._terminal: ExecutionSuccess | ExecutionError | ExecutionInterrupted | None = None
        self._done = False
        self._error: ComfyError | None = None
        if submitted:
            self._items.put_nowait(Signal.CHECK)

    # -- fed by the client's reader task -------------------------------------------------------------
    def feed(self, item: ComfyEvent | Signal) -> None:
        """Queue an event or a signal (never blocks: the reader must not wait on a slow consumer)."""
        self._items.put_nowait(item)

    @property
    def done(self) -> bool:
        """True once the outcome is known."""
        return self._done

    # -- consumer side -------------------------------------------------------------------------------
    async def __aenter__(self) -> PromptTracker:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._untrack(self)

    def __aiter__(self) -> PromptTracker:
        return self

    async def __anext__(self) -> ComfyEvent:
        while True:
            if self._done:
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                raise StopAsyncIteration
            item = await self._next_item()
            if item is Signal.CLOSED:
                raise ComfyError("client closed while following the prompt", backend=self._backend)
            if item is Signal.CHECK or item is Signal.STALL:
                await self._check("reconnect" if item is Signal.CHECK else "stall")
                continue
            assert not isinstance(item, Signal)
            await self._observe(item)
            return item

    async def wait(self) -> PromptResult:
        """Drain the events and return the result (raises like iteration does)."""
        async for _ in self:
            pass
        assert self.result is not None
        return self.result

    async def _next_item(self) -> ComfyEvent | Signal:
        wait_s = self._stall_timeout_s
        if self._deadline is not None:
            remaining = self._deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise ComfyTimeout(backend=self._backend, prompt_id=self.prompt_id)
            wait_s = min(wait_s, remaining)
        try:
            async with asyncio.timeout(wait_s):
                return await self._items.get()
        except TimeoutError:
            # Silence: either the deadline (raised on the next turn) or a stall worth a /history check.
            return Signal.STALL

    async def _observe(self, event: ComfyEvent) -> None:
        match event:
            case Executed(node=node, output=output):
                self._outputs[node] = dict(output)
            case ExecutionSuccess() | ExecutionInterrupted():
                self._terminal = event
            case ExecutionError():
                self._log.error(
                    "comfyui_execution_error",
                    prompt_id=self.prompt_id,
                    node_id=event.node_id,
                    node_type=event.node_type,
                    exception_type=event.exception_type,
                    exception_message=event.exception_message.strip(),
                )
                if event.blocking:
                    self._terminal = event
            case Executing(node=None):
                if self._terminal is None:
                    # We missed the terminal message (socket replaced mid-run): history has it.
                    await self._check("completion_without_outcome")
                    if not self._done:
                        self._finish(
                            PromptResult(self.prompt_id, self._outputs, images_from_outputs(self._outputs))
                        )
                else:
                    self._finish_from_ws(self._terminal)

    def _finish_from_ws(self, terminal: ExecutionSuccess | ExecutionError | ExecutionInterrupted) -> None:
        ok = isinstance(terminal, ExecutionSuccess)
        result = PromptResult(
            self.prompt_id, self._outputs, images_from_outputs(self._outputs), "success" if ok else "error"
        )
        error: ComfyError | None = None
        if isinstance(terminal, ExecutionInterrupted):
            error = ComfyInterrupted(
                backend=self._backend, prompt_id=self.prompt_id, node_id=terminal.node_id
            )
        elif isinstance(terminal, ExecutionError):
            error = ComfyExecutionError(
                backend=self._backend,
                prompt_id=self.prompt_id,
                node_id=terminal.node_id,
                node_type=terminal.node_type,
                exception_type=terminal.exception_type,
                exception_message=terminal.exception_message,
            )
        self._finish(result, error, source="ws")

    def _finish(
        self, result: PromptResult, error: ComfyError | None = None, *, source: str = "history"
    ) -> None:
        self.result = result
        self._error = error
        self._done = True
        self._log.info(
            "comfyui_prompt_finished",
            prompt_id=self.prompt_id,
            status=result.status_str if error is None else error.code,
            images=len(result.images),
            source=source,
            duration_ms=round((asyncio.get_running_loop().time() - self._started) * 1000),
        )

    async def _check(self, reason: str) -> None:
        """Ask the server where the prompt is: finished → done; queued → keep waiting; neither → lost."""
        if not self.submitted or self._done:
            return
        try:
            found = await self._locate(self.prompt_id)
            if not found.finished and found.known:
                self._log.info(
                    "comfyui_history_checked",
                    prompt_id=self.prompt_id,
                    reason=reason,
                    outcome="queued" if found.where is Where.QUEUED else "running",
                    position=found.position,
                )
                return
            result = found.result
        except (ComfyUnreachable, ComfyTimeout, ComfyResponseError) as exc:
            self._log.warning(
                "comfyui_history_checked",
                prompt_id=self.prompt_id,
                reason=reason,
                outcome="unreachable",
                error=str(exc),
            )
            return
        if result is None:
            self._log.warning(
                "comfyui_history_checked", prompt_id=self.prompt_id, reason=reason, outcome="lost"
            )
            self._done = True
            raise ComfyPromptLost(backend=self._backend, prompt_id=self.prompt_id)
        self._log.info(
            "comfyui_history_checked",
            prompt_id=self.prompt_id,
            reason=reason,
            outcome="finished",
            status=result.status_str,
        )
        self._finish(result, result.failure(self._backend))
