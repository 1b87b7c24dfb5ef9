"""Model-affinity routing: which checkpoint (and LoRAs) each server last loaded, and the choice it implies.

On a real GPU a checkpoint change costs 5–30 s of load time. The pool remembers, per server, the models
of the last job it handed that server (:func:`model_key`: the rendered graph's checkpoints and LoRAs, from
the job's validated values or the graph's fixed loader inputs); with ComfyUI's pipelining that is what the
server holds once its queue drains. A job then prefers a free server that already has its model; when
none does but a *busy* one does, it may wait up to ``wait_s`` for that one (:meth:`Affinity.may_wait`)
rather than swap models on an idle GPU. While it waits it holds no slot, so the worker keeps taking
jobs and an idle GPU takes the ones it can run (see ``ServerPool.free_slots``).

The memory is per process: several workers sharing servers each know only what *they* ran there, so a
server another process swapped is a miss that looks like a hit here (one extra load, never a wrong
result).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from comfy.workflow_check import model_inputs
from comfy.workflows import Workflow
from core.logs import get_logger

if TYPE_CHECKING:
    from gateway.servers import ComfyServer

#: model folders whose change costs a load worth routing around
AFFINITY_FOLDERS = ("checkpoints", "loras")
#: (folder, file) pairs of a job's checkpoints and LoRAs, sorted; () when the graph loads none
ModelKey = tuple[tuple[str, str], ...]
Outcome = Literal["hit", "miss", "waited", "none"]
log = get_logger("gateway")


def model_key(workflow: Workflow, values: Mapping[str, Any] | None) -> ModelKey:
    """The checkpoints and LoRAs the rendered graph loads (model params' values or defaults, and literal
    loader inputs)."""
    uses = model_inputs(workflow, values)
    return tuple(sorted({(u.folder, u.name) for u in uses if u.folder in AFFINITY_FOLDERS}))


def checkpoints(key: ModelKey | None) -> ModelKey:
    return tuple(m for m in key or () if m[0] == "checkpoints")


def match(server: ComfyServer, key: ModelKey) -> int:
    """2: the server has the job's exact models; 1: its checkpoint(s), other LoRAs; 0: a swap."""
    if not key or server.loaded is None:
        return 0
    if server.loaded == key:
        return 2
    ckpts = checkpoints(key)
    return 1 if ckpts and checkpoints(server.loaded) == ckpts else 0


@dataclass
class Affinity:
    """The pool's affinity policy and the jobs waiting on it (``enabled=False``: plain least busy)."""

    wait_s: float = 3.0
    enabled: bool = True
    #: model keys of the jobs now waiting in ``acquire`` (a swap prefers a server none of them wants)
    waiting: Counter[ModelKey] = field(default_factory=Counter)

    def key(self, workflow: Workflow, values: Mapping[str, Any] | None) -> ModelKey:
        return model_key(workflow, values) if self.enabled else ()

    def choose(self, free: Sequence[ComfyServer], key: ModelKey) -> ComfyServer:
        """The best free server: the most of the job's models loaded (a pipeline slot behind a prompt of
        the same model beats a load), then one that never loaded a model (a first load swaps nothing out),
        then one whose models no waiting job wants, then the least busy."""

        def rank(s: ComfyServer) -> tuple[int, bool, bool, float, int]:
            wanted = s.loaded is not None and self.waiting[s.loaded] > 0
            return (-match(s, key), s.loaded is not None, wanted, s.load / s.capacity, s.inflight)

        return min(free, key=rank)

    def may_wait(self, chosen: ComfyServer, able: Sequence[ComfyServer], key: ModelKey) -> bool:
        """Worth waiting for a busy server: ``chosen`` (the best free one) would swap out a loaded model
        while a busy server that can run the job has the job's (its slot frees when its running prompt
        ends). A server that never loaded a model is taken at once: its first load swaps nothing out."""
        if not self.enabled or self.wait_s <= 0 or not key or chosen.loaded is None or match(chosen, key):
            return False
        return any(s.inflight >= s.capacity and match(s, key) > 0 for s in able)

    @staticmethod
    def outcome(server: ComfyServer, key: ModelKey, waited: bool) -> Outcome:
        if not key:
            return "none"
        if match(server, key) == 0:
            return "miss"
        return "waited" if waited else "hit"


@dataclass(eq=False)
class Pick:
    """One ``acquire`` in progress: what it asks for, how long it may still wait, what it found."""

    workflow: Workflow
    values: Mapping[str, Any] | None
    avoid: Collection[str]
    key: ModelKey
    affinity_until: float  # loop time after which it stops waiting for a busy server with its model
    blocked_left: float  # seconds it may still wait while no healthy server can run it
    able: list[ComfyServer] = field(default_factory=list)
    waited: bool = False
    outcome: Outcome = "none"
    server: ComfyServer | None = None

    def log_choice(self, server: ComfyServer, servers: int) -> None:
        """``server_chosen``: where the job goes and why; ``affinity`` hit|miss|waited (none: no model)."""
        if len(self.able) == 1:
            reason = "only_capable" if servers > 1 else "only_server"
        elif self.avoid and server.name not in self.avoid:
            reason = "retry_elsewhere"
        elif self.outcome in ("hit", "waited"):
            reason = "model_loaded"
        else:
            reason = "least_busy"
        log.info(
            "server_chosen",
            backend=server.name,
            reason=reason,
            affinity=self.outcome,
            model=[name for _, name in self.key],
            load=server.load,
            capable=len(self.able),
        )


__all__ = ["AFFINITY_FOLDERS", "Affinity", "ModelKey", "Outcome", "Pick", "match", "model_key"]
