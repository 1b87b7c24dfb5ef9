"""Busy groups (issue 17): 10 users × 2 jobs within 3 s, 1 s per job, one server, real aiogram client
against the limit-enforcing FakeTelegram (1 call/s per chat, 20/min per group, 30/s per bot; sends,
edits and deletes all count). Cases: 10 private chats, one group, one forum topic.

Reports makespan (first command → last result in chat), delivery lag (ComfyUI done → result seen in
chat, polled every 20 ms) p50/p95, Bot API calls per job, 429s.

    PYTHONPATH=. .venv/bin/python -m bench.groups [--case group]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import bench_limits, machine, percentiles, say, write_results
from comfy.workflows import load_workflows
from tests.bot.conftest import Bench, bench

USERS, JOBS_PER_USER, SPREAD_S = 10, 2, 3.0
GROUP, TOPIC = -100_777, 42
NOTICES = "always"  # TELEGRAM_GROUP_NOTICES; --notices auto
STEPS, STEP_DELAY_S = 10, 0.1  # about 1 s of fake ComfyUI run time per job


def _results(b: Bench, chats: list[int]) -> dict[str, Any]:
    """Result messages in the chats by job id (read from the Reroll button's ``j:r:<job id>``)."""
    out = {}
    for chat in chats:
        for m in b.bot_msgs(chat):
            if m.deleted or not (m.photo or m.document):
                continue
            for row in m.buttons:
                for x in row:
                    data = x.get("callback_data", "")
                    if data.startswith("j:r:"):
                        out[data.split(":")[2]] = m
    return out


async def _case(case: str) -> dict[str, Any]:
    registry = load_workflows()
    with tempfile.TemporaryDirectory() as tmp:
        async with bench(
            Path(tmp),
            registry,
            limits=bench_limits(),
            capacity=1,
            comfy_options={"step_delay_s": STEP_DELAY_S},
            telegram_options={"group_notices": NOTICES},
        ) as b:
            await asyncio.sleep(1.0)
            rng = random.Random(17)
            plan = sorted(
                (rng.uniform(0, SPREAD_S), u, j) for u in range(USERS) for j in range(JOBS_PER_USER)
            )
            chats = [1000 + u for u in range(USERS)] if case == "private" else [GROUP]
            calls_before = len(b.fake.calls)
            t0 = time.time()
            for at, u, j in plan:
                await asyncio.sleep(max(0.0, t0 + at - time.time()))
                user = 1000 + u
                if case == "private":
                    b.fake.send_text(user, user, f"/generate a lighthouse {u}-{j} --steps {STEPS}")
                else:
                    b.fake.send_text(
                        user,
                        GROUP,
                        f"/generate@comfy_test_bot a lighthouse {u}-{j} --steps {STEPS}",
                        chat_type="supergroup",
                        thread_id=TOPIC if case == "topic" else None,
                    )
            seen: dict[str, float] = {}
            total = USERS * JOBS_PER_USER
            deadline = t0 + 600
            while len(seen) < total and time.time() < deadline:
                now = time.time()
                for key in _results(b, chats):
                    seen.setdefault(key, now)
                await asyncio.sleep(0.02)
            makespan = max(seen.values()) - t0 if seen else None
            await asyncio.sleep(3.0)  # let the trailing deletes go out: they are calls per job too
            lags = []
            for job_id, at in seen.items():
                rec = await b.gateway.get_job(job_id)
                if rec is not None and rec.finished_at is not None:
                    lags.append(at - rec.finished_at)
            calls = [c for c in b.fake.calls[calls_before:] if c.method not in ("getMe", "getUpdates")]
            return {
                "case": case,
                "results": len(seen),
                "jobs": total,
                "makespan_s": None if makespan is None else round(makespan, 2),
                "ideal_s": total * 1.0,
                "lag_ms": percentiles([x * 1000 for x in lags]),
                "calls_per_job": round(len(calls) / total, 2),
                "calls": dict(Counter(c.method for c in calls)),
                "count_429": b.fake.count_429,
            }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=["private", "group", "topic"], action="append")
    parser.add_argument("--name", default="groups")
    parser.add_argument("--notices", choices=["always", "auto"], default="always")
    args = parser.parse_args()
    global NOTICES  # noqa: PLW0603 - one setting for every case of this run
    NOTICES = args.notices
    out: dict[str, Any] = {"machine": machine(), "cases": []}
    for case in args.case or ["private", "group", "topic"]:
        say(f"case {case} …")
        row = asyncio.run(_case(case))
        say(str(row))
        out["cases"].append(row)
    write_results(args.name, out)


if __name__ == "__main__":
    main()
