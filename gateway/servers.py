"""The ComfyUI servers a worker schedules onto: capacity, health and choice of server per job.

Capacity is per server and counts prompts *in flight* in this process (posted, not finished). The
default of 2 pipelines: while one prompt runs, the next already waits inside ComfyUI's own queue, so
the GPU never waits for us between jobs. Health checks (``/system_stats`` + ``/prompt``) take a server
out and bring it back, refreshing its cached ``/object_info``; a job goes only to a server whose
``object_info`` has the workflow's node types and models, and among those to the least busy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Literal

from comfy import ComfyClient, ComfyError, ComfyRejected
from comfy.workflows import Workflow
from core.logs import get_logger
from gateway.affinity import Affinity, ModelKey, Pick
from gateway.comfy_server import ComfyServer, Lack, NoBackend, runnable_problems
from gateway.models import Blocked

log = get_logger("gateway")

#: ComfyUI validation errors that mean our cached /object_info is wrong about the server
_INFO_ERRORS = frozenset({"missing_node_type", "invalid_prompt", "value_not_in_list"})
_BLOCKED_BY: dict[str, Literal["missing_model", "missing_node", "missing_option"]] = {
    "model": "missing_model",
    "node": "missing_node",
    "option": "missing_option",
}


class ServerPool:
    """All servers of this process; ``acquire`` a slot for a job, ``release`` it when the prompt ended."""

    def __init__(
        self,
        clients: Sequence[ComfyClient],
        *,
        capacity: int = 2,
        health_interval_s: float = 5.0,
        object_info_max_age_s: float | None = None,
        affinity: Affinity | None = None,
    ) -> None:
        self.affinity = affinity or Affinity()
        self.servers = [ComfyServer(client=c, capacity=capacity) for c in clients]
        self.health_interval_s = health_interval_s
        self.object_info_max_age_s = object_info_max_age_s
        #: a prompt on a server that stays down this long is given up and retried elsewhere
        self.dead_after_s = 3 * health_interval_s
        self._changed = asyncio.Condition()
        self._reserved = 0
        self._recheck = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []
        self._lacking = False  # a job was found blocked by something the servers that are up lack

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever a server goes up or down or its ``object_info`` is re-read: what
        the servers can run may have changed (the queue-position loop re-checks blocked jobs)."""
        self._listeners.append(listener)

    def by_name(self, name: str | None) -> ComfyServer | None:
        return next((s for s in self.servers if s.name == name), None)

    # --- health -------------------------------------------------------------------------------------
    async def check(self, server: ComfyServer, *, fresh_info: bool = False) -> bool:
        """Ask the server how it is; re-read ``object_info`` on change: when it comes (back) up, when its
        websocket reconnected, after a prompt refused for a node type or model (:meth:`refused`), when
        ``fresh_info`` asks for it, and (only if ``object_info_max_age_s`` is set) when older than that."""
        try:
            await server.client.system_stats()
            server.queue_remaining = await server.client.queue_remaining()
            now = asyncio.get_running_loop().time()
            aged = self.object_info_max_age_s is not None and (
                now - server.object_info_at > self.object_info_max_age_s
            )
            connects = server.client.ws_connects
            stale = fresh_info or server.info_stale or aged or connects != server.info_connects
            refreshed = not server.healthy or server.object_info is None or stale
            if refreshed:
                server.object_info = await server.client.object_info()
                server.object_info_at, server.info_connects, server.info_stale = now, connects, False
                server._problems.clear()
        except ComfyError as exc:
            await self._set_health(server, False, f"{type(exc).__name__}: {exc}")
            return False
        await self._set_health(server, True, "", refreshed=refreshed)
        return True

    async def _set_health(
        self, server: ComfyServer, healthy: bool, reason: str, *, refreshed: bool = False
    ) -> None:
        changed = healthy != server.healthy
        if changed:
            if healthy:
                log.info("backend_up", backend=server.name, queue_remaining=server.queue_remaining)
            else:
                log.warning("backend_down", backend=server.name, reason=reason)
        if healthy:
            server.down_since = None
        elif server.down_since is None:
            server.down_since = asyncio.get_running_loop().time()
        server.healthy, server.down_reason = healthy, reason
        async with self._changed:
            self._changed.notify_all()
        if changed or refreshed:
            for listener in self._listeners:
                listener()

    async def check_all(self) -> None:
        # A job waits for a model or node no server has: re-read /object_info at every check, so it
        # starts as soon as the operator installs it, not up to object_info_max_age_s later.
        fresh, self._lacking = self._lacking, False
        await asyncio.gather(*(self.check(s, fresh_info=fresh) for s in self.servers))

    def refused(self, server: ComfyServer, exc: ComfyRejected) -> None:
        """A prompt was refused: when for a node type or a model value, the cached ``object_info`` is out
        of date (a node pack or model removed): re-read it at the next check, which comes at once."""
        kinds = {exc.error_type} | {
            str(e.get("type"))
            for n in exc.node_errors.values()
            if isinstance(n, Mapping)
            for e in n.get("errors") or []
            if isinstance(e, Mapping)
        }
        if kinds & _INFO_ERRORS:
            log.info("object_info_stale", backend=server.name, reason=sorted(kinds & _INFO_ERRORS))
            server.info_stale = True
            self._recheck.set()

    async def mark_down(self, server: ComfyServer, reason: str) -> None:
        """A job saw the server fail: stop sending it work until a health check brings it back."""
        await self._set_health(server, False, reason)
        self._recheck.set()

    async def run_health_checks(self) -> None:
        """Check every server every ``health_interval_s`` (sooner after ``mark_down``); run as a task."""
        while True:
            await self.check_all()
            self._recheck.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.health_interval_s):
                    await self._recheck.wait()
                    # A server just failed: give it a moment before asking again.
                    await asyncio.sleep(min(0.5, self.health_interval_s))

    # --- slots --------------------------------------------------------------------------------------
    def free_slots(self) -> int:
        """Slots a new job may be taken for. A job waiting for its model's busy server leaves its free slot
        to the next job taken (the idle GPU may run it); more waiters than free slots take slots away."""
        free = sum(max(0, s.capacity - s.inflight) for s in self.servers if s.healthy)
        waiting = sum(self.affinity.waiting.values())
        return free - self._reserved - max(0, waiting - free)

    async def reserve(self, timeout_s: float) -> bool:
        """Wait (up to ``timeout_s``) until a slot is free and hold it for a job not taken yet."""
        async with self._changed:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._changed.wait_for(lambda: self.free_slots() > 0)
            except TimeoutError:
                return False
            self._reserved += 1
            return True

    async def unreserve(self) -> None:
        async with self._changed:
            self._reserved = max(0, self._reserved - 1)
            self._changed.notify_all()

    def candidates(self, workflow: Workflow, values: Mapping[str, Any] | None) -> list[ComfyServer]:
        return [s for s in self.servers if s.healthy and not s.problems(workflow, values)]

    def blocker(self, workflow: Workflow, values: Mapping[str, Any] | None) -> Blocked | None:
        """Why no healthy server can run ``workflow`` with ``values`` now; None when one can (busy or not).

        ``servers_down`` when no server is up, or when one that is down could run it (it comes back);
        else what the servers that are up lack, a missing model first (the likeliest operator fix)."""
        if self.candidates(workflow, values):
            return None
        could = any(
            not s.healthy and s.object_info is not None and not s.problems(workflow, values)
            for s in self.servers
        )
        lacks = [
            lack
            for s in self.servers
            if s.healthy
            for lack in s.problems(workflow, values)
            if lack.kind != "unknown"
        ]
        if could or not lacks:
            return Blocked(reason="servers_down")
        lack = next((x for x in lacks if x.kind == "model"), lacks[0])
        self._lacking = True
        return Blocked(reason=_BLOCKED_BY[lack.kind], name=lack.name)

    def _no_backend(self, workflow: Workflow, values: Mapping[str, Any] | None) -> NoBackend:
        return NoBackend(
            {
                s.name: [str(p) for p in s.problems(workflow, values)] if s.healthy else [s.down_reason]
                for s in self.servers
            }
        )

    async def acquire(
        self,
        workflow: Workflow,
        values: Mapping[str, Any] | None,
        *,
        avoid: Collection[str] = (),
        reserved: bool = False,
        timeout_s: float = 60.0,
        on_blocked: Callable[[Blocked | None], Awaitable[None]] | None = None,
    ) -> ComfyServer:
        """A slot on the best free server that can run ``workflow``: one that has its model loaded
        (:mod:`gateway.affinity`), else the least busy.

        Waiting for a busy server that can run it has no bound (the job is next in line). Waiting while
        *no* healthy server can run it (:meth:`blocker`) is bounded: after ``timeout_s`` of such time in
        all, :class:`NoBackend` is raised. Waiting for a busy server that has the job's model while a free
        one would swap models is bounded by ``affinity.wait_s``. ``on_blocked`` hears each change of why it
        waits (None: no longer blocked, only waiting for a busy server); it runs outside the pool's lock.

        ``avoid`` names servers that just failed this job: used only when no other server can take it.
        ``reserved``: the caller holds a :meth:`reserve`\\ d slot, handed over here and consumed at once,
        so a job that has to wait does not keep other jobs from the free slots.
        """
        loop = asyncio.get_running_loop()
        key = self.affinity.key(workflow, values)
        pick = Pick(workflow, values, avoid, key, loop.time() + self.affinity.wait_s, timeout_s)
        shown: Blocked | None = None
        while True:
            async with self._changed:
                if reserved:
                    reserved = False
                    self._reserved = max(0, self._reserved - 1)
                    self._changed.notify_all()
                blocked = await self._pick(pick, shown)
            if pick.server is not None:
                break
            shown = blocked
            if on_blocked is not None:
                await on_blocked(blocked)
        pick.log_choice(pick.server, len(self.servers))
        return pick.server

    async def _pick(self, pick: Pick, shown: Blocked | None) -> Blocked | None:
        """Under the lock: wait until ``pick.server`` is set and its slot taken, or until why the job
        waits differs from ``shown`` (returned, for the caller to tell outside the lock)."""
        loop = asyncio.get_running_loop()
        while True:
            pick.able = able = self.candidates(pick.workflow, pick.values)
            preferred = [s for s in able if s.name not in pick.avoid] or able
            free = [s for s in preferred if s.inflight < s.capacity]
            if free:
                server = self.affinity.choose(free, pick.key)
                left = pick.affinity_until - loop.time()
                if left > 0 and self.affinity.may_wait(server, able, pick.key):
                    pick.waited = True
                    await self._affinity_wait(pick.key, left)
                    continue
                pick.outcome = self.affinity.outcome(server, pick.key, pick.waited)
                server.inflight += 1
                if pick.key:
                    server.loaded = pick.key
                pick.server = server
                self._changed.notify_all()  # a job waiting for this model may pipeline behind it now
                return None
            blocked = None if able else self.blocker(pick.workflow, pick.values)
            if blocked != shown:
                return blocked
            if blocked is None:
                await self._changed.wait()
                continue
            if pick.blocked_left <= 0:
                raise self._no_backend(pick.workflow, pick.values)
            began = loop.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pick.blocked_left):
                    await self._changed.wait()
            pick.blocked_left -= loop.time() - began

    async def _affinity_wait(self, key: ModelKey, left: float) -> None:
        """Under the lock: wait (at most ``left``) for a change, counted as a job waiting for ``key``,
        which frees a slot for the worker to take another job that the idle GPU may run."""
        waiting = self.affinity.waiting
        waiting[key] += 1
        self._changed.notify_all()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._changed.wait()
        finally:
            waiting[key] -= 1
            if waiting[key] <= 0:
                del waiting[key]

    async def occupy(self, server: ComfyServer) -> None:
        """Count a prompt already in the server (a recovered job) as in flight, even past capacity."""
        async with self._changed:
            server.inflight += 1

    async def release(self, server: ComfyServer) -> None:
        async with self._changed:
            server.inflight = max(0, server.inflight - 1)
            self._changed.notify_all()


__all__ = ["ComfyServer", "Lack", "NoBackend", "ServerPool", "runnable_problems"]
