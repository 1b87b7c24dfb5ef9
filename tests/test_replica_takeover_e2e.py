"""Two Telegram front ends in webhook mode behind one URL (a load balancer in this test hands updates to
them in turn), one Redis, one worker, slow jobs: one replica is SIGKILLed while its users' jobs run and
some of their results wait out a 429. The other replica takes over: the killed one's messages keep
getting progress, every outcome it had read and not shown is shown (after the lease), every user gets
exactly one result. (With one consumer name shared by both replicas, the killed one's unshown outcomes
stayed pending under that name for ever: those users got no result.)"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from comfy import ComfyClient
from comfy.workflows import load_workflows
from gateway.app import WorkerOptions, run_gateway
from gateway.blobs import RedisBlobs
from gateway.redis_store import RedisStore
from gateway.storage import ImageStore
from tests.bot.conftest import CHECKPOINTS
from tests.conftest import RedisServer, child_env, free_port
from tests.fakes.comfyui import running_fake_comfyui
from tests.fakes.telegram import DEFAULT_TOKEN, FakeTelegram, StoredMessage

ROOT = Path(__file__).resolve().parents[1]
USERS = list(range(4401, 4409))
SECRET = "takeover-secret"
PATH = "/telegram/webhook"
PUBLIC_URL = "https://bot.example.org/telegram/webhook"  # what the replicas register with Telegram


class LoadBalancer:
    """POSTs each webhook update to the next replica in turn; a replica that does not answer is skipped
    (the kill), as a load balancer's health check would. ``routed`` says which replica took each update."""

    def __init__(self, replicas: dict[str, int]) -> None:
        self.replicas = replicas
        self.port = free_port()
        self.routed: dict[int, str] = {}
        self._turn = itertools.cycle(list(replicas))
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._http is not None
        body = await request.read()
        headers = {
            k: v for k, v in request.headers.items() if k.lower().startswith(("x-telegram", "content-"))
        }
        for _ in self.replicas:
            name = next(self._turn)
            try:
                async with self._http.post(
                    f"http://127.0.0.1:{self.replicas[name]}{PATH}", data=body, headers=headers
                ) as resp:
                    reply = await resp.read()
                    update = await request.json()
                    self.routed[int(update["update_id"])] = name
                    return web.Response(body=reply, status=resp.status, content_type=resp.content_type)
            except aiohttp.ClientConnectionError:
                continue
        return web.Response(status=502)

    async def __aenter__(self) -> LoadBalancer:
        self._http = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post(PATH, self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None and self._http is not None
        await self._runner.cleanup()
        await self._http.close()


@asynccontextmanager
async def replica(
    tmp_path: Path, name: str, port: int, redis: RedisServer, telegram: FakeTelegram, lb: LoadBalancer
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = child_env(
        tmp_path / name,
        {
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": redis.url,
            "TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN,
            "TELEGRAM_API_BASE": telegram.url,
            "TELEGRAM_PREVIEWS": "false",
            "TELEGRAM_MODE": "webhook",
            "TELEGRAM_WEBHOOK_URL": PUBLIC_URL,
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "TELEGRAM_WEBHOOK_PORT": str(port),
            "COMFYBOT_REPLICA_ID": name,
            "COMFYBOT_REPLICA_LEASE_S": "3",
        },
    )
    hooks, infos = len(telegram.calls_of("setWebhook")), len(telegram.calls_of("getWebhookInfo"))

    def registered() -> bool:
        """It set the webhook, or found it set by the other replica (and so left it as it is)."""
        if len(telegram.calls_of("setWebhook")) > hooks:
            return True
        return len(telegram.calls_of("getWebhookInfo")) > infos and telegram.webhook_url == PUBLIC_URL

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "comfybot",
        "run",
        "--quiet",
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await telegram.wait_until(registered, timeout=120)
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=60)


def _photos(telegram: FakeTelegram, user: int) -> list[StoredMessage]:
    return [m for m in telegram.bot_messages(user) if m.kind == "photo"]


@pytest.mark.redis
@pytest.mark.timeout(300)
async def test_a_killed_replicas_jobs_are_finished_by_the_other(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    ports = {"replica-a": free_port(), "replica-b": free_port()}
    async with (
        FakeTelegram() as telegram,
        LoadBalancer(ports) as lb,
        running_fake_comfyui(checkpoints=CHECKPOINTS, run_time_s=3.0) as comfy,
        aiohttp.ClientSession() as session,
        RedisStore(redis_server.url) as store,
        ComfyClient(comfy.url, session, name="comfy0") as client,
        run_gateway(
            store,
            load_workflows([]),
            ImageStore(tmp_path / "worker", shared=RedisBlobs(store)),
            [client],
            capacity=1,  # one prompt at a time: the later jobs are still queued or running at the kill
            options=WorkerOptions(lease_s=2),
        ),
        replica(tmp_path, "replica-a", ports["replica-a"], redis_server, telegram, lb) as killed,
        replica(tmp_path, "replica-b", ports["replica-b"], redis_server, telegram, lb),
    ):
        assert telegram.webhook_url == PUBLIC_URL and telegram.webhook_secret == SECRET
        telegram.webhook_url = lb.url  # the public name leads to the load balancer (plain http here)
        # Every result's first upload is refused for 4 s: outcomes wait, read and owed, in both replicas.
        telegram.inject_429("sendPhoto", times=len(USERS), retry_after=4)
        updates = {telegram.send_text(u, u, f"/generate a kite number {u}").update_id: u for u in USERS}
        await telegram.wait_until(lambda: all(telegram.bot_messages(u) for u in USERS), timeout=120)
        await telegram.wait_until(lambda: len(lb.routed) == len(USERS), timeout=60)
        theirs = [updates[i] for i, name in lb.routed.items() if name == "replica-a"]
        assert theirs and len(theirs) < len(USERS), "both replicas took commands"
        job_messages = {u: telegram.bot_messages(u)[0] for u in theirs}
        await telegram.wait_until(lambda: len(telegram.calls_of("sendPhoto", ok=False)) >= 3, timeout=120)
        edits_at_kill = {u: len(m.edits) for u, m in job_messages.items()}
        unfinished = len(USERS) - len(comfy.history)
        killed.send_signal(signal.SIGKILL)
        await killed.wait()
        assert unfinished >= 2, "the kill must land while jobs still run"

        await telegram.wait_until(lambda: all(_photos(telegram, u) for u in USERS), timeout=180)
        await asyncio.sleep(2.0)  # a second copy, if any, would come now
        for user in USERS:
            assert len(_photos(telegram, user)) == 1, f"user {user}: one result"

        def only_photos() -> bool:
            return all([m.kind for m in telegram.bot_messages(u)] == ["photo"] for u in USERS)

        # Deletes of the job messages go last (cleanup priority) and wait out the chat's 429 blocks:
        # each is still due, however late, and nothing else may be left.
        await telegram.wait_until(only_photos, timeout=60)
        assert len(comfy.received_prompts) == len(USERS), "no prompt ran twice"
        progressed = [u for u, m in job_messages.items() if len(m.edits) > edits_at_kill[u]]
        assert progressed, "the killed replica's messages got progress from the survivor"
