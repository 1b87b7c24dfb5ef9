"""Two Discord front ends as Discord's sharding has them: two ``comfybot run`` processes with
``DISCORD_SHARD_COUNT=2`` and ``DISCORD_SHARD_IDS`` 0 and 1, one worker (``python -m gateway``), one Redis,
the fake Discord (which routes each guild's interactions to its shard's connection only) and the fake
ComfyUI. A /generate in a guild of either shard is answered by the process of that shard, and the job's
progress and result land in that interaction's own response — which only the process holding the
interaction (and its token) can edit — with buttons that work."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import RedisServer, child_env
from tests.fakes.comfyui import running_fake_comfyui
from tests.fakes.discord import FakeDiscord, FakeInteraction, StoredMessage
from tests.gateway.test_crash_recovery import ROOT, worker_process

SHARDS = (0, 1)
USERS = {0: 8100, 1: 8101}  # one user per shard's guild


def _events(root: Path) -> list[dict[str, object]]:
    lines = [line for f in sorted((root / "logs").glob("*.log")) for line in f.read_text().splitlines()]
    return [json.loads(line) for line in lines if line.startswith("{")]


@contextlib.asynccontextmanager
async def discord_front_end(env: dict[str, str], name: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``comfybot run`` as a Discord-only front end until the block ends (then SIGTERM)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "comfybot",
        "run",
        "--quiet",
        "--process",
        name,
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=60)


def _result(fake: FakeDiscord, inter: FakeInteraction) -> StoredMessage | None:
    """The interaction's own response once it shows the result (an image and the result buttons)."""
    msg = fake.original(inter)
    if msg is not None and msg.attachments and any(c.startswith("comfybot:i:") for c in msg.custom_ids):
        return msg
    return None


@pytest.mark.redis
@pytest.mark.timeout(300)  # three cold interpreters on a loaded 2-core machine
async def test_each_shard_process_answers_its_guilds_and_shows_their_jobs(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with FakeDiscord() as fake, running_fake_comfyui(run_time_s=1.0) as comfy:
        guilds = {s: fake.add_guild(shard=s, shard_count=2) for s in SHARDS}
        channels = {s: fake.add_channel(guilds[s]) for s in SHARDS}
        assert {FakeDiscord.shard_of(guilds[s], 2) for s in SHARDS} == {0, 1}
        shared = {"REDIS_URL": redis_server.url, "PYTHONPATH": str(ROOT)}
        worker_env = child_env(tmp_path / "worker", shared | {"COMFYUI_URLS": comfy.url})
        front = {
            s: child_env(
                tmp_path / f"front{s}",
                shared | fake.env() | {"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": str(s)},
            )
            for s in SHARDS
        }
        async with (
            worker_process(worker_env),
            discord_front_end(front[0], "front0"),
            discord_front_end(front[1], "front1"),
        ):
            await fake.wait_for(lambda: {(0, 2), (1, 2)} <= set(fake.identifies), timeout=180)
            assert sorted(fake.identifies) == [(0, 2), (1, 2)], "one connection per shard, no more"
            inters = {
                s: await fake.slash(
                    USERS[s], channels[s], "generate", {"prompt": f"a lighthouse {s}", "seed": s + 1}
                )
                for s in SHARDS
            }
            results = {s: await fake.wait_for(partial(_result, fake, inters[s]), timeout=120) for s in SHARDS}
            for s in SHARDS:
                history = [h["content"] for h in results[s].history]
                assert any("queue" in c.lower() or "%" in c for c in history[:-1]), history  # progress
            # Reroll on each result, pressed in its guild: a new job, answered and shown by the same process.
            presses = {}
            for s in SHARDS:
                reroll = next(c for c in results[s].custom_ids if c.startswith("comfybot:r:"))
                presses[s] = await fake.click(USERS[s], results[s].id, reroll)
            rerolled = {
                s: await fake.wait_for(partial(_result, fake, presses[s]), timeout=120) for s in SHARDS
            }
            assert all(presses[s].callback is not None for s in SHARDS)
            assert rerolled[0].channel_id == channels[0] and rerolled[1].channel_id == channels[1]
        for s in SHARDS:
            events = _events(tmp_path / f"front{s}")
            took = {e["channel_id"] for e in events if e["event"] == "command_received"}
            assert took == {channels[s]}, f"shard {s}'s process took the commands of its guild only"
            pressed = [e for e in events if e["event"] == "button_pressed"]
            assert [e["action"] for e in pressed] == ["reroll"]
            shown = [e for e in events if e["event"] == "response_sent" and e.get("kind") == "result"]
            assert len(shown) == 2, f"shard {s}'s process showed both of its results"
            assert not [e for e in events if e["event"] == "job_message_continued"], (
                "no job moved to a channel message: its events reached the process with its token"
            )
            synced = [e["event"] for e in events if str(e["event"]).startswith("discord_commands_sync")]
            assert synced == ["discord_commands_synced" if s == 0 else "discord_commands_sync_skipped"]
            ready = next(e for e in events if e["event"] == "discord_ready")
            assert (ready["shard_count"], ready["shard_ids"]) == (2, [s])
        assert len(fake.channel_messages(channels[0])) == len(fake.channel_messages(channels[1])) == 2
