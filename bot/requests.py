"""What the user sent, turned into a draft job or a problem to show: the rules every chat front end
shares, written once.

A front end translates its platform's objects (an aiogram ``Message``, a Discord interaction's options)
into plain values, calls :func:`draft_job` (a command) or :func:`follow_up` (a button under a result),
and renders what comes back: a :class:`Draft` to submit, or a :class:`Problem` to say. Nothing here
talks to a platform or to the gateway. What the workflow's manifest refuses (bounds, options, the
prompt filter) stays with ``Gateway.check``/``submit``, the single source of refusals; the problems here
are the ones that decide *which* job the user meant: an unknown workflow, a missing prompt, a missing
picture, a button whose job is gone.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from comfy.workflows import Workflow, WorkflowRegistry
from gateway.models import ImageRef
from gateway.records import JobRecord

__all__ = [
    "FOLLOW_UPS",
    "VARIATIONS",
    "JobAction",
    "Draft",
    "FollowUpKind",
    "Problem",
    "choose_workflow",
    "draft_job",
    "follow_up",
    "upscale_workflow",
]

#: pictures the 🎲 Variations button asks for (at most the workflow's own ``batch`` maximum)
VARIATIONS = 4

FollowUpKind = Literal["reroll", "variations", "upscale"]


class JobAction(enum.StrEnum):
    """A button under a job message: the same letters in Telegram's callback data and Discord's custom
    ids."""

    CANCEL = "c"
    REROLL = "r"
    VARIATIONS = "v"
    UPSCALE = "u"
    INFO = "i"
    AGAIN = "a"  # under a job whose record was lost (Telegram): submit its request again


#: the buttons that start a job, and which follow-up they are
FOLLOW_UPS: dict[JobAction, FollowUpKind] = {
    JobAction.REROLL: "reroll",
    JobAction.VARIATIONS: "variations",
    JobAction.UPSCALE: "upscale",
}


@dataclass(frozen=True)
class Draft:
    """A job to submit: its workflow, its parameters, and where a picture goes."""

    workflow: str
    params: dict[str, Any]
    #: the workflow's image input an attached picture fills (None: it takes none)
    image_input: str | None = None
    #: images already stored (a button's job reuses its parent's)
    inputs: dict[str, ImageRef] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    """Why no job: ``field`` and ``reason`` as the ``validation_error`` log line names them."""

    field: Literal["workflow", "prompt", "image", "job"]
    reason: Literal["unknown", "required", "gone", "no_upscale"]
    #: the workflow the problem is about (unknown: the name the user gave, if any)
    workflow: str | None = None


def _image_workflow(registry: WorkflowRegistry, preferred: str | None) -> str | None:
    """For a picture without a named workflow: the user's default if it takes one, else img2img-like."""
    if preferred is not None and registry.get(preferred).images:
        return preferred
    if "img2img" in registry:
        return "img2img"
    return next((wf.name for wf in registry if wf.kind == "img2img"), None) or next(
        (wf.name for wf in registry if wf.images), None
    )


def choose_workflow(
    registry: WorkflowRegistry,
    default: str | None,
    settings: Mapping[str, Any],
    *,
    named: str | None,
    with_image: bool,
) -> str | None:
    """The workflow a request means: the one it names; else, with a picture, the user's default when it
    takes one (img2img-like otherwise); else the user's default when it needs no picture, else the
    bot's. A name is compared as typed, lowercased; an unknown one is returned as it is."""
    if named:
        return named.strip().lower()
    saved = settings.get("workflow")
    preferred = saved if isinstance(saved, str) and saved in registry else None
    if with_image:
        return _image_workflow(registry, preferred)
    # A default that needs a picture (img2img) is for pictures; a text prompt gets the text default.
    if preferred is not None and not registry.get(preferred).images:
        return preferred
    return default


def _prompt_required(wf: Workflow) -> bool:
    if not wf.prompt_param:
        return False
    return bool(getattr(wf.params.get(wf.prompt_param), "required", False))


def draft_job(
    registry: WorkflowRegistry,
    default: str | None,
    settings: Mapping[str, Any],
    *,
    named: str | None,
    prompt: str,
    params: Mapping[str, Any],
    with_image: bool,
) -> Draft | Problem:
    """A command's job: which workflow, with which parameters (the user's saved aspect ratio where the
    request names none), or the problem that stops it before the gateway sees it."""
    name = choose_workflow(registry, default, settings, named=named, with_image=with_image)
    if name is None or name not in registry:
        return Problem("workflow", "unknown", workflow=name)
    wf = registry.get(name)
    out: dict[str, Any] = {k: v for k, v in params.items() if v is not None}
    if out.get("batch") == 1 and "batch" not in wf.params:
        del out["batch"]  # one picture per job is what it makes anyway
    if wf.prompt_param and prompt:
        out[wf.prompt_param] = prompt
    elif not prompt and _prompt_required(wf):
        return Problem("prompt", "required", workflow=name)
    saved_ar = settings.get("ar")
    if "ar" not in out and isinstance(saved_ar, str) and "ar" in wf.params:
        out["ar"] = saved_ar
    if not with_image and any(spec.required for spec in wf.images.values()):
        return Problem("image", "required", workflow=name)
    return Draft(name, out, image_input=next(iter(wf.images), None) if with_image else None)


def upscale_workflow(registry: WorkflowRegistry) -> str | None:
    """The workflow the ⬆️ button runs: one named ``upscale``, else the first of kind ``upscale``."""
    if "upscale" in registry:
        return "upscale"
    return next((wf.name for wf in registry if wf.kind == "upscale"), None)


def follow_up(
    registry: WorkflowRegistry, record: JobRecord, kind: FollowUpKind, idx: int = 0
) -> Draft | Problem:
    """The job a button under ``record``'s result starts: 🔁 Reroll (the same request, a new seed), 🎲
    Variations (that, several at once) or ⬆️ Upscale (output ``idx`` through the upscale workflow)."""
    if kind == "upscale":
        name = upscale_workflow(registry)
        images = list(record.images or [])
        if name is None:
            return Problem("job", "no_upscale")
        if not 0 <= idx < len(images) or not registry.get(name).images:
            return Problem("job", "gone", workflow=name)
        return Draft(name, {}, inputs={next(iter(registry.get(name).images)): images[idx]})
    req = record.request
    if req.workflow not in registry:
        return Problem("job", "gone", workflow=req.workflow)
    wf = registry.get(req.workflow)
    params = dict(req.params)
    params.pop(wf.seed_param or "seed", None)
    if kind == "variations" and "batch" in wf.params:
        top = getattr(wf.params["batch"], "max", None) or VARIATIONS
        params["batch"] = max(1, min(VARIATIONS, int(top)))
    return Draft(req.workflow, params, inputs=dict(req.inputs))
