"""Helpers every chat front end shares: who may use the bot, the prompt of a request, the localized answer
to a refusal, the workflow behind the ⬆️ button, the /workflows, /history and /stats answers. Front ends
differ in how they send; what they say is decided here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from bot.render import JobView, Renderer, format_duration, shorten, text_length, truncate
from comfy.workflow_params import SEED_MAX
from comfy.workflows import Workflow, WorkflowRegistry
from gateway.errors import AccessDenied
from gateway.models import FailureCode, JobRequest, JobState, Queued, short_id
from gateway.records import JobRecord
from gateway.service import Accepted, Gateway, QueueInfo, Refused

__all__ = [
    "HISTORY_SIZE",
    "FrontEnd",
    "History",
    "info_text",
    "may_use",
    "param_bounds",
    "prompt_of",
    "queue_text",
    "refusal_text",
    "stats_text",
    "user_history",
    "workflow_description",
    "workflows_text",
]

_INFO_PARAMS = ("steps", "hires_steps", "cfg", "ar", "batch", "denoise", "sampler")
#: how long /workflows lets a description be, tried in turn until the list fits one message
_DESCRIPTION_LENGTHS = (1000, 120, 80, 50, 30)

#: jobs /history lists, newest first
HISTORY_SIZE = 10
#: how a job's state shows in /history
_STATE_MARK: dict[JobState, str] = {
    JobState.QUEUED: "🕒",
    JobState.SUBMITTED: "🕒",
    JobState.RUNNING: "⏳",
    JobState.SUCCEEDED: "✅",
    JobState.FAILED: "❌",
    JobState.CANCELLED: "🚫",
    JobState.TIMED_OUT: "⌛",
}


class FrontEnd(Protocol):
    """What these helpers need of a front end's context (Telegram's ``BotContext``, Discord's)."""

    @property
    def registry(self) -> WorkflowRegistry: ...

    @property
    def renderer(self) -> Renderer: ...

    @property
    def gateway(self) -> Gateway: ...


def may_use(ctx: FrontEnd, user_id: int | str, chat_id: int | str | None) -> bool:
    """The gateway's access policy lets this user use the bot in this chat (it logs ``access_denied``
    if not). Asked before every command and button, on every platform."""
    try:
        ctx.gateway.access.check(user_id, chat_id)
    except AccessDenied:
        return False
    return True


def workflow_description(ctx: FrontEnd, locale: str, wf: Workflow) -> str:
    """What ``wf`` does in the user's language: the catalogue's ``wf.<name>``, else the manifest's own
    (English) description — an operator's extra workflow has no catalogue entry — else its kind."""
    key = f"wf.{wf.name}"
    if ctx.renderer.i18n.has(locale, key):
        return ctx.renderer.t(locale, key)
    return wf.description or wf.kind


def workflows_text(
    ctx: FrontEnd, locale: str, current: str | None, limit: int, *, header: str = "workflows.header"
) -> str:
    """The /workflows answer: ``header``, then ``• name — description`` per workflow, the user's default
    (``current``) marked, within the platform's message ``limit``. When the full descriptions do not fit,
    they are shortened (at a word, "…") so that every name still shows; only past that the list ends with
    "…and N more". Each platform has its own header: they say differently how to pick one."""
    if not len(ctx.registry):
        return ctx.renderer.t(locale, "workflows.empty")
    for about in _DESCRIPTION_LENGTHS:
        lines = [ctx.renderer.t(locale, header)]
        for name in ctx.registry.names():
            description = shorten(workflow_description(ctx, locale, ctx.registry.get(name)), about)
            line = ctx.renderer.t(locale, "workflows.line", name=name, description=description)
            if name == current:
                line += " " + ctx.renderer.t(locale, "workflows.default_mark")
            lines.append(line)
        if text_length("\n".join(lines)) <= limit:
            break
    return ctx.renderer.fit_list(locale, lines, limit)


def prompt_of(workflow: Workflow | None, params: dict[str, Any]) -> str:
    """The prompt text of a request, for captions and history (empty when the workflow has none)."""
    name = workflow.prompt_param if workflow is not None else "prompt"
    value = params.get(name or "prompt", "")
    return value if isinstance(value, str) else ""


def first_view(
    registry: WorkflowRegistry, workflow: str, params: dict[str, Any], request_id: str, accepted: Accepted
) -> tuple[JobView, Queued]:
    """What a just-accepted job's message shows first: its view (prompt, workflow, request) and the
    ``Queued`` state its ``Accepted`` answer stands for."""
    wf = registry.get(workflow) if workflow in registry else None
    view = JobView(prompt=prompt_of(wf, params), workflow=workflow, request_id=request_id)
    queued = Queued(
        job_id=accepted.job_id,
        request_id=request_id,
        position=max(1, accepted.position),
        depth=accepted.depth,
        eta_s=accepted.eta_s,
        blocked=accepted.blocked,
    )
    return view, queued


def param_bounds(
    registry: WorkflowRegistry, workflow: str, field: str, reason: str, value: Any
) -> dict[str, Any]:
    """What the manifest allows for ``field`` — the range a refusal message quotes."""
    bounds: dict[str, Any] = {}
    if workflow in registry:
        spec = registry.get(workflow).params.get(field)
        for name in ("min", "max", "max_length", "options"):
            got = getattr(spec, name, None)
            if got is not None:
                bounds[name] = got
        max_ratio = getattr(spec, "max_ratio", None)
        if max_ratio is not None:
            bounds["min_ratio"], bounds["max_ratio"] = f"1:{max_ratio:g}", f"{max_ratio:g}:1"
        if getattr(spec, "type", None) == "seed":  # its bounds are ComfyUI's, not the manifest's
            bounds.setdefault("min", 0)
            bounds.setdefault("max", SEED_MAX)
    if isinstance(value, str):
        bounds["length"] = len(value)
    return bounds


def refusal_text(ctx: FrontEnd, locale: str, refused: Refused, req: JobRequest) -> str:
    """Localized text for a refusal: names the field and the allowed range when it can."""
    if refused.code is FailureCode.UNKNOWN_WORKFLOW:
        return ctx.renderer.t(
            locale, "error.unknown_workflow_named", name=req.workflow, names=", ".join(ctx.registry.names())
        )
    if refused.code is FailureCode.INVALID_INPUT and refused.field and refused.reason:
        value = req.params.get(refused.field)
        bounds = param_bounds(ctx.registry, req.workflow, refused.field, refused.reason, value)
        return ctx.renderer.param_error(locale, refused.field, refused.reason, bounds)
    return ctx.renderer.failure(
        locale, refused.code, request_id=req.request_id, retry_after_s=refused.retry_after_s
    )


def queue_text(ctx: FrontEnd, locale: str, info: QueueInfo, limit: int) -> str:
    """The /queue answer: how many jobs wait, the user's own (position, or running), why one of them waits
    when no server can run it, and how many of the servers are down, within the message ``limit``."""
    t = ctx.renderer.t
    if not info.mine:
        lines = [t(locale, "queue.empty", depth=info.depth)]
    else:
        lines = [t(locale, "queue.header", depth=info.depth)]
        for job_id, position in info.mine:
            blocked = info.blocked.get(job_id)
            if position:
                lines.append(t(locale, "queue.line", position=position))
            else:  # taken by a worker: running, or next in line while it waits for a server
                lines.append(t(locale, "queue.next" if blocked else "queue.running"))
            if blocked is not None:
                lines.append(ctx.renderer.blocked(locale, blocked))
    if info.servers_down:
        lines.append(t(locale, "queue.servers_down", down=info.servers_down, total=info.servers))
    return ctx.renderer.fit_list(locale, lines, limit)


def _number(value: Any) -> Any:
    """``7.0`` → ``7``, ``0.75`` stays: Info has little room (a Telegram toast is 200 characters)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def info_text(ctx: FrontEnd, locale: str, record: JobRecord, limit: int, *, admin: bool = False) -> str:
    """The ℹ️ Info answer for a job: short request id, workflow, seed, key parameters, server, times.

    The server is an internal address, so only ``admin`` readers see it."""
    req = record.request
    values: dict[str, Any] = dict(record.values or req.params)
    shown = " ".join(
        f"{k}={_number(values[k])}" for k in _INFO_PARAMS if k in values and values[k] not in (None, "")
    )
    text = ctx.renderer.t(
        locale,
        "info.text",
        rid=short_id(req.request_id),
        workflow=req.workflow,
        seed="–" if record.seed is None else record.seed,
        params=shown or "–",
        backend=(record.backend or "–") if admin else "–",
        wait=format_duration(record.wait_ms / 1000),
        run=format_duration(record.run_ms / 1000),
    )
    return truncate(text, limit)


@dataclass(frozen=True)
class History:
    """The /history answer: its text, and ``(n, job_id)`` of each listed job a 🔁 button may run again
    (``n`` is its number in the text; a job without a seed, like an upscale, has no reroll)."""

    text: str
    rerolls: list[tuple[int, str]]


async def user_history(ctx: FrontEnd, locale: str, user_id: str, limit: int) -> History:
    """The user's :data:`HISTORY_SIZE` latest jobs, newest first: state mark, prompt (or what the workflow
    does), workflow; within the message ``limit``, with a 🔁 only for the jobs shown."""
    records = await ctx.gateway.recent_jobs(user_id, HISTORY_SIZE)
    if not records:
        return History(ctx.renderer.t(locale, "history.empty"), [])
    lines = [ctx.renderer.t(locale, "history.header")]
    rerolls: list[tuple[int, str]] = []
    for n, record in enumerate(records, start=1):
        req = record.request
        wf = ctx.registry.get(req.workflow) if req.workflow in ctx.registry else None
        prompt = ctx.renderer.title(locale, prompt_of(wf, req.params), req.workflow, limit=60)
        mark = _STATE_MARK.get(JobState(record.state), "•")
        lines.append(
            ctx.renderer.t(locale, "history.line", n=n, state=mark, prompt=prompt, workflow=req.workflow)
        )
        if wf is not None and wf.seed_param:  # a reroll is a new seed: none for an upscale
            rerolls.append((n, record.job_id))
    shown = ctx.renderer.fit_count(locale, lines, limit)  # the header is line 0, job n is line n
    return History(ctx.renderer.fit_list(locale, lines, limit), [(n, j) for n, j in rerolls if n < shown])


async def stats_text(ctx: FrontEnd, locale: str, limit: int) -> str:
    """The admins' /stats (``Gateway.stats``): the queue, the last 24 hours' outcomes and failure codes,
    the mean run time per workflow, and this process's ComfyUI servers, within the message ``limit``.
    The caller checks the admin."""
    stats = await ctx.gateway.stats()
    t = ctx.renderer.t
    count = stats.outcomes.get
    runs = ", ".join(
        t(locale, "stats.run", name=name, seconds=f"{secs:g}") for name, secs in stats.mean_run_s.items()
    )
    servers = "\n".join(
        t(locale, "stats.server_up", name=s.name, inflight=s.inflight, capacity=s.capacity)
        if s.healthy
        else t(locale, "stats.server_down", name=s.name, reason=s.down_reason or "?")
        for s in stats.servers
    )
    text = t(
        locale,
        "stats.text",
        depth=stats.depth,
        succeeded=count("succeeded", 0),
        failed=count("failed", 0),
        cancelled=count("cancelled", 0),
        timed_out=count("timed_out", 0),
        runs=runs or t(locale, "stats.no_runs"),
        servers=servers or t(locale, "stats.no_servers"),
    )
    codes = sorted(
        ((n, k.split(":", 1)[1]) for k, n in stats.outcomes.items() if k.startswith("failed:")), reverse=True
    )
    if codes:
        text += "\n" + t(locale, "stats.failures", codes=", ".join(f"{code} × {n}" for n, code in codes))
    if stats.quota_usage:  # the heaviest users first
        users = sorted(stats.quota_usage.items(), key=lambda u: (-u[1].get("day", 0), -u[1].get("hour", 0)))
        text += "\n" + t(locale, "stats.quota")
        for user, used in users:
            text += "\n" + t(
                locale, "stats.quota_user", user=user, hour=used.get("hour", 0), day=used.get("day", 0)
            )
    return ctx.renderer.fit_list(locale, text.split("\n"), limit)
