"""One ComfyUI server as the pool sees it (its client, capacity, health, cached ``/object_info``), and
what a workflow would lack on it (``Lack``, ``runnable_problems``); ``NoBackend`` when no server can run
a job. The pool that schedules onto them is :mod:`gateway.servers`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from comfy import ComfyClient
from comfy.workflow_check import combo_options, model_inputs
from comfy.workflow_params import ChoiceParam, parse_target
from comfy.workflows import Workflow
from gateway.affinity import ModelKey


class NoBackend(Exception):
    """No healthy server can run this workflow (``problems`` says why, per server)."""

    def __init__(self, problems: Mapping[str, Sequence[str]]) -> None:
        self.problems = {k: list(v) for k, v in problems.items()}
        text = "; ".join(f"{name}: {', '.join(p) or 'down'}" for name, p in self.problems.items())
        super().__init__(text or "no ComfyUI server configured")


@dataclass(frozen=True)
class Lack:
    """One thing a server lacks to run a job: a ``node`` type, a ``model`` file, a choice's value
    (``option``, ``name`` is ``param=value``), or its ``/object_info`` (``unknown``)."""

    kind: Literal["node", "model", "option", "unknown"]
    name: str
    text: str  # for logs and admins: "model x.safetensors missing (checkpoints)"

    def __str__(self) -> str:
        return self.text


_UNKNOWN = Lack("unknown", "", "object_info unknown")


@dataclass(eq=False)
class ComfyServer:
    """One ComfyUI server as the scheduler sees it."""

    client: ComfyClient
    capacity: int = 2
    inflight: int = 0
    healthy: bool = False
    object_info: Mapping[str, Any] | None = None
    queue_remaining: int = 0  # ComfyUI's own count at the last health check (other processes' jobs too)
    down_reason: str = "not checked yet"
    object_info_at: float = 0.0  # loop time of the last /object_info
    # /object_info is read on change, not on a timer (it may start an asset scan on current ComfyUI):
    info_stale: bool = False  # a prompt was refused for a node type or model: re-read at the next check
    info_connects: int = -1  # the client's websocket connection count at the last read (a reconnect
    # may be a restarted server with other nodes or models)
    down_since: float | None = None  # loop time it was marked down
    loaded: ModelKey | None = None  # checkpoints and LoRAs of the last job we gave it (gateway/affinity.py)
    _problems: dict[str, list[Lack]] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.client.name

    @property
    def load(self) -> int:
        """How busy it is: our prompts in flight, or ComfyUI's own queue if others fill it more."""
        seen = self.client.last_queue_remaining
        return max(self.inflight, self.queue_remaining if seen is None else seen)

    def down_for(self) -> float:
        """Seconds since it was marked down (0 while healthy)."""
        if self.down_since is None:
            return 0.0
        return asyncio.get_running_loop().time() - self.down_since

    def problems(self, workflow: Workflow, values: Mapping[str, Any] | None) -> list[Lack]:
        """Why this server cannot run the workflow with these values (cached per workflow and models)."""
        if self.object_info is None:
            return [_UNKNOWN]
        key = workflow.name + repr(sorted((values or {}).items(), key=lambda kv: kv[0]))
        found = self._problems.get(key)
        if found is None:
            found = self._problems[key] = runnable_problems(workflow, self.object_info, values)
            if len(self._problems) > 1000:  # values include prompts: keep the cache bounded
                self._problems.clear()
        return found


def runnable_problems(
    workflow: Workflow, object_info: Mapping[str, Any], values: Mapping[str, Any] | None
) -> list[Lack]:
    """Why this job cannot run on a server with this ``object_info``: missing node types, models, or the
    chosen value of a choice param. (``comfybot doctor``'s ``check_object_info`` is stricter: it also
    flags options nobody chose.)"""
    problems = [
        Lack("node", t, f"node type {t} missing")
        for t in sorted(workflow.required_nodes() - set(object_info))
    ]
    for use in model_inputs(workflow, values):
        options = combo_options(object_info, use.class_type, use.input_name)
        if options is not None and use.name not in options:
            problems.append(Lack("model", use.name, f"model {use.name} missing ({use.folder})"))
    for name, param in workflow.params.items():
        chosen = (values or {}).get(name)
        if not isinstance(param, ChoiceParam) or chosen is None:
            continue
        for target in param.targets:
            node_id, input_name = parse_target(target)
            options = combo_options(object_info, workflow.graph[node_id]["class_type"], input_name)
            if options is not None and chosen not in options:
                problems.append(Lack("option", f"{name}={chosen}", f"{name}={chosen} not offered"))
    return problems


__all__ = ["ComfyServer", "Lack", "NoBackend", "runnable_problems"]
