"""Every shipped workflow loads, validates and renders into a graph ComfyUI accepts in shape."""

from __future__ import annotations

import json

import pytest

from comfy.workflows import ParamError, UnknownWorkflow, load_workflows
from workflows import SHIPPED_DIR

SHIPPED = ["txt2img", "img2img", "upscale", "hires"]
CORE_NODES = {
    "CheckpointLoaderSimple",
    "CLIPTextEncode",
    "EmptyLatentImage",
    "KSampler",
    "VAEDecode",
    "VAEEncode",
    "SaveImage",
    "LoadImage",
    "UpscaleModelLoader",
    "ImageUpscaleWithModel",
    "LatentUpscaleBy",
}


@pytest.fixture(scope="module")
def registry():
    return load_workflows([])


def test_all_shipped_workflows_load(registry) -> None:
    assert sorted(registry.names()) == sorted(SHIPPED)
    assert len(registry) == len(SHIPPED)
    assert "txt2img" in registry


def test_unknown_workflow_names_the_known_ones(registry) -> None:
    with pytest.raises(UnknownWorkflow) as err:
        registry.get("nope")
    assert err.value.name == "nope"
    assert "txt2img" in err.value.known


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_validates_and_renders(registry, name: str) -> None:
    wf = registry.get(name)
    raw = {wf.prompt_param: "a lighthouse at dusk"} if wf.prompt_param else {}
    values = wf.validate(raw)
    assert set(values) == set(wf.params)
    images = {img: f"comfybot/{img}.png" for img in wf.images}
    graph = wf.render(values, images)
    # what ComfyUI's /prompt needs: str ids → {class_type, inputs}; links point at existing nodes
    for node in graph.values():
        assert node["class_type"] in CORE_NODES
        for value in node["inputs"].values():
            if isinstance(value, list):
                assert value[0] in graph and isinstance(value[1], int)
    for out in wf.outputs:
        assert graph[out]["class_type"] == "SaveImage"
        assert graph[out]["inputs"]["filename_prefix"] == "comfybot"
    for img, spec in wf.images.items():
        assert graph[spec.node]["inputs"]["image"] == f"comfybot/{img}.png"
    json.dumps(graph)  # serialisable as is
    assert wf.description and wf.timeout_s > 0
    assert set(wf.labels) <= set(graph)
    # the template itself is untouched
    assert wf.render(values, images) == graph
    assert values == wf.validate(values)


@pytest.mark.parametrize("name", ["txt2img", "img2img", "hires"])
def test_reroll_param_is_the_seed(registry, name: str) -> None:
    wf = registry.get(name)
    assert wf.seed_param == "seed"
    assert wf.prompt_param == "prompt"
    values = wf.validate({"prompt": "x", "seed": 42})
    graph = wf.render(values) if not wf.images else wf.render(values, {"image": "a.png"})
    seeds = [n["inputs"]["seed"] for n in graph.values() if n["class_type"] == "KSampler"]
    assert seeds and all(s == 42 for s in seeds)


def test_upscale_has_no_seed_and_needs_an_image(registry) -> None:
    wf = registry.get("upscale")
    assert wf.seed_param is None and wf.prompt_param is None
    values = wf.validate({})
    assert values == {"upscale_model": "RealESRGAN_x4plus.pth"}
    with pytest.raises(ParamError) as err:
        wf.render(values, {})
    assert (err.value.field, err.value.reason) == ("image", "required")
    assert wf.required_models() == {"upscale_models": {"RealESRGAN_x4plus.pth"}}


def test_txt2img_matches_the_recorded_tinysd_graph(registry) -> None:
    """Node ids and wiring of the tinysd trace (CheckpointLoaderSimple 4 → ... → SaveImage 9)."""
    wf = registry.get("txt2img")
    classes = {nid: n["class_type"] for nid, n in wf.graph.items()}
    assert classes == {
        "4": "CheckpointLoaderSimple",
        "6": "CLIPTextEncode",
        "7": "CLIPTextEncode",
        "5": "EmptyLatentImage",
        "3": "KSampler",
        "8": "VAEDecode",
        "9": "SaveImage",
    }
    values = wf.validate({"prompt": "a cat", "seed": 1, "ar": "16:9", "batch": "2", "steps": "30"})
    g = wf.render(values)
    assert g["6"]["inputs"]["text"] == "a cat"
    assert g["3"]["inputs"]["steps"] == 30 and g["5"]["inputs"]["batch_size"] == 2
    assert (g["5"]["inputs"]["width"], g["5"]["inputs"]["height"]) == (704, 384)
    assert g["4"]["inputs"]["ckpt_name"] == "v1-5-pruned-emaonly.safetensors"
    assert wf.label("3") == "Sampling" and wf.label("nope") is None


def test_img2img_denoise(registry) -> None:
    wf = registry.get("img2img")
    assert wf.validate({"prompt": "x"})["denoise"] == 0.6
    g = wf.render(wf.validate({"prompt": "x", "denoise": "0.3"}), {"image": "in.png"})
    assert g["3"]["inputs"]["denoise"] == 0.3
    assert g["3"]["inputs"]["latent_image"] == ["11", 0]
    with pytest.raises(ParamError) as err:
        wf.validate({"prompt": "x", "denoise": 1.5})
    assert err.value.reason == "too_large" and err.value.bounds["max"] == 1


def test_hires_second_pass(registry) -> None:
    wf = registry.get("hires")
    g = wf.render(wf.validate({"prompt": "x", "seed": 7, "scale": 2}))
    assert g["10"]["class_type"] == "LatentUpscaleBy" and g["10"]["inputs"]["scale_by"] == 2.0
    assert g["11"]["inputs"]["latent_image"] == ["10", 0]
    assert g["11"]["inputs"]["denoise"] == 0.5
    assert g["8"]["inputs"]["samples"] == ["11", 0]


def test_shipped_files_come_in_pairs() -> None:
    graphs = {p.name.removesuffix(".json") for p in SHIPPED_DIR.glob("*.json") if ".manifest." not in p.name}
    manifests = {p.name.removesuffix(".manifest.json") for p in SHIPPED_DIR.glob("*.manifest.json")}
    assert graphs == manifests == set(SHIPPED)


def test_reseed_for_reroll_and_variations(registry) -> None:
    wf = registry.get("txt2img")
    values = wf.validate({"prompt": "x", "seed": 1, "steps": 9})
    assert wf.reseed(values, 77) == {**values, "seed": 77}
    fresh = wf.reseed(values)
    assert fresh["steps"] == 9 and 0 <= fresh["seed"] < 2**53
    with pytest.raises(ParamError) as err:
        registry.get("upscale").reseed({})
    assert err.value.reason == "unknown_param"


@pytest.mark.parametrize("name", SHIPPED)
def test_info_is_json_without_graph_internals(registry, name: str) -> None:
    info = registry.get(name).info()
    text = json.dumps(info)
    assert info["name"] == name and "targets" not in text and "inputs." not in text
    assert set(info["params"]) == set(registry.get(name).params)


STEP_LABELS = {
    "Loading model",
    "Loading image",
    "Encoding prompt",
    "Encoding image",
    "Preparing",
    "Sampling",
    "Decoding",
    "Upscaling",
    "Saving",
}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_node_has_a_known_step_label(registry, name: str) -> None:
    """Front ends translate these labels (locales' step.* keys); a new label needs a new text."""
    wf = registry.get(name)
    assert set(wf.labels) == set(wf.graph)
    assert set(wf.labels.values()) <= STEP_LABELS
