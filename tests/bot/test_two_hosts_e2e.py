"""A front end and a worker as two machines: separate processes, separate data dirs, one Redis.

The worker is ``python -m gateway`` with its own data dir; the Telegram front end runs in the test with
another. Nothing is on both disks, so every image — the user's photo going to the GPU, each result
coming back, the output an Upscale starts from — must travel through Redis (``gateway/blobs.py``), or,
with an S3 bucket configured, through the bucket (a real S3 server, moto, checking signatures).
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import aiohttp
import pytest

from bot.telegram.app import TelegramFrontend
from comfy.workflows import WorkflowRegistry
from core.config import TelegramSettings, load_settings
from gateway.app import blobs_from, run_gateway
from gateway.blobs import RedisBlobs
from gateway.redis_store import RedisStore
from gateway.storage import ImageGone, ImageStore
from tests.bot.conftest import CHECKPOINTS, UPSCALERS, png
from tests.conftest import RedisServer, S3Server
from tests.fakes.comfyui import running_fake_comfyui
from tests.fakes.telegram import FakeTelegram, StoredMessage
from tests.gateway.test_crash_recovery import ROOT, worker_process

USER = CHAT = 6006


def _button(msg: StoredMessage, prefix: str) -> str:
    data = [str(b["callback_data"]) for row in msg.buttons for b in row]
    return next(d for d in data if d.startswith(prefix))


def _has_results(fake: FakeTelegram, count: int) -> bool:
    return len(_results(fake)) == count


def _results(fake: FakeTelegram) -> list[StoredMessage]:
    return [m for m in fake.bot_messages(CHAT) if m.photo or m.document]


async def _blob_keys(store: RedisStore) -> set[str]:
    return {k.decode() async for k in store.redis.scan_iter("comfybot:blob:*")}


@pytest.mark.redis
@pytest.mark.timeout(180)
@pytest.mark.parametrize("where", ["redis", "s3"])
async def test_every_image_path_works_across_data_dirs(
    tmp_path: Path,
    registry: WorkflowRegistry,
    redis_server: RedisServer,
    where: str,
    request: pytest.FixtureRequest,
) -> None:
    worker_dir, front_dir = tmp_path / "host-a", tmp_path / "host-b"
    bucket: S3Server | None = request.getfixturevalue("s3_server") if where == "s3" else None
    shared_env = {"REDIS_URL": redis_server.url} | (bucket.env() if bucket is not None else {})
    async with running_fake_comfyui(checkpoints=CHECKPOINTS, upscale_models=UPSCALERS) as comfy:
        env = shared_env | {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "COMFYUI_URLS": comfy.url,
            "COMFYBOT_DATA_DIR": str(worker_dir),
            "LOG_DIR": str(tmp_path / "logs"),
        }
        async with (
            worker_process(env) as worker,
            FakeTelegram() as fake,
            aiohttp.ClientSession() as session,
            RedisStore(redis_server.url, retry_for_s=20) as store,
            run_gateway(
                store,
                registry,
                ImageStore(front_dir, shared=blobs_from(load_settings(shared_env), store, session)),
                [],
                workers=False,
            ) as gateway,
        ):
            await worker.wait_event("worker_started", timeout_s=60)
            settings = TelegramSettings(bot_token=fake.token, api_base=fake.url, previews=False)
            async with TelegramFrontend(settings, gateway, registry, bot=fake.make_bot(), polling_timeout=1):
                fake.send_text(USER, CHAT, "/generate a lighthouse at dusk --seed 3")  # txt2img
                await fake.wait_until(lambda: len(_results(fake)) == 1, timeout=60)
                fake.send_photo(USER, CHAT, png(96, 64), caption="/generate as an oil painting")  # img2img
                await fake.wait_until(lambda: len(_results(fake)) == 2, timeout=60)
                assert comfy.uploads, "the photo the front end stored reached ComfyUI from the worker"
                first, second = _results(fake)
                if bucket is not None:
                    # Inputs and outputs are in the bucket, not in Redis. Take away every other copy — Redis's
                    # blobs (as if their TTL had run out) and both disks — so what follows reads the bucket.
                    assert not {k for k in await _blob_keys(store) if "previews/" not in k}
                    for host in (worker_dir, front_dir):
                        for kind in ("inputs", "outputs"):
                            shutil.rmtree(host / kind, ignore_errors=True)
                    keys = await _blob_keys(store)
                    if keys:
                        await store.redis.delete(*keys)
                # Reroll of the img2img result: the worker needs the user's photo again.
                presses = [(first, "j:r:"), (first, "j:u:"), (second, "j:r:")]
                for msg, prefix in presses:  # Reroll; Upscale (its input is the worker's output)
                    want = len(_results(fake)) + 1
                    fake.press_button(USER, CHAT, msg.message_id, _button(msg, prefix))
                    await fake.wait_until(partial(_has_results, fake, want), timeout=60)
                fake.press_button(USER, CHAT, first.message_id, _button(first, "j:v:"))  # Variations
                await fake.wait_until(lambda: fake.calls_of("sendMediaGroup", CHAT, ok=True), timeout=60)
                fake.press_button(USER, CHAT, first.message_id, _button(first, "j:i:"))  # Info
                await fake.wait_until(lambda: len(fake.answered_callbacks) >= 5, timeout=30)
                if bucket is not None:
                    assert not {k for k in await _blob_keys(store) if "previews/" not in k}
                    assert len(comfy.uploads) >= 3, "the photo and the upscaled output came from the bucket"

    assert any((front_dir / "outputs").rglob("*")), "results were fetched from the shared copy and kept"
    assert any((worker_dir / "inputs").rglob("*")), (
        "the uploaded photo was fetched from the shared copy and kept"
    )


@pytest.mark.redis
async def test_shared_images_expire_and_an_oversized_one_is_not_shared(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with RedisStore(redis_server.url, retry_for_s=20) as store:
        blobs = RedisBlobs(store, max_bytes=1000)
        await blobs.put("outputs/20261203/" + "a" * 64 + ".png", b"x" * 10, ttl_s=30)
        await blobs.put("outputs/20261203/" + "b" * 64 + ".png", b"x" * 1001, ttl_s=30)
        assert await blobs.get("outputs/20261203/" + "a" * 64 + ".png") == b"x" * 10
        assert await blobs.get("outputs/20261203/" + "b" * 64 + ".png") is None
        assert 0 < await store.redis.pttl("comfybot:blob:outputs/20261203/" + "a" * 64 + ".png") <= 30_000
        other_host = ImageStore(tmp_path / "other", shared=blobs)
        with pytest.raises(ImageGone):  # not on this disk, not shared: gone, as past retention
            await other_host.read("outputs/20261203/" + "b" * 64 + ".png")
