"""The gateway's whole worker path against a REAL ComfyUI (``COMFYUI_TEST_URL``; skipped when unset).

The workflows in ``tests/real/workflows`` need no model, so any ComfyUI runs them, on a CPU too
(``python main.py --cpu``). They prove what the fake cannot: the real server accepts the graphs we
render, our uploads and downloads, our ``extra_data``, and its real 400 maps to ``comfy_rejected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from comfy import ComfyClient
from comfy.workflows import load_workflows
from gateway.app import WorkerOptions, run_gateway
from gateway.memory import MemoryStore
from gateway.models import TERMINAL_EVENTS, Failed, FailureCode, JobEvent, JobRequest, Progress, Succeeded
from gateway.service import Accepted, Gateway
from gateway.storage import ImageStore

URL = os.environ.get("COMFYUI_TEST_URL")
pytestmark = [
    pytest.mark.real_comfyui,
    pytest.mark.skipif(not URL, reason="COMFYUI_TEST_URL is not set (a real ComfyUI, e.g. `main.py --cpu`)"),
]
WORKFLOWS = Path(__file__).resolve().parent / "workflows"


@contextlib.asynccontextmanager
async def real_gateway(data_dir: Path) -> AsyncIterator[tuple[Gateway, list[JobEvent]]]:
    assert URL is not None
    registry = load_workflows([WORKFLOWS])
    async with (
        aiohttp.ClientSession() as session,
        MemoryStore() as backend,
        ComfyClient(URL, session) as client,
        run_gateway(
            backend, registry, ImageStore(data_dir), [client], options=WorkerOptions(health_interval_s=1.0)
        ) as gateway,
    ):
        events: list[JobEvent] = []

        async def collect() -> None:
            async with contextlib.aclosing(gateway.subscribe("http")) as stream:
                async for event in stream:
                    events.append(event)  # noqa: PERF401 - the list must grow while the stream is open

        task = asyncio.create_task(collect())
        try:
            yield gateway, events
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _outcome(events: list[JobEvent], job_id: str) -> JobEvent:
    async with asyncio.timeout(120):
        while True:
            for event in events:
                if event.job_id == job_id and isinstance(event, TERMINAL_EVENTS):
                    return event
            await asyncio.sleep(0.05)


def _req(workflow: str, **kw: object) -> JobRequest:
    return JobRequest(platform="http", user_id="real", chat_id="real", workflow=workflow, **kw)  # type: ignore[arg-type]


async def test_txt2img_like_job_on_real_comfyui(data_dir: Path) -> None:
    async with real_gateway(data_dir) as (gateway, events):
        # A colour of its own makes the prompt new to the server's cache (see the cached test below).
        blue = secrets.randbelow(200)
        accepted = await gateway.submit(_req("solid", params={"color": 0xFF0000 + blue, "width": 40}))
        assert isinstance(accepted, Accepted)
        outcome = await _outcome(events, accepted.job_id)
        assert isinstance(outcome, Succeeded), outcome
        [ref] = outcome.images
        with Image.open(gateway.image_path(ref)) as img:
            assert img.size == (80, 128)  # width 40 (ours) × height 64 (graph), scaled 2×
            assert img.convert("RGB").getpixel((0, 0)) == (255, 0, blue)
        # Every step the user sees has a name, including the first snapshot before a node runs.
        labels = {e.node_label for e in events if isinstance(e, Progress) and e.job_id == accepted.job_id}
        assert labels <= {"Painting", "Upscaling", "Saving"} and labels


async def test_uploaded_image_runs_through_real_comfyui(data_dir: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (100, 60), (0, 128, 255)).save(buf, "PNG")
    async with real_gateway(data_dir) as (gateway, events):
        ref = await gateway.store_image(buf.getvalue())
        accepted = await gateway.submit(_req("resize", inputs={"image": ref}))
        assert isinstance(accepted, Accepted)
        outcome = await _outcome(events, accepted.job_id)
        assert isinstance(outcome, Succeeded), outcome
        with Image.open(gateway.image_path(outcome.images[0])) as img:
            assert img.size == (50, 30)


async def test_real_rejection_is_comfy_rejected_and_not_retried(data_dir: Path) -> None:
    async with real_gateway(data_dir) as (gateway, events):
        accepted = await gateway.submit(_req("broken"))
        assert isinstance(accepted, Accepted)
        outcome = await _outcome(events, accepted.job_id)
        assert isinstance(outcome, Failed)
        assert outcome.code is FailureCode.COMFY_REJECTED
        assert "upscale_method" in outcome.detail


async def test_cached_rerun_on_real_comfyui_still_names_every_step(data_dir: Path) -> None:
    """Regression: a re-run served from ComfyUI's cache sends no ``executing``; it showed a nameless step."""
    params = {"color": secrets.randbelow(0xFFFFFF), "width": 24}
    async with real_gateway(data_dir) as (gateway, events):
        for _ in range(2):
            accepted = await gateway.submit(_req("solid", params=params))
            assert isinstance(accepted, Accepted)
            outcome = await _outcome(events, accepted.job_id)
            assert isinstance(outcome, Succeeded), outcome
        rerun = [e for e in events if isinstance(e, Progress) and e.job_id == accepted.job_id]
        assert rerun and all(e.node_label for e in rerun)
