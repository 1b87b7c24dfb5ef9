"""``run_time_s``: a prompt takes that long on the wall clock, like on a GPU, and interrupts still work."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from tests.fakes.comfyui import FakeComfyUI, FakeImage, WsRecorder, _Run
from tests.fakes.test_fake_comfyui_faults import submit, txt2img

JSON = dict[str, Any]


class _TimedFake(FakeComfyUI):
    """Measures each prompt's execution; optionally makes the work between sleeps slow."""

    def __init__(self, *, save_s: float = 0.0, progress_s: float = 0.0, **options: Any) -> None:
        super().__init__(**options)
        self.save_s = save_s
        self.progress_s = progress_s
        self.executions: list[float] = []

    async def _execute(self, run: _Run) -> tuple[str, bool]:
        start = time.monotonic()
        try:
            return await super()._execute(run)
        finally:
            self.executions.append(time.monotonic() - start)

    async def _save_images(self, run: _Run, img: FakeImage, prefix: str, type_: str) -> list[JSON]:
        time.sleep(self.save_s)  # noqa: ASYNC251  # a blocking write of a big PNG, on purpose
        return await super()._save_images(run, img, prefix, type_)

    async def _emit_progress(
        self,
        run: _Run,
        node_id: str,
        value: int,
        max_: int,
        image: bytes | None,
        image_type: str = "image/jpeg",
    ) -> None:
        time.sleep(self.progress_s)  # noqa: ASYNC251  # a late timer wake-up or slow event sending
        await super()._emit_progress(run, node_id, value, max_, image, image_type)


async def test_run_time_absorbs_the_work_between_sleeps(http: aiohttp.ClientSession) -> None:
    """Regression: 27 sleeps of run_time/27 each, plus saving and events on top, made "0.5 s" take 0.53 s.

    16 units of 25 ms; 10 × 10 ms of slow progress events and a 15 ms save would add 115 ms to per-unit
    sleeps. With deadlines counted from the start, each lands inside its unit's slack."""
    async with _TimedFake(run_time_s=0.4, save_s=0.015, progress_s=0.01) as fake:
        pid = await submit(http, fake.url, txt2img(steps=10))
        entry = await fake.wait_history(pid)
    assert entry["status"]["status_str"] == "success"
    (elapsed,) = fake.executions
    assert 0.4 <= elapsed < 0.47


async def test_interrupt_mid_sampler_with_run_time(http: aiohttp.ClientSession) -> None:
    """The flag is still seen at the next step's deadline; the next prompt gets its own full budget."""
    async with (
        _TimedFake(run_time_s=2.6) as fake,
        WsRecorder(http, fake.url, client_id="c") as rec,
    ):
        pid = await submit(http, fake.url, txt2img(steps=20), client_id="c")
        await rec.wait_for(lambda f: f.get("type") == "progress")
        async with http.post(f"{fake.url}/interrupt", json={"prompt_id": pid}):
            pass
        await rec.wait_done(pid, timeout_s=1.0)
        fake.run_time_s = 0.2
        again = await submit(http, fake.url, txt2img(seed=2, steps=4), client_id="c")
        await rec.wait_done(again)
    (interrupted,) = rec.json_of("execution_interrupted")
    assert (interrupted["node_id"], interrupted["node_type"]) == ("3", "KSampler")
    assert fake.history[pid]["status"]["status_str"] == "error"
    assert fake.history[again]["status"]["status_str"] == "success"
    first, second = fake.executions
    assert first < 1.0
    assert second >= 0.2


async def test_interrupt_lets_a_budgeted_node_finish(http: aiohttp.ClientSession) -> None:
    """As without a budget: a started node runs to the end of its unit; the next one sees the flag."""
    async with (
        _TimedFake(run_time_s=2.6) as fake,  # 26 units of 0.1 s for txt2img at 20 steps
        WsRecorder(http, fake.url, client_id="c") as rec,
    ):
        pid = await submit(http, fake.url, txt2img(steps=20), client_id="c")
        await rec.wait_for(lambda f: f.get("type") == "executing" and f["data"].get("node") == "4")
        async with http.post(f"{fake.url}/interrupt", json={"prompt_id": pid}):
            pass
        await rec.wait_done(pid, timeout_s=1.0)
    (interrupted,) = rec.json_of("execution_interrupted")
    assert (interrupted["node_id"], interrupted["executed"]) == ("6", ["4"])


async def test_checkpoint_change_charges_the_load_time(http: aiohttp.ClientSession) -> None:
    """``load_time_s`` is paid when the checkpoint differs from the one loaded last, on top of the run
    time; the same checkpoint again (cached or not) and a prompt without a loader pay nothing."""
    checkpoints = ["sd15.safetensors", "sdxl_base.safetensors"]
    async with _TimedFake(run_time_s=0.1, load_time_s=0.3, checkpoints=checkpoints) as fake:
        order = ["sd15.safetensors", "sd15.safetensors", "sdxl_base.safetensors", "sd15.safetensors"]
        pids = []
        for seed, ckpt in enumerate(order):
            pids.append(await submit(http, fake.url, txt2img(seed, ckpt=ckpt)))
            await fake.wait_history(pids[-1])
        fake.cache_enabled = False  # the loader node runs again: the weights are still in VRAM
        again = await submit(http, fake.url, txt2img(9, ckpt="sd15.safetensors"))
        await fake.wait_history(again)
        async with http.post(f"{fake.url}/free", json={"unload_models": True, "free_memory": True}):
            pass
        after_free = await submit(http, fake.url, txt2img(10, ckpt="sd15.safetensors"))
        await fake.wait_history(after_free)
    assert fake.model_loads == [
        (pids[0], "sd15.safetensors"),
        (pids[2], "sdxl_base.safetensors"),
        (pids[3], "sd15.safetensors"),
        (after_free, "sd15.safetensors"),
    ]
    loaded = [0, 2, 3, 5]
    for i, elapsed in enumerate(fake.executions):
        if i in loaded:  # sleeps never end early: a lower bound is safe on a busy machine
            assert elapsed >= 0.4
    assert fake.loaded_checkpoint == "sd15.safetensors"
