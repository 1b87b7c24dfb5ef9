"""Turning one prompt's ComfyUI events into the gateway's ``Progress`` events.

Done/total counts nodes of the rendered graph: cached nodes count as done at once, a node is done when
``progress_state`` says ``finished`` (or the next node starts, for servers without ``progress_state``).
The overall percent weighs each node by its work: a sampler by its steps (``inputs.steps``, or the
``max`` it reports), any other node as one step, so the bar moves evenly through sampling instead of
sitting at 60 % and jumping. The label is the manifest's step label for the node, else its class type.
The ETA comes from recent run times of the workflow when known (until the job outlives them), else from
the pace so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from comfy import events as ce
from comfy.workflows import Workflow
from core.logs import get_logger
from gateway.models import Progress

log = get_logger("gateway")


class ProgressModel:
    """Follows one prompt; ``feed`` returns a ``Progress`` when something visible changed."""

    def __init__(
        self,
        workflow: Workflow,
        graph: Mapping[str, Mapping[str, Any]],
        *,
        job_id: str,
        request_id: str,
        recent_ms: Sequence[int] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workflow = workflow
        self._graph = graph
        self._job_id = job_id
        self._request_id = request_id
        self._expected_s = sum(recent_ms) / len(recent_ms) / 1000 if recent_ms else None
        self._clock = clock
        self._started: float | None = None
        self.done: set[str] = set()
        self.current: str | None = None
        self.last: str | None = None  # the node most recently started, finished or served from cache
        self._steps: dict[str, float] = {}  # node -> the step count it reported (progress max)
        self.value = 0.0
        self.max = 0.0
        self.activity: str | None = None
        self._node_t0: dict[str, float] = {}  # node -> when it started; popped when its end is logged

    @property
    def total(self) -> int:
        return max(1, len(self._graph))

    def start(self) -> None:
        """Execution began on the server (``execution_start``): the ETA clock starts now."""
        if self._started is None:
            self._started = self._clock()

    def feed(self, event: ce.ComfyEvent) -> Progress | None:
        match event:
            case ce.ExecutionStart():
                self.start()
                return None
            case ce.ExecutionCached(nodes=nodes):
                cached = [n for n in nodes if n in self._graph]
                if not cached:
                    return None  # ComfyUI always sends it, usually empty: nothing to show yet
                self.done.update(cached)
                self.last = cached[-1]
            case ce.ProgressState(nodes=nodes):
                for node_id, state in nodes.items():
                    key = state.display_node_id or node_id
                    if state.state == "finished" and key in self._graph:
                        self._node_finished(key)
                        self.done.add(key)
                        self.last = key
                    elif state.state == "running":
                        self._move_to(key)
                        self.value, self.max = state.value, state.max
                        self.activity = state.activity
            case ce.Executing(node=node) if node is not None:
                self._move_to(event.display_node or node)
            case ce.Progress(node=node, value=value, max=maximum):
                if node is not None:
                    self._move_to(node)
                    if maximum > 1:
                        self._steps[node] = maximum
                self.value, self.max = value, maximum
                self.activity = None  # steps come: the node is past its loading
            case ce.Executed(node=node):
                if node in self._graph:
                    self._node_finished(node)
                    self.done.add(node)
                    self.last = node
            case _:
                return None
        if self.current is None and self.last is None:
            return None  # a step with no name would show the user an empty line
        return self.snapshot()

    def _node_fields(self, node: str) -> dict[str, Any]:
        spec = self._graph.get(node, {})
        return {
            "node_id": node,
            "class_type": spec.get("class_type"),
            "node_label": self.label(node),
            "done_nodes": len(self.done),
            "total_nodes": self.total,
        }

    def _node_finished(self, node: str) -> None:
        """One ``node_finished`` line per node, with how long it ran (not one per sampler step)."""
        t0 = self._node_t0.pop(node, None)
        if t0 is not None and node not in self.done:
            duration_ms = round((self._clock() - t0) * 1000)
            log.info("node_finished", duration_ms=duration_ms, **self._node_fields(node))

    def _move_to(self, node: str) -> None:
        if self.current is not None and self.current != node and self.current in self._graph:
            self._node_finished(self.current)
            self.done.add(self.current)  # no progress_state on older servers: the next node means done
        if self.current != node and node not in self._node_t0 and node not in self.done:
            self._node_t0[node] = self._clock()
            log.info("node_started", **self._node_fields(node))
        if self.current != node:
            self.value = self.max = 0.0
            self.activity = None
        self.current = node
        self.last = node

    def label(self, node: str | None) -> str:
        if node is None:
            return ""
        found = self._workflow.label(node)
        if found:
            return found
        spec = self._graph.get(node)
        return str(spec.get("class_type", node)) if spec is not None else node

    def weight(self, node: str) -> float:
        """A node's share of the work, in sampler steps (every other node counts as one step)."""
        if node in self._steps:
            return self._steps[node]
        steps = self._graph.get(node, {}).get("inputs", {}).get("steps")
        return float(steps) if isinstance(steps, int | float) and steps > 1 else 1.0

    @property
    def percent(self) -> float:
        total = sum(self.weight(n) for n in self._graph) or 1.0
        done = sum(self.weight(n) for n in self.done if n in self._graph)
        if self.current is not None and self.current not in self.done and self.max > 0:
            done += self.weight(self.current) * min(1.0, self.value / self.max)
        return min(99.0, 100.0 * done / total)

    def eta_s(self) -> float | None:
        if self._started is None:
            return self._expected_s
        elapsed = self._clock() - self._started
        if self._expected_s is not None and elapsed < self._expected_s:
            return self._expected_s - elapsed
        # No history, or slower than usual: from the pace so far (never "0 s left" while it still runs).
        pct = self.percent
        if pct < 5:
            return None
        return max(0.0, elapsed * (100 - pct) / pct)

    def snapshot(self) -> Progress:
        eta = self.eta_s()
        return Progress(
            job_id=self._job_id,
            request_id=self._request_id,
            # A fully cached re-run never names a running node: show the step last seen instead.
            node_label=self.label(self.current or self.last),
            done_nodes=min(len(self.done), self.total),
            total_nodes=self.total,
            value=int(self.value),
            max=int(self.max),
            percent=round(self.percent, 1),
            eta_s=None if eta is None else round(eta, 1),
            activity=self.activity,
        )


__all__ = ["ProgressModel"]
