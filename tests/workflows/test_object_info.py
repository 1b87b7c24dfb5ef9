"""check_object_info vs /object_info shapes: legacy combos ``[[...], {...}]`` and V3 ``["COMBO", {...}]``."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from comfy.workflow_check import combo_options
from comfy.workflows import check_object_info, load_workflows

SAMPLERS = [
    "euler",
    "euler_ancestral",
    "heun",
    "dpm_2",
    "dpmpp_2m",
    "dpmpp_2m_sde",
    "dpmpp_sde",
    "ddim",
    "uni_pc",
    "lcm",
]
SCHEDULERS = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta"]


def node(required: dict[str, Any], output: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """An /object_info entry in the shape PROTOCOL.md records (input/input_order/output/...)."""
    return {
        "input": {"required": required, "optional": {}, "hidden": {}},
        "input_order": {"required": list(required)},
        "output": output or [],
        "output_is_list": [False] * len(output or []),
        "output_name": output or [],
        "name": extra.get("name", ""),
        "display_name": "",
        "description": "",
        "python_module": "nodes",
        "category": "",
        "output_node": extra.get("output_node", False),
    }


def object_info(checkpoints: list[str], upscalers: list[str]) -> dict[str, Any]:
    """Hand-written: CheckpointLoaderSimple in the legacy combo shape, UpscaleModelLoader in the V3 shape."""
    return {
        "CheckpointLoaderSimple": node(
            {"ckpt_name": [checkpoints, {"tooltip": "The checkpoint"}]}, ["MODEL", "CLIP", "VAE"]
        ),
        "CLIPTextEncode": node({"text": ["STRING", {"multiline": True}], "clip": ["CLIP"]}, ["CONDITIONING"]),
        "EmptyLatentImage": node(
            {
                "width": ["INT", {"default": 512, "min": 16, "max": 16384, "step": 8}],
                "height": ["INT", {"default": 512, "min": 16, "max": 16384, "step": 8}],
                "batch_size": ["INT", {"default": 1, "min": 1, "max": 4096}],
            },
            ["LATENT"],
        ),
        "KSampler": node(
            {
                "model": ["MODEL"],
                "seed": [
                    "INT",
                    {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True},
                ],
                "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
                "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}],
                "sampler_name": [SAMPLERS, {}],
                "scheduler": [SCHEDULERS, {}],
                "positive": ["CONDITIONING"],
                "negative": ["CONDITIONING"],
                "latent_image": ["LATENT"],
                "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}],
            },
            ["LATENT"],
        ),
        "VAEDecode": node({"samples": ["LATENT"], "vae": ["VAE"]}, ["IMAGE"]),
        "VAEEncode": node({"pixels": ["IMAGE"], "vae": ["VAE"]}, ["LATENT"]),
        "SaveImage": node(
            {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]}, output_node=True
        ),
        "LoadImage": node({"image": [["example.png"], {"image_upload": True}]}, ["IMAGE", "MASK"]),
        "UpscaleModelLoader": node(
            {"model_name": ["COMBO", {"options": upscalers, "multiselect": False}]}, ["UPSCALE_MODEL"]
        ),
        "ImageUpscaleWithModel": node({"upscale_model": ["UPSCALE_MODEL"], "image": ["IMAGE"]}, ["IMAGE"]),
        "LatentUpscaleBy": node(
            {
                "samples": ["LATENT"],
                "upscale_method": [["nearest-exact", "bilinear", "area", "bicubic", "bislerp"], {}],
                "scale_by": ["FLOAT", {"default": 1.5, "min": 0.01, "max": 8.0, "step": 0.01}],
            },
            ["LATENT"],
        ),
    }


GOOD = object_info(["v1-5-pruned-emaonly.safetensors", "other.safetensors"], ["RealESRGAN_x4plus.pth"])


@pytest.fixture(scope="module")
def registry():
    return load_workflows([])


@pytest.mark.parametrize("name", ["txt2img", "img2img", "upscale", "hires"])
def test_shipped_workflows_fit_a_complete_server(registry, name: str) -> None:
    assert check_object_info(registry.get(name), GOOD) == []


def test_combo_options_both_shapes() -> None:
    assert combo_options(GOOD, "CheckpointLoaderSimple", "ckpt_name") == [
        "v1-5-pruned-emaonly.safetensors",
        "other.safetensors",
    ]
    assert combo_options(GOOD, "UpscaleModelLoader", "model_name") == ["RealESRGAN_x4plus.pth"]
    assert combo_options(GOOD, "KSampler", "steps") is None
    assert combo_options(GOOD, "KSampler", "nope") is None
    assert combo_options(GOOD, "Missing", "x") is None


def test_missing_checkpoint_legacy_shape(registry) -> None:
    info = object_info(["a.safetensors", "b.safetensors"], ["RealESRGAN_x4plus.pth"])
    assert check_object_info(registry.get("txt2img"), info) == [
        "node 4 (CheckpointLoaderSimple): model 'v1-5-pruned-emaonly.safetensors' not on server "
        "(has: a.safetensors, b.safetensors)"
    ]


def test_missing_upscaler_v3_shape(registry) -> None:
    info = object_info(["v1-5-pruned-emaonly.safetensors"], [])
    assert check_object_info(registry.get("upscale"), info) == [
        "node 2 (UpscaleModelLoader): model 'RealESRGAN_x4plus.pth' not on server (has: none)"
    ]


def test_long_option_lists_are_shortened(registry) -> None:
    info = object_info([f"m{i}.safetensors" for i in range(25)], [])
    (problem,) = check_object_info(registry.get("txt2img"), info)
    assert "m9.safetensors, … 15 more)" in problem and "m10.safetensors" not in problem


def test_missing_node_types(registry) -> None:
    info = copy.deepcopy(GOOD)
    del info["LatentUpscaleBy"], info["KSampler"]
    problems = check_object_info(registry.get("hires"), info)
    assert problems == [
        "node 3 (KSampler): node type not installed on server",
        "node 10 (LatentUpscaleBy): node type not installed on server",
        "node 11 (KSampler): node type not installed on server",
    ]


def test_model_override_and_chosen_values_are_checked(registry) -> None:
    wf = load_workflows([], {"checkpoint": "other.safetensors"}).get("txt2img")
    assert check_object_info(wf, GOOD) == []
    (problem,) = check_object_info(registry.get("txt2img"), GOOD, {"checkpoint": "x.safetensors"})
    assert "model 'x.safetensors' not on server" in problem


def test_choice_options_the_server_lacks(registry) -> None:
    info = copy.deepcopy(GOOD)
    info["KSampler"]["input"]["required"]["sampler_name"] = [["euler", "ddim"], {}]
    (problem,) = check_object_info(registry.get("txt2img"), info)
    assert problem.startswith("node 3 (KSampler): param 'sampler' offers 'euler_ancestral', 'heun'")
    assert problem.endswith("for 'sampler_name', not accepted by server (has: euler, ddim)")


def test_v3_combo_for_a_choice_param(registry) -> None:
    info = copy.deepcopy(GOOD)
    info["KSampler"]["input"]["required"]["scheduler"] = [
        "COMBO",
        {"options": ["normal"], "multiselect": False},
    ]
    (problem,) = check_object_info(registry.get("txt2img"), info)
    assert "param 'scheduler' offers 'karras'" in problem


def test_recorded_input_config_shape() -> None:
    """The ``input_config`` ComfyUI 0.3.64 returned in a value_not_in_list 400 (traces/http_results.json)."""
    recorded = [["nearest-exact", "bilinear", "area", "bicubic", "lanczos"], {}]
    info = {"ImageScale": {"input": {"required": {"upscale_method": recorded}}}}
    assert combo_options(info, "ImageScale", "upscale_method") == recorded[0]


def test_required_input_the_graph_lacks(registry) -> None:
    info = copy.deepcopy(GOOD)
    info["EmptyLatentImage"]["input"]["required"]["color"] = ["INT", {"default": 0}]
    assert check_object_info(registry.get("txt2img"), info) == [
        "node 5 (EmptyLatentImage): server requires input(s) 'color' that the graph lacks "
        "(export it again from this server's ComfyUI)"
    ]


def test_other_literal_combo_values_are_checked(registry) -> None:
    info = copy.deepcopy(GOOD)
    info["LatentUpscaleBy"]["input"]["required"]["upscale_method"] = [["bilinear", "area"], {}]
    assert check_object_info(registry.get("hires"), info) == [
        "node 10 (LatentUpscaleBy): upscale_method 'nearest-exact' not accepted by server "
        "(has: bilinear, area)"
    ]


def test_load_image_placeholder_is_not_checked(registry) -> None:
    info = copy.deepcopy(GOOD)
    info["LoadImage"]["input"]["required"]["image"] = [[], {"image_upload": True}]
    assert check_object_info(registry.get("img2img"), info) == []
    assert check_object_info(registry.get("upscale"), info) == []
