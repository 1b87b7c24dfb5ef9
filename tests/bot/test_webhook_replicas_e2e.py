"""Webhook replicas behind one URL: two Telegram front ends, one Redis, one worker.

Each replica is what a ``comfybot run`` process holds — its own RedisStore, front-end-only gateway, aiogram
``Bot``, sender and dispatcher — in this test process. A test-side load balancer is the webhook URL the
fake Telegram POSTs to; it hands each update to one replica in turn (or, as a retrying balancer, to both).
The fake Bot API enforces Telegram's limits: per chat one a second, per group 20 in a window (20 s here
instead of 60 s, so the group limit binds within the test), 30 a second for the bot.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from bot.telegram.app import TelegramFrontend
from bot.telegram.sender import SenderLimits
from comfy import ComfyClient
from comfy.workflows import WorkflowRegistry
from core.config import TelegramSettings
from gateway.app import run_gateway
from gateway.redis_store import RedisStore
from gateway.storage import ImageStore
from tests.bot.conftest import CHECKPOINTS, FAST
from tests.conftest import RedisServer, free_port
from tests.fakes.comfyui import running_fake_comfyui
from tests.fakes.telegram import RATE_COUNTED, FakeTelegram, RateLimits, StoredMessage

GROUP = -100_7070
GROUP_USERS = list(range(7101, 7111))  # 10 people in one group
PRIVATE_USERS = list(range(7201, 7211))  # 10 more, each in their own chat
GROUP_WINDOW_S = 20.0
TELEGRAM_LIMITS = RateLimits(per_group=20, per_group_window=GROUP_WINDOW_S)
SENDER_LIMITS = SenderLimits(group_max=20, group_window_s=GROUP_WINDOW_S)
PATH = "/telegram/webhook"


@dataclass
class Balancer:
    """The webhook URL: forwards each POST to one replica in turn, or to every one (``fan_out``)."""

    targets: list[str]
    fan_out: bool = False
    port: int = field(default_factory=free_port)
    hits: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Balancer]:
        turn = itertools.cycle(range(len(self.targets)))
        async with aiohttp.ClientSession() as http:

            async def forward(request: web.Request) -> web.Response:
                body = await request.read()
                secret = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
                headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret}
                picks = range(len(self.targets)) if self.fan_out else [next(turn)]
                answers: list[tuple[int, bytes]] = []
                for i in picks:
                    self.hits.append(self.targets[i])
                    async with http.post(self.targets[i], data=body, headers=headers) as r:
                        answers.append((r.status, await r.read()))
                status, reply = answers[0]
                return web.Response(status=status, body=reply, content_type="application/json")

            app = web.Application()
            app.router.add_post(PATH, forward)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            try:
                yield self
            finally:
                await runner.cleanup()


@asynccontextmanager
async def replica(
    redis: RedisServer,
    fake: FakeTelegram,
    registry: WorkflowRegistry,
    images: Path,
    *,
    port: int,
    url: str,
    shared_pace: bool = True,
) -> AsyncIterator[TelegramFrontend]:
    """One webhook front end as its own process would have it; no TELEGRAM_WEBHOOK_SECRET."""
    settings = TelegramSettings(
        bot_token=fake.token,
        api_base=fake.url,
        previews=False,
        mode="webhook",
        webhook_url=url,
        webhook_host="127.0.0.1",
        webhook_port=port,
    )
    async with (
        RedisStore(redis.url, retry_for_s=20) as store,
        run_gateway(store, registry, ImageStore(images), [], workers=False) as gateway,
        TelegramFrontend(
            settings,
            gateway,
            registry,
            bot=fake.make_bot(),
            sender_limits=SENDER_LIMITS,
            shared_pace=shared_pace,
        ) as frontend,
    ):
        yield frontend


@dataclass
class Deployment:
    fake: FakeTelegram
    balancer: Balancer
    replicas: list[TelegramFrontend]


@asynccontextmanager
async def deployment(
    tmp_path: Path,
    redis: RedisServer,
    registry: WorkflowRegistry,
    *,
    shared_pace: bool = True,
    fan_out: bool = False,
) -> AsyncIterator[Deployment]:
    ports = [free_port(), free_port()]
    balancer = Balancer([f"http://127.0.0.1:{p}{PATH}" for p in ports], fan_out=fan_out)
    images = tmp_path / "data"  # one machine: the replicas and the worker share a data dir
    async with AsyncExitStack() as stack:
        comfy = await stack.enter_async_context(
            running_fake_comfyui(checkpoints=CHECKPOINTS, step_delay_s=0.01)
        )
        session = await stack.enter_async_context(aiohttp.ClientSession())
        store = await stack.enter_async_context(RedisStore(redis.url, retry_for_s=20))
        client = await stack.enter_async_context(ComfyClient(comfy.url, session, name="comfy0"))
        await stack.enter_async_context(
            run_gateway(store, registry, ImageStore(images), [client], capacity=4, options=FAST)
        )
        fake = await stack.enter_async_context(FakeTelegram(limits=TELEGRAM_LIMITS))
        await stack.enter_async_context(balancer.running())
        replicas = [
            await stack.enter_async_context(
                replica(redis, fake, registry, images, port=p, url=balancer.url, shared_pace=shared_pace)
            )
            for p in ports
        ]
        yield Deployment(fake, balancer, replicas)


def _results(fake: FakeTelegram, chat_id: int) -> list[StoredMessage]:
    return [m for m in fake.bot_messages(chat_id) if m.photo or m.document]


def calls_inside_retry_after(fake: FakeTelegram) -> int:
    """Rate-counted calls to a chat made while a 429 told that chat (or the bot) to wait."""
    blocks: list[tuple[object, float, float]] = []  # (chat, from, until)
    inside = 0
    for call in sorted(fake.calls, key=lambda c: c.at):
        if call.method not in RATE_COUNTED:
            continue
        if any(start < call.at < until and chat == call.chat_id for chat, start, until in blocks):
            inside += 1
        params = call.response.get("parameters") or {}
        if call.status == 429 and "retry_after" in params:
            blocks.append((call.chat_id, call.at, call.at + float(params["retry_after"])))
    return inside


@pytest.mark.redis
@pytest.mark.timeout(300)
async def test_two_webhook_replicas_keep_one_pace(
    tmp_path: Path, registry: WorkflowRegistry, redis_server: RedisServer
) -> None:
    async with deployment(tmp_path, redis_server, registry) as d:
        fake, (a, b) = d.fake, d.replicas
        # No secret was configured: one was generated, shared through Redis, and given to setWebhook —
        # once: the second replica found the webhook already registered.
        (registered,) = fake.calls_of("setWebhook")
        assert registered.params["url"] == d.balancer.url
        assert a.webhook_secret and a.webhook_secret == b.webhook_secret
        assert registered.params["secret_token"] == a.webhook_secret
        for user in GROUP_USERS:
            fake.send_text(user, GROUP, f"/generate a kite number {user}", chat_type="supergroup")
        for user in PRIVATE_USERS:
            fake.send_text(user, user, f"/generate a boat number {user}")
        await fake.wait_until(lambda: len(_results(fake, GROUP)) >= len(GROUP_USERS), timeout=240)
        await fake.wait_until(lambda: all(_results(fake, u) for u in PRIVATE_USERS), timeout=120)
        assert set(d.balancer.hits) == set(d.balancer.targets), "both replicas took updates"
        group_ops = [c for c in fake.calls if c.method in RATE_COUNTED and c.chat_id == GROUP]
        assert len(group_ops) > 20, "the group's limit was binding"
        assert len(_results(fake, GROUP)) == len(GROUP_USERS), "each group result once"
        assert all(len(_results(fake, u)) == 1 for u in PRIVATE_USERS), "each private result once"
        refused = [(c.method, c.chat_id) for c in fake.calls if c.status == 429]
        assert (fake.count_429, calls_inside_retry_after(fake)) == (0, 0), refused


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_an_update_posted_to_both_replicas_is_handled_once(
    tmp_path: Path, registry: WorkflowRegistry, redis_server: RedisServer
) -> None:
    users = list(range(7301, 7305))
    with capture_logs() as logs:
        async with deployment(tmp_path, redis_server, registry, fan_out=True) as d:
            fake = d.fake
            sent = [fake.send_text(user, user, "/help").update_id for user in users]

            def dropped() -> list[int]:
                return [int(e["update_id"]) for e in logs if e["event"] == "telegram_update_duplicate"]

            # Each update reached both replicas; the second copy of each was dropped before any handler.
            await fake.wait_until(lambda: len(dropped()) == len(users), timeout=30)
            assert len(d.balancer.hits) == 2 * len(users)
            assert sorted(dropped()) == sorted(sent)
            await fake.wait_until(lambda: all(fake.bot_messages(u) for u in users), timeout=30)
    assert all(len(fake.bot_messages(u)) == 1 for u in users), [len(fake.bot_messages(u)) for u in users]
