"""Fake ComfyUI servers in their own process, so their timing does not share the gateway's event loop.

Writes one JSON line ``{"urls": [...]}`` on stdout once they listen, and stops when stdin closes.
``GET <url>/bench/stats`` answers ``{"busy_s", "done", "posted", "timeline", "loop_stalls"}`` (the stalls of
this process's event loop, the same for every server).

    .venv/bin/python -m bench.fakeserver --servers 4 --run-time 0.5 --realistic
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import AsyncExitStack

import orjson

from bench.common import LoopStalls
from bench.fake_comfy import CHECKPOINTS, BenchComfyUI


async def serve(
    servers: int, run_time: float | None, realistic: bool, link_mbps: float | None, rtt_ms: float
) -> None:
    async with AsyncExitStack() as stack:
        stalls = await stack.enter_async_context(LoopStalls().watching())
        fakes = []
        for _ in range(servers):
            fake = BenchComfyUI(
                checkpoints=CHECKPOINTS,
                run_time_s=run_time,
                realistic_png=realistic,
                link_mbps=link_mbps,
                rtt_ms=rtt_ms,
            )
            fake.loop_stalls = stalls
            fakes.append(await stack.enter_async_context(fake))
            if realistic:
                await fake._cached_png(fake.output_size or (704, 704))
        sys.stdout.write(orjson.dumps({"urls": [f.url for f in fakes]}).decode() + "\n")
        sys.stdout.flush()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        await reader.read()  # until EOF: the parent closed our stdin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--run-time", type=float, default=None)
    parser.add_argument("--realistic", action="store_true")
    parser.add_argument("--link-mbps", type=float, default=None, help="simulated bandwidth for /view")
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="simulated delay of every HTTP answer")
    args = parser.parse_args()
    asyncio.run(serve(args.servers, args.run_time, args.realistic, args.link_mbps, args.rtt_ms))


if __name__ == "__main__":
    main()
