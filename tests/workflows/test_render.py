"""Workflow.render: typed values at their targets in a deep copy; overrides of models and of workflows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfy.workflows import ParamError, WorkflowLoadError, load_workflow, load_workflows
from tests.workflows.conftest import write_workflow

NASTY = 'a "quoted" {brace} "}, "9": {"class_type": "Evil"} \\ \n\t end \u202e ✓ 猫 \' ]]'
# What reaches the graph: every JSON metacharacter, quote and script intact; the tab, newline and the
# right-to-left override are cleaned away (comfy.text.clean_text).
RENDERED = 'a "quoted" {brace} "}, "9": {"class_type": "Evil"} \\ end ✓ 猫 \' ]]'


def test_prompt_with_json_metacharacters_survives_intact(tmp_path: Path) -> None:
    wf = load_workflow(write_workflow(tmp_path, "wf"))
    graph = wf.render(wf.validate({"prompt": NASTY, "seed": 1}))
    assert graph["6"]["inputs"]["text"] == RENDERED
    assert set(graph) == set(wf.graph)  # no node smuggled in
    assert json.loads(json.dumps(graph))["6"]["inputs"]["text"] == RENDERED


@pytest.mark.parametrize("name", ["txt2img", "img2img", "hires"])
def test_shipped_prompt_injection_safe(name: str) -> None:
    wf = load_workflows([]).get(name)
    values = wf.validate({"prompt": NASTY, "negative": '"}}', "seed": 3})
    graph = wf.render(values, {"image": "x.png"} if wf.images else {})
    assert graph["6"]["inputs"]["text"] == RENDERED and graph["7"]["inputs"]["text"] == '"}}'
    assert {n["class_type"] for n in graph.values()} == wf.required_nodes()


def test_render_is_a_deep_copy(tmp_path: Path) -> None:
    wf = load_workflow(write_workflow(tmp_path, "wf"))
    before = json.dumps(dict(wf.graph), sort_keys=True)
    graph = wf.render(wf.validate({"prompt": "x", "seed": 5, "steps": 9}))
    graph["3"]["inputs"]["model"].append("mutated")
    assert json.dumps(dict(wf.graph), sort_keys=True) == before
    assert wf.render(wf.validate({"prompt": "y", "seed": 5}))["3"]["inputs"]["steps"] == 20


def test_render_sets_every_typed_value(tmp_path: Path) -> None:
    wf = load_workflow(write_workflow(tmp_path, "wf"))
    g = wf.render(
        wf.validate(
            {
                "prompt": "p",
                "seed": 9,
                "steps": "12",
                "cfg": 3,
                "sampler": "dpmpp_2m",
                "ar": "9:16",
                "checkpoint": "sub/other.safetensors",
            }
        )
    )
    assert g["3"]["inputs"] | {"model": None, "positive": None, "negative": None, "latent_image": None} == {
        "seed": 9,
        "steps": 12,
        "cfg": 3.0,
        "sampler_name": "dpmpp_2m",
        "scheduler": "normal",
        "denoise": 1.0,
        "model": None,
        "positive": None,
        "negative": None,
        "latent_image": None,
    }
    assert (g["5"]["inputs"]["width"], g["5"]["inputs"]["height"]) == (384, 704)
    assert g["4"]["inputs"]["ckpt_name"] == "sub/other.safetensors"
    assert wf.size(wf.validate({"prompt": "p", "ar": "9:16"})) == (384, 704)


def test_render_images(tmp_path: Path, graph, manifest) -> None:
    graph["10"] = {"class_type": "LoadImage", "inputs": {"image": "example.png"}}
    graph["11"] = {"class_type": "LoadImage", "inputs": {"image": "mask.png"}}
    manifest["images"] = {"image": {"node": "10"}, "mask": {"node": "11", "required": False}}
    wf = load_workflow(write_workflow(tmp_path, "wf", graph=graph, manifest=manifest))
    values = wf.validate({"prompt": "x", "seed": 1})
    g = wf.render(values, {"image": "comfybot/up (1).png"})
    assert g["10"]["inputs"]["image"] == "comfybot/up (1).png"
    assert g["11"]["inputs"]["image"] == "mask.png"  # optional, not given: the graph's own value
    for images, field, code in [
        ({}, "image", "required"),
        ({"image": "a.png", "photo": "b.png"}, "photo", "unknown_param"),
        ({"image": "../../x.png"}, "image", "bad_image_name"),
        ({"image": "/etc/passwd"}, "image", "bad_image_name"),
    ]:
        with pytest.raises(ParamError) as err:
            wf.render(values, images)
        assert (err.value.field, err.value.reason) == (field, code)


class TestModelOverrides:
    def test_override_by_param_name(self) -> None:
        reg = load_workflows([], {"checkpoint": "mymodel.safetensors"})
        for name in ("txt2img", "img2img", "hires"):
            wf = reg.get(name)
            assert wf.validate({"prompt": "x"})["checkpoint"] == "mymodel.safetensors"
            assert (
                wf.render(wf.validate({"prompt": "x"}), {"image": "i.png"} if wf.images else {})["4"][
                    "inputs"
                ]["ckpt_name"]
                == "mymodel.safetensors"
            )
            assert wf.required_models() == {"checkpoints": {"mymodel.safetensors"}}

    def test_workflow_specific_key_wins(self) -> None:
        reg = load_workflows(
            [],
            {
                "checkpoint": "a.safetensors",
                "hires.checkpoint": "b.safetensors",
                "upscale_model": "4x-UltraSharp.pth",
            },
        )
        assert reg.get("txt2img").validate({"prompt": "x"})["checkpoint"] == "a.safetensors"
        assert reg.get("hires").validate({"prompt": "x"})["checkpoint"] == "b.safetensors"
        assert reg.get("upscale").required_models() == {"upscale_models": {"4x-UltraSharp.pth"}}

    def test_user_may_still_pick_another_model(self) -> None:
        wf = load_workflows([], {"checkpoint": "a.safetensors"}).get("txt2img")
        assert wf.validate({"prompt": "x", "checkpoint": "b.safetensors"})["checkpoint"] == "b.safetensors"

    def test_override_joins_an_allowlist(self, tmp_path: Path, manifest) -> None:
        manifest["params"]["checkpoint"]["options"] = ["sd15.safetensors"]
        write_workflow(tmp_path, "wf", manifest=manifest)
        wf = load_workflows([tmp_path], {"checkpoint": "mine.safetensors"}, include_shipped=False).get("wf")
        assert wf.validate({"prompt": "x"})["checkpoint"] == "mine.safetensors"
        with pytest.raises(ParamError) as err:
            wf.validate({"prompt": "x", "checkpoint": "other.safetensors"})
        assert err.value.reason == "not_in_options"
        assert err.value.bounds["options"] == ["mine.safetensors", "sd15.safetensors"]

    def test_unused_override_is_an_error(self) -> None:
        with pytest.raises(WorkflowLoadError) as err:
            load_workflows([], {"chekpoint": "x.safetensors"})
        assert "chekpoint match no model parameter" in err.value.problem
        assert "checkpoint" in err.value.problem

    def test_unsafe_override_is_an_error(self) -> None:
        with pytest.raises(WorkflowLoadError, match="not a plain file name"):
            load_workflows([], {"checkpoint": "../../x.safetensors"})


def test_extra_dir_overrides_shipped(tmp_path: Path, manifest) -> None:
    manifest["description"] = "operator's own txt2img"
    write_workflow(tmp_path, "txt2img", manifest=manifest)
    write_workflow(tmp_path, "mine", manifest=manifest)
    reg = load_workflows([tmp_path])
    assert reg.get("txt2img").description == "operator's own txt2img"
    assert reg.get("txt2img").path == tmp_path / "txt2img.manifest.json"
    assert reg.get("img2img").path.parent != tmp_path
    assert set(reg.names()) == {"txt2img", "img2img", "upscale", "hires", "mine"}


def test_later_extra_dir_wins(tmp_path: Path, manifest) -> None:
    for i in (1, 2):
        manifest["description"] = f"dir {i}"
        write_workflow(tmp_path / str(i), "wf", manifest=manifest)
    reg = load_workflows([tmp_path / "1", tmp_path / "2"], include_shipped=False)
    assert reg.get("wf").description == "dir 2"


def test_required_models_include_literal_loaders(tmp_path: Path, graph, manifest) -> None:
    graph["20"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "lora_name": "style.safetensors",
            "strength_model": 1.0,
            "strength_clip": 1.0,
            "model": ["4", 0],
            "clip": ["4", 1],
        },
    }
    graph["21"] = {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x.pth"}}
    graph["22"] = {"class_type": "SomethingElse", "inputs": {"model_name": "ignored.bin"}}
    wf = load_workflow(write_workflow(tmp_path, "wf", graph=graph, manifest=manifest))
    assert wf.required_models() == {
        "checkpoints": {"sd15.safetensors"},
        "loras": {"style.safetensors"},
        "upscale_models": {"4x.pth"},
    }
    assert wf.required_models({"checkpoint": "picked.safetensors"})["checkpoints"] == {"picked.safetensors"}
    assert "LoraLoader" in wf.required_nodes()


def test_prompt_param_defaults_to_a_text_param_named_prompt(tmp_path: Path, manifest) -> None:
    wf = load_workflow(write_workflow(tmp_path, "wf", manifest=manifest))
    assert wf.prompt_param == "prompt"
    manifest["params"]["text"] = manifest["params"].pop("prompt")
    wf = load_workflow(write_workflow(tmp_path, "wf2", manifest=manifest))
    assert wf.prompt_param is None
