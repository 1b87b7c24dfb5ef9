"""``bot.requests``: the rules both chat front ends share, on the shipped workflows (and copies of them).

Both platforms' handlers call these functions; the end-to-end tests in tests/bot and tests/bot/discord
show the same outcomes through the real clients. These pin the rules where the two copies had drifted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bot.requests import VARIATIONS, Draft, Problem, choose_workflow, draft_job, follow_up
from comfy.workflow_params import IntParam
from comfy.workflows import WorkflowRegistry, load_workflows
from gateway.models import ImageRef, JobRequest
from gateway.records import JobRecord
from workflows import SHIPPED_DIR

PICTURE = ImageRef(path="inputs/a.png", width=64, height=64, bytes=100)


def _record(workflow: str, params: dict[str, object], images: list[ImageRef] | None = None) -> JobRecord:
    req = JobRequest(platform="telegram", user_id="1", chat_id="1", workflow=workflow, params=params)
    return JobRecord(request=req, images=images or [])


def test_a_text_prompt_never_gets_a_saved_default_that_needs_a_picture(registry: WorkflowRegistry) -> None:
    """Discord used to run a saved img2img default for a text-only /generate (and then refuse it)."""
    saved = {"workflow": "img2img"}
    assert choose_workflow(registry, "txt2img", saved, named=None, with_image=False) == "txt2img"
    assert choose_workflow(registry, "txt2img", saved, named=None, with_image=True) == "img2img"
    assert (
        choose_workflow(registry, "txt2img", {"workflow": "hires"}, named=None, with_image=False) == "hires"
    )
    # a picture with a text-only default: the img2img workflow
    assert (
        choose_workflow(registry, "txt2img", {"workflow": "hires"}, named=None, with_image=True) == "img2img"
    )
    assert choose_workflow(registry, "txt2img", {}, named=" TXT2IMG ", with_image=False) == "txt2img"
    assert (
        choose_workflow(registry, "txt2img", {"workflow": "gone"}, named=None, with_image=False) == "txt2img"
    )


def test_draft_applies_the_saved_aspect_and_drops_a_batch_of_one_it_cannot_take(
    registry: WorkflowRegistry,
) -> None:
    got = draft_job(
        registry,
        "txt2img",
        {"ar": "16:9"},
        named=None,
        prompt="a fox",
        params={"seed": 3, "steps": None},
        with_image=False,
    )
    assert got == Draft("txt2img", {"seed": 3, "prompt": "a fox", "ar": "16:9"})
    named = draft_job(
        registry,
        "txt2img",
        {"ar": "16:9"},
        named=None,
        prompt="a fox",
        params={"ar": "1:1"},
        with_image=False,
    )
    assert isinstance(named, Draft) and named.params["ar"] == "1:1", "the request's own value wins"
    assert "batch" not in registry.get("upscale").params
    up = draft_job(registry, None, {}, named="upscale", prompt="", params={"batch": 1}, with_image=True)
    assert isinstance(up, Draft) and "batch" not in up.params and up.image_input == "image"


def test_problems_name_the_field_and_the_workflow(registry: WorkflowRegistry) -> None:
    assert draft_job(
        registry, "txt2img", {}, named="nope", prompt="x", params={}, with_image=False
    ) == Problem("workflow", "unknown", workflow="nope")
    assert draft_job(registry, "txt2img", {}, named=None, prompt="", params={}, with_image=False) == Problem(
        "prompt", "required", workflow="txt2img"
    )
    assert draft_job(registry, None, {}, named="img2img", prompt="x", params={}, with_image=False) == Problem(
        "image", "required", workflow="img2img"
    )
    assert draft_job(registry, None, {}, named=None, prompt="x", params={}, with_image=False) == Problem(
        "workflow", "unknown", workflow=None
    )


def test_an_optional_picture_is_not_demanded(tmp_path: Path) -> None:
    """Telegram refused a workflow whose image input is optional when no picture came; the gateway
    (and Discord) run it without one. The shared rule is the gateway's: only a required input."""
    manifest = json.loads((SHIPPED_DIR / "img2img.manifest.json").read_text())
    manifest["name"] = "restyle"
    for spec in manifest["images"].values():
        spec["required"] = False
    (tmp_path / "restyle.manifest.json").write_text(json.dumps(manifest))
    shutil.copy(SHIPPED_DIR / "img2img.json", tmp_path / "restyle.json")
    registry = load_workflows([tmp_path])
    got = draft_job(registry, None, {}, named="restyle", prompt="x", params={}, with_image=False)
    assert isinstance(got, Draft) and got.image_input is None


def test_reroll_and_variations_draw_a_new_seed_and_variations_stay_within_batch(
    registry: WorkflowRegistry,
) -> None:
    record = _record("txt2img", {"prompt": "a fox", "seed": 42, "steps": 20})
    reroll = follow_up(registry, record, "reroll")
    assert reroll == Draft("txt2img", {"prompt": "a fox", "steps": 20})
    more = follow_up(registry, record, "variations")
    batch = registry.get("txt2img").params["batch"]
    assert isinstance(batch, IntParam)
    assert isinstance(more, Draft) and more.params["batch"] == min(VARIATIONS, batch.max)
    no_batch = follow_up(registry, _record("hires", {"prompt": "a fox", "seed": 1}), "variations")
    assert isinstance(no_batch, Draft) and "batch" not in no_batch.params
    assert follow_up(registry, _record("retired", {}), "reroll") == Problem("job", "gone", workflow="retired")


def test_upscale_takes_the_chosen_output_or_says_it_is_gone(registry: WorkflowRegistry) -> None:
    record = _record(
        "txt2img", {"prompt": "a fox"}, images=[PICTURE, PICTURE.model_copy(update={"width": 8})]
    )
    got = follow_up(registry, record, "upscale", 1)
    assert got == Draft("upscale", {}, inputs={"image": record.images[1]})
    assert follow_up(registry, record, "upscale", 2) == Problem("job", "gone", workflow="upscale")
    assert follow_up(registry, record, "upscale", -1) == Problem("job", "gone", workflow="upscale")
    only_text = load_workflows([], include_shipped=False)
    assert follow_up(only_text, record, "upscale") == Problem("job", "no_upscale")
