"""Shipped workflows against a real ComfyUI's /object_info (skipped unless COMFYUI_TEST_URL is set)."""

from __future__ import annotations

import os

import aiohttp
import pytest

from comfy.workflow_check import combo_options
from comfy.workflows import check_object_info, load_workflows

URL = os.environ.get("COMFYUI_TEST_URL")
pytestmark = [
    pytest.mark.real_comfyui,
    pytest.mark.skipif(not URL, reason="COMFYUI_TEST_URL is not set"),
]


async def test_shipped_node_types_and_inputs_exist_on_a_real_server() -> None:
    assert URL is not None
    async with aiohttp.ClientSession() as session, session.get(f"{URL.rstrip('/')}/object_info") as resp:
        resp.raise_for_status()
        info = await resp.json()
    assert combo_options(info, "CheckpointLoaderSimple", "ckpt_name") is not None
    assert combo_options(info, "KSampler", "sampler_name")
    for wf in load_workflows([]):
        # model files differ per box; node types, required inputs and sampler names must not
        problems = [p for p in check_object_info(wf, info) if "model '" not in p]
        assert problems == [], (wf.name, problems)
