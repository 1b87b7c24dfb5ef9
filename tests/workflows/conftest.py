"""Helpers for workflow tests: a minimal valid txt2img graph + manifest, written into tmp dirs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

GRAPH: dict[str, Any] = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 0,
            "steps": 20,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["6", 0],
            "latent_image": ["5", 0],
        },
    },
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "comfybot"}},
}

MANIFEST: dict[str, Any] = {
    "description": "test",
    "kind": "txt2img",
    "params": {
        "prompt": {"type": "text", "max_length": 100, "required": True, "targets": ["6.inputs.text"]},
        "seed": {"type": "seed", "targets": ["3.inputs.seed"]},
        "steps": {"type": "int", "min": 1, "max": 100, "default": 20, "targets": ["3.inputs.steps"]},
        "cfg": {"type": "float", "min": 1, "max": 30, "default": 7.0, "targets": ["3.inputs.cfg"]},
        "sampler": {"type": "choice", "options": ["euler", "dpmpp_2m"], "targets": ["3.inputs.sampler_name"]},
        "ar": {
            "type": "aspect",
            "default": "1:1",
            "base_pixels": 262144,
            "multiple": 64,
            "max_side": 2048,
            "width": ["5.inputs.width"],
            "height": ["5.inputs.height"],
        },
        "checkpoint": {
            "type": "model",
            "folder": "checkpoints",
            "default": "sd15.safetensors",
            "targets": ["4.inputs.ckpt_name"],
        },
    },
    "outputs": ["9"],
    "labels": {"4": "Loading model", "3": "Sampling"},
}


def write_workflow(directory: Path, name: str, graph: Any | None = None, manifest: Any | None = None) -> Path:
    """Write ``<name>.json`` and ``<name>.manifest.json`` (a dict is dumped, a str written as is)."""
    directory.mkdir(parents=True, exist_ok=True)
    for suffix, content, fallback in ((".json", graph, GRAPH), (".manifest.json", manifest, MANIFEST)):
        data = copy.deepcopy(fallback) if content is None else content
        text = data if isinstance(data, str) else json.dumps(data)
        (directory / f"{name}{suffix}").write_text(text, encoding="utf-8")
    return directory / f"{name}.manifest.json"


@pytest.fixture
def graph() -> dict[str, Any]:
    return copy.deepcopy(GRAPH)


@pytest.fixture
def manifest() -> dict[str, Any]:
    return copy.deepcopy(MANIFEST)
