"""End-to-end harness: the real aiogram client against FakeTelegram, the real gateway, a fake ComfyUI."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.jobs import FrontEnd, workflow_description
from bot.telegram.app import TelegramFrontend
from bot.telegram.sender import SenderLimits
from comfy import ComfyClient
from comfy.workflows import WorkflowRegistry, load_workflows
from core.config import TelegramSettings
from gateway.app import WorkerOptions, run_gateway
from gateway.limits import AccessPolicy, Limits
from gateway.memory import MemoryStore
from gateway.service import Gateway
from gateway.store import Store
from tests.fakes.comfyui import FakeComfyUI, running_fake_comfyui
from tests.fakes.telegram import FakeTelegram, RateLimits, StoredMessage
from workflows import SHIPPED_DIR

CHECKPOINTS = ("v1-5-pruned-emaonly.safetensors", "sd15.safetensors")
UPSCALERS = ("RealESRGAN_x4plus.pth", "4x-UltraSharp.pth")
FAST = WorkerOptions(
    lease_s=3.0,
    retry_backoff_s=0.05,
    health_interval_s=0.3,
    cleanup_interval_s=3600,
    retry_acquire_timeout_s=1.0,
)


def png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def jpeg(width: int = 64, height: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buf, "JPEG")
    return buf.getvalue()


@dataclass
class Bench:
    """Everything a Telegram end-to-end test touches."""

    fake: FakeTelegram
    comfy: FakeComfyUI
    gateway: Gateway
    backend: Store
    frontend: TelegramFrontend
    registry: WorkflowRegistry

    def bot_msgs(self, chat_id: int) -> list[StoredMessage]:
        return self.fake.bot_messages(chat_id)

    async def until(self, condition: Callable[[], Any], timeout: float = 20.0) -> Any:  # noqa: ASYNC109
        return await self.fake.wait_until(condition, timeout=timeout)

    async def result(self, chat_id: int, timeout: float = 20.0) -> StoredMessage:  # noqa: ASYNC109
        """The first bot message in ``chat_id`` that carries a picture and the result buttons."""

        def found() -> StoredMessage | None:
            for m in self.bot_msgs(chat_id):
                if (m.photo or m.document) and any(
                    "j:r:" in b.get("callback_data", "") for row in m.buttons for b in row
                ):
                    return m
            return None

        msg: StoredMessage = await self.until(found, timeout)
        return msg

    async def text_reply(self, chat_id: int, needle: str, timeout: float = 20.0) -> StoredMessage:  # noqa: ASYNC109
        def found() -> StoredMessage | None:
            return next((m for m in self.bot_msgs(chat_id) if needle in (m.text or m.caption or "")), None)

        msg: StoredMessage = await self.until(found, timeout)
        return msg


@pytest.fixture(scope="session")
def registry() -> WorkflowRegistry:
    return load_workflows()


def copy_workflow(
    directory: Path, name: str, description: str, params: dict[str, dict[str, Any]] | None = None
) -> None:
    """Write a copy of the shipped txt2img named ``name`` into ``directory``, its ``params`` entries
    updated (``{"steps": {"max": 8}}``; ``{"batch": None}`` removes one)."""
    manifest = json.loads((SHIPPED_DIR / "txt2img.manifest.json").read_text())
    manifest["name"], manifest["description"] = name, description
    for param, changes in (params or {}).items():
        if changes is None:
            del manifest["params"][param]
        else:
            manifest["params"][param] |= changes
    (directory / f"{name}.manifest.json").write_text(json.dumps(manifest))
    shutil.copy(SHIPPED_DIR / "txt2img.json", directory / f"{name}.json")


def many_workflows(directory: Path, count: int, description_chars: int = 150) -> WorkflowRegistry:
    """The shipped workflows plus ``count`` copies of txt2img (``extra_001``…) with long English
    descriptions: a /workflows answer far over one message."""
    for n in range(1, count + 1):
        name = f"extra_{n:03d}"
        copy_workflow(
            directory, name, f"{name}: " + ("a long description of a workflow " * 10)[:description_chars]
        )
    return load_workflows([directory])


def check_workflows_answer(
    text: str, registry: WorkflowRegistry, ctx: FrontEnd, locale: str, header: str, limit: int
) -> list[str]:
    """Assert a long /workflows answer fits ``limit``, starts with ``header`` and has one whole
    ``• name — description`` line per workflow shown, in order, descriptions shortened at most to a prefix
    and "…"; when not all are shown, the last line is "…and N more" with the right N and one more line
    would not have fitted. Returns the names shown."""
    t = ctx.renderer.t
    lines = text.split("\n")
    assert len(text) <= limit and lines[0] == t(locale, header)
    more = [n for n in range(1, len(registry) + 1) if lines[-1] == t(locale, "list.more", count=n)]
    shown = lines[1 : len(lines) - len(more)]
    names = registry.names()[: len(shown)]
    for line, name in zip(shown, names, strict=True):
        prefix = t(locale, "workflows.line", name=name, description="")
        assert line.startswith(prefix), (line, prefix)
        about = line.removeprefix(prefix).removesuffix(" " + t(locale, "workflows.default_mark"))
        full = workflow_description(ctx, locale, registry.get(name))
        assert about == full or (about.endswith("…") and full.startswith(about[:-1])), (about, full)
    if more:
        assert more == [len(registry) - len(shown)]
        assert len("\n".join([*lines[:-1], shown[-1], lines[-1]])) > limit  # as many as fit
    return names


@asynccontextmanager
async def bench(
    data_dir: Path,
    registry: WorkflowRegistry,
    *,
    backend: Store | None = None,
    limits: Limits | None = None,
    access: AccessPolicy | None = None,
    comfy_options: dict[str, Any] | None = None,
    telegram_limits: RateLimits | None = None,
    sender_limits: SenderLimits | None = None,
    previews: bool = False,
    capacity: int = 2,
    rate_limits_enabled: bool = True,
    frontend_options: dict[str, Any] | None = None,
    telegram_options: dict[str, Any] | None = None,
    comfy_down: bool = False,
) -> AsyncIterator[Bench]:
    """``comfy_down``: the fake ComfyUI refuses connections from the start (``accept_connections`` to
    bring it up)."""
    async with AsyncExitStack() as stack:
        comfy = await stack.enter_async_context(
            running_fake_comfyui(
                **{
                    "checkpoints": CHECKPOINTS,
                    "upscale_models": UPSCALERS,
                    "step_delay_s": 0.01,
                    **(comfy_options or {}),
                }
            )
        )
        if comfy_down:
            await comfy.refuse_connections()
        session = await stack.enter_async_context(aiohttp.ClientSession())
        backend = await stack.enter_async_context(backend or MemoryStore())
        from gateway.storage import ImageStore

        store = ImageStore(data_dir)
        client = await stack.enter_async_context(
            ComfyClient(comfy.url, session, name="comfy0", ws_stall_timeout_s=2.0, request_timeout_s=5.0)
        )
        gateway = await stack.enter_async_context(
            run_gateway(
                backend,
                registry,
                store,
                [client],
                capacity=capacity,
                limits=limits,
                access=access,
                options=FAST,
            )
        )
        fake = await stack.enter_async_context(
            FakeTelegram(limits=telegram_limits, rate_limits_enabled=rate_limits_enabled)
        )
        settings = TelegramSettings(
            bot_token=fake.token, api_base=fake.url, previews=previews, **(telegram_options or {})
        )
        frontend = TelegramFrontend(
            settings,
            gateway,
            registry,
            bot=fake.make_bot(),
            sender_limits=sender_limits,
            polling_timeout=1,
            **(frontend_options or {}),
        )
        await stack.enter_async_context(frontend)
        yield Bench(fake, comfy, gateway, backend, frontend, registry)
